from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from hackback.base import config
from hackback.base.errors import ConfigError


def test_shipped_defaults_load_and_are_frozen(tmp_path: Path) -> None:
    cfg = config.load(environ={}, cwd=tmp_path)
    assert cfg.gem5.version == "v24.0.0.1"
    assert cfg.base.suite == "bookworm"
    assert cfg.work_dir == Path("~/hackback-work").expanduser()
    assert dict(cfg.gem5.build_options) == {"RUBY": "n", "USE_SYSTEMC": "n"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "x"  # type: ignore[misc]


def test_the_default_work_dir_is_the_same_from_any_directory(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = config.load(environ={}, cwd=tmp_path / "a").work_dir
    assert a == config.load(environ={}, cwd=tmp_path / "b").work_dir and a.is_absolute()


def test_layers_in_order_defaults_file_env_flags(tmp_path: Path) -> None:
    (tmp_path / "hackback.toml").write_text('name = "fromfile"\nwork_dir = "out"\n[gem5]\njobs = 3\nvariant = "fast"\n')
    env = {"HACKBACK_GEM5_JOBS": "5", "HACKBACK_BASE_MODE": "bootstrap"}
    cfg = config.load(flags={"gem5.jobs": 7, "name": None}, environ=env, cwd=tmp_path)
    assert cfg.name == "fromfile"  # a None flag means "not given"
    assert cfg.gem5.variant == "fast"  # file over defaults
    assert cfg.base.mode == "bootstrap"  # environment over defaults
    assert cfg.gem5.jobs == 7  # flags over everything
    assert cfg.work_dir == tmp_path / "out"  # relative to the file that set it


def test_user_file_from_environment_and_relative_paths(tmp_path: Path) -> None:
    sub = tmp_path / "cfgdir"
    sub.mkdir()
    (sub / "my.toml").write_text('[gem5]\nsrc = "../gem5"\n')
    cfg = config.load(environ={"HACKBACK_CONFIG": str(sub / "my.toml")}, cwd=tmp_path)
    assert cfg.gem5.src == tmp_path / "gem5"


def test_unknown_key_names_the_closest_known_one(tmp_path: Path) -> None:
    (tmp_path / "hackback.toml").write_text('[gem5]\nverison = "v23"\n')
    with pytest.raises(ConfigError) as e:
        config.load(environ={}, cwd=tmp_path)
    assert "gem5.verison" in e.value.message and "did you mean 'gem5.version'" in e.value.one_line()


def test_unknown_environment_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown config key"):
        config.load(environ={"HACKBACK_GEM5_SCR": "/x"}, cwd=tmp_path)


@pytest.mark.parametrize(
    "flags, match",
    [
        ({"gem5.jobs": -1}, "whole number"),
        ({"gem5.variant": "turbo"}, "choose one of: opt, fast, debug"),
        ({"base.mode": "maybe"}, "choose one of: auto, pull, bootstrap"),
        ({"name": "a/b"}, "not usable as a directory name"),
        ({"gem5.build_options": {"ruby": "n"}}, "not a Kconfig name"),
    ],
)
def test_bad_values_are_refused_with_a_hint(tmp_path: Path, flags: dict, match: str) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(flags=flags, environ={}, cwd=tmp_path)
    assert match in e.value.one_line()


def test_bad_toml_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "hackback.toml").write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(environ={}, cwd=tmp_path)


def test_build_options_from_environment(tmp_path: Path) -> None:
    cfg = config.load(environ={"HACKBACK_GEM5_BUILD_OPTIONS": "RUBY=y,USE_SYSTEMC=n"}, cwd=tmp_path)
    assert dict(cfg.gem5.build_options) == {"RUBY": "y", "USE_SYSTEMC": "n"}
    assert hash(cfg)  # frozen all the way down


def test_empty_src_means_clone(tmp_path: Path) -> None:
    assert config.load(environ={"HACKBACK_GEM5_SRC": ""}, cwd=tmp_path).gem5.src is None


# ---------------------------------------------------------------- bad values refused at load (issue 9, 10)


def _write_elf(path: Path, machine: int = 0x3E, interp: bool = False) -> Path:
    """A minimal 64-bit ELF header and one program header (PT_INTERP makes it dynamic)."""
    import struct

    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HH", header, 16, 2, machine)  # ET_EXEC
    struct.pack_into("<Q", header, 32, 64)
    struct.pack_into("<HH", header, 54, 56, 1)
    phdr = bytearray(56)
    struct.pack_into("<I", phdr, 0, 3 if interp else 1)
    path.write_bytes(bytes(header + phdr))
    return path


def _refused(tmp_path: Path, **load: object) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        config.load(environ={}, cwd=tmp_path, **load)  # type: ignore[arg-type]
    line = e.value.one_line()
    assert "\n" not in line and e.value.hint, line  # one line, with a hint
    assert not (tmp_path / "work").exists()  # loading a config touches nothing
    return e.value


class TestCacheSizes:
    @pytest.mark.parametrize("size", ["0", "1B", "512B", "3KiB", "1000", "48KiB"])
    def test_a_size_gem5_caches_cannot_take_is_refused(self, tmp_path: Path, size: str) -> None:
        e = _refused(tmp_path, flags={"work_dir": str(tmp_path / "work"), "restore.l1d": size})
        assert f"restore.l1d = {size!r}" in e.one_line() and "power of two of at least 1KiB" in e.one_line()

    @pytest.mark.parametrize("key", ["l1i", "l2"])
    def test_every_cache_is_checked(self, tmp_path: Path, key: str) -> None:
        _refused(tmp_path, flags={"work_dir": str(tmp_path / "work"), f"restore.{key}": "0"})

    def test_powers_of_two_from_1kib_pass(self, tmp_path: Path) -> None:
        cfg = config.load(flags={"restore.l1d": "1KiB", "restore.l1i": "64KiB", "restore.l2": "2MiB"}, environ={}, cwd=tmp_path)
        assert (cfg.restore.l1d, cfg.restore.l2) == ("1KiB", "2MiB")


class TestBuildOptionValues:
    @pytest.mark.parametrize("toml_value", ["false", "1", "true", "[\"n\"]"])
    def test_a_non_string_in_a_toml_file_is_refused_not_stringified(self, tmp_path: Path, toml_value: str) -> None:
        (tmp_path / "hackback.toml").write_text(f'work_dir = "work"\n[gem5]\nbuild_options = {{ RUBY = {toml_value} }}\n')
        e = _refused(tmp_path)
        assert "is not a string" in e.one_line() and 'RUBY = "n"' in e.one_line()

    @pytest.mark.parametrize("value", ["n; rm -rf ~", "$(id)", "a b", "y\n"])
    def test_a_value_that_is_not_a_plain_word_is_refused(self, tmp_path: Path, value: str) -> None:
        e = _refused(tmp_path, flags={"work_dir": str(tmp_path / "work"), "gem5.build_options": {"RUBY": value}})
        assert "not a plain Kconfig value" in e.one_line()

    def test_plain_values_pass(self, tmp_path: Path) -> None:
        cfg = config.load(flags={"gem5.build_options": {"RUBY": "n", "PROTOCOL": "MESI_Two_Level", "X": "1.5+rc-2", "E": ""}},
                          environ={}, cwd=tmp_path)
        assert cfg.gem5.build_options["PROTOCOL"] == "MESI_Two_Level"


class TestSuitesAndDigest:
    @pytest.mark.parametrize("key", ["image.suite", "base.suite"])
    @pytest.mark.parametrize("value", ["", "  "])
    def test_an_empty_suite_is_refused(self, tmp_path: Path, key: str, value: str) -> None:
        e = _refused(tmp_path, flags={"work_dir": str(tmp_path / "work"), key: value})
        assert f"{key} is empty" in e.one_line()

    @pytest.mark.parametrize("digest", ["abc", "a" * 63, "a" * 65, "g" * 64, "sha256:" + "a" * 57])
    def test_a_malformed_kernel_sha256_is_refused(self, tmp_path: Path, digest: str) -> None:
        e = _refused(tmp_path, flags={"work_dir": str(tmp_path / "work"), "kernel.sha256": digest})
        assert "kernel.sha256" in e.one_line() and "64 hex digits" in e.one_line()

    @pytest.mark.parametrize("digest", ["", "a" * 64, "AbCdEf0123456789" * 4])
    def test_an_empty_or_well_formed_sha256_passes(self, tmp_path: Path, digest: str) -> None:
        assert config.load(flags={"kernel.sha256": digest}, environ={}, cwd=tmp_path).kernel.sha256 == digest


class TestM5Given:
    def _bad(self, tmp_path: Path, m5: Path) -> str:
        return _refused(tmp_path, flags={"work_dir": str(tmp_path / "work"), "image.m5": str(m5)}).one_line()

    def test_missing(self, tmp_path: Path) -> None:
        line = self._bad(tmp_path, tmp_path / "nope")
        assert "--m5" in line and "does not exist" in line

    def test_a_directory(self, tmp_path: Path) -> None:
        (tmp_path / "m5dir").mkdir()
        assert "is a directory" in self._bad(tmp_path, tmp_path / "m5dir")

    def test_a_script(self, tmp_path: Path) -> None:
        (tmp_path / "m5").write_text("#!/bin/sh\necho m5\n")
        assert "is not an ELF file" in self._bad(tmp_path, tmp_path / "m5")

    def test_a_dynamic_or_foreign_executable(self, tmp_path: Path) -> None:
        assert "dynamically linked x86-64" in self._bad(tmp_path, _write_elf(tmp_path / "dyn", interp=True))
        assert "machine 0xb7" in self._bad(tmp_path, _write_elf(tmp_path / "arm", machine=0xB7))

    def test_from_the_environment_too(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="does not exist"):
            config.load(environ={"HACKBACK_IMAGE_M5": str(tmp_path / "nope")}, cwd=tmp_path)

    def test_a_static_x86_64_executable_passes(self, tmp_path: Path) -> None:
        m5 = _write_elf(tmp_path / "m5")
        assert config.load(flags={"image.m5": str(m5)}, environ={}, cwd=tmp_path).image.m5 == m5


class TestConfigFileUnreadable:
    def test_not_utf8(self, tmp_path: Path) -> None:
        (tmp_path / "hackback.toml").write_bytes(b'name = "caf\xe9"\n')  # Latin-1
        assert "is not UTF-8" in _refused(tmp_path).one_line()

    def test_a_directory(self, tmp_path: Path) -> None:
        (tmp_path / "conf.d").mkdir()
        e = _refused(tmp_path, user_file=tmp_path / "conf.d")
        assert "is a directory" in e.one_line() and "--config" in e.one_line()

    def test_a_directory_named_by_the_environment(self, tmp_path: Path) -> None:
        (tmp_path / "conf.d").mkdir()
        with pytest.raises(ConfigError, match="is a directory"):
            config.load(environ={"HACKBACK_CONFIG": str(tmp_path / "conf.d")}, cwd=tmp_path)


def test_a_switch_goes_from_a_faster_cpu_to_the_measured_one(tmp_path: Path) -> None:
    for frm, to in (("timing", "atomic"), ("atomic", "atomic"), ("timing", "timing")):
        with pytest.raises(ConfigError, match="is not a faster CPU than restore.cpu"):
            config.load(flags={"restore.switch_from": frm, "restore.cpu": to}, environ={}, cwd=tmp_path)
    ok = config.load(flags={"restore.switch_from": "timing", "restore.cpu": "o3"}, environ={}, cwd=tmp_path)
    assert ok.restore.switch_from == "timing"
    with pytest.raises(ConfigError) as bad:
        config.load(flags={"restore.switch_from": "o3"}, environ={}, cwd=tmp_path)
    assert 'choose one of: "", atomic, timing' in bad.value.one_line()


def _documented_variables() -> set[str]:
    """Every HACKBACK_* name the README, the docs, the shipped defaults and the package's own code speak of."""
    import re

    root = Path(__file__).resolve().parent.parent
    texts = [root / "README.md", *root.glob("docs/**/*.md"), *(root / "hackback").rglob("*")]
    names: set[str] = set()
    for path in texts:
        if path.is_file() and path.suffix in (".md", ".py", ".toml", ".sh", ".c", ".sbatch", ".rcS", ""):
            names |= set(re.findall(r"\bHACKBACK_[A-Z0-9_]*[A-Z0-9]", path.read_text(errors="replace")))
    return names


def test_every_documented_variable_is_a_config_key_or_a_known_switch(tmp_path: Path) -> None:
    keys = {config.ENV_PREFIX + k.replace(".", "_").upper() for k in config._known_keys()}
    documented = _documented_variables()
    assert {"HACKBACK_PLAIN", "HACKBACK_NODE_CACHE", "HACKBACK_WORK_DIR"} <= documented  # the scan sees them
    unknown = {v for v in documented if v not in keys and v[len(config.ENV_PREFIX):] not in config.NOT_CONFIG
               and not v.startswith("HACKBACK_TEST_") and v != "HACKBACK_TEST"}  # HACKBACK_TEST_*: the tests' own
    assert unknown == set(), f"documented but neither a config key nor in config.NOT_CONFIG: {sorted(unknown)}"


def test_the_documented_switches_set_together_break_no_task(tmp_path: Path) -> None:
    """HACKBACK_PLAIN=1, HACKBACK_NODE_CACHE=..., HACKBACK_NO_REAPER=1 and the rest
    are not config keys: a task run with every one of them set works."""
    import subprocess
    import sys

    switches = {config.ENV_PREFIX + name: str(tmp_path / "x") if name.endswith(("CACHE", "DIR")) else "1"
                for name in config.NOT_CONFIG if name != "CONFIG"}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HACKBACK_")}, **switches}
    cfg = config.load(environ=switches, cwd=tmp_path)  # the loader itself
    assert cfg.name == "default"
    out = subprocess.run([sys.executable, "-m", "hackback.cli", "checkpoints", "--work-dir", str(tmp_path / "work")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "no checkpoints in" in out.stdout
