from __future__ import annotations

from pathlib import Path

import pytest

from hackback.services import kernel_config
from hackback.base.errors import ConfigError


def test_fragment_holds_what_gem5_x86_needs() -> None:
    req = kernel_config.required()
    for opt in ("CONFIG_ATA_PIIX", "CONFIG_BLK_DEV_SD", "CONFIG_EXT4_FS", "CONFIG_SERIAL_8250_CONSOLE",
                "CONFIG_DEVTMPFS", "CONFIG_DEVTMPFS_MOUNT", "CONFIG_DEVMEM"):
        assert opt in req


def test_a_config_with_everything_passes() -> None:
    text = "\n".join(f"{o}=y" for o in kernel_config.required()) + "\nCONFIG_OTHER=m\n"
    kernel_config.check(text)


def test_a_module_or_unset_option_is_named(tmp_path: Path) -> None:
    opts = kernel_config.required()
    lines = [f"{o}=y" for o in opts if o not in ("CONFIG_ATA_PIIX", "CONFIG_DEVMEM")]
    lines += ["CONFIG_ATA_PIIX=m", "# CONFIG_DEVMEM is not set"]
    assert kernel_config.missing("\n".join(lines)) == ["CONFIG_ATA_PIIX", "CONFIG_DEVMEM"]
    with pytest.raises(ConfigError) as e:
        kernel_config.check("\n".join(lines))
    assert "CONFIG_ATA_PIIX (and 1 more)" in e.value.one_line()


def test_what_gem5_needs_is_fixed_by_the_shipped_fragment_not_a_users(tmp_path: Path) -> None:
    frag = tmp_path / "f.config"
    frag.write_text("\n".join(ln for ln in kernel_config.FRAGMENT.read_text().splitlines() if "DEVMEM" not in ln))
    assert "CONFIG_DEVMEM" not in kernel_config.required(frag)
    text = "\n".join(f"{o}=y" for o in kernel_config.required(frag))
    with pytest.raises(ConfigError, match="CONFIG_DEVMEM"):
        kernel_config.check(text)


def test_an_option_that_stops_a_gem5_boot_is_refused() -> None:
    text = "\n".join(f"{o}=y" for o in kernel_config.required()) + "\nCONFIG_P2SB=y\n"
    with pytest.raises(ConfigError, match="CONFIG_P2SB.*00:1f.1"):
        kernel_config.check(text)
