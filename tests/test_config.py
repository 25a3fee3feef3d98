from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hackback import config
from hackback.errors import ConfigError


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
