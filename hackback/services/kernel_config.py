"""The kernel configuration gem5 x86 needs: our fragment, and the check that a
merged .config has every option the shipped fragment builds in (=y). Used by
the kernel step."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from ..base import resources
from ..base.errors import ConfigError

FRAGMENT = resources.package_file("linux/gem5.config")
_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse(text: str) -> dict[str, str]:
    """A .config (or fragment) as {option: value}; 'n' for `# CONFIG_X is not set`."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        m = _SET.match(line)
        if m:
            out[m.group(1)] = m.group(2)
        elif (m := _UNSET.match(line)):
            out[m.group(1)] = "n"
    return out


# Options that must stay off, and why: each one stops a gem5 v24.0 boot.
FORBIDDEN = {
    "CONFIG_P2SB": "it writes the config space of PCI device 00:1f.1, and gem5 v24.0 panics on that",
}


def hz(config_text: str) -> Optional[int]:
    """The kernel's timer frequency (CONFIG_HZ), which udelay's loop count is per."""
    value = parse(config_text).get("CONFIG_HZ", "")
    return int(value) if value.isdigit() else None


def required(fragment: Path = FRAGMENT) -> list[str]:
    """Options the fragment asks to be built in."""
    return sorted(k for k, v in parse(fragment.read_text()).items() if v == "y")


def missing(config_text: str, fragment: Path = FRAGMENT) -> list[str]:
    have = parse(config_text)
    return [opt for opt in required(fragment) if have.get(opt) != "y"]


def check(config_text: str) -> None:
    """What gem5 needs is fixed by the shipped fragment, whichever fragment a
    user merges: a user's fragment that drops one of these fails here."""
    have = parse(config_text)
    for opt, why in FORBIDDEN.items():
        if have.get(opt) == "y":
            raise ConfigError(f"the merged kernel config builds in {opt}, but {why}",
                              "turn off what selects it (see `make menuconfig`, search for it)")
    gone = missing(config_text, FRAGMENT)
    if gone:
        more = f" (and {len(gone) - 1} more)" if len(gone) > 1 else ""
        raise ConfigError(
            f"the merged kernel config does not build in {gone[0]}{more}, which gem5 x86 needs",
            "it depends on an option the base config lacks, or the fragment was edited; see `make menuconfig` for its dependencies",
        )
