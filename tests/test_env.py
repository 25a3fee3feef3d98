"""The env step with a real gem5 tree (gem5 tier: HACKBACK_TEST_GEM5_SRC).

m5 builds in seconds. The full gem5 build takes hours on 2 cores from cold:
point HACKBACK_TEST_WORK_DIR at a work directory whose build tree should be
reused (the test then takes the incremental path).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hackback import config, elf, env
from hackback.engine import Engine, RunSpec

pytestmark = pytest.mark.gem5


def test_m5_is_a_static_x86_64_executable_and_rerun_is_a_no_op(gem5_src: Path, engine: Engine, make_config) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(gem5__src=str(gem5_src))
    art = env.ensure_m5(cfg, engine=engine)
    info = elf.read(art.m5)
    assert info.x86_64 and info.static
    rec = art.manifest.parts["m5"]
    assert rec["outputs"]["m5"]["size"] == art.m5.stat().st_size
    assert rec["info"]["gem5_source"]["release"].startswith("24.")
    start = time.monotonic()
    env.ensure_m5(cfg, engine=engine)
    assert time.monotonic() - start < 5


def test_env_image_runs_gem5_and_rerun_is_a_no_op(gem5_src: Path, engine: Engine, tmp_path: Path) -> None:
    work = os.environ.get("HACKBACK_TEST_WORK_DIR") or str(tmp_path / "work")
    cfg = config.load(flags={"work_dir": work, "gem5.src": str(gem5_src)}, environ={})
    art = env.ensure(cfg, engine=engine)
    assert art.image
    lines: list[str] = []
    engine.run(RunSpec(art.image, ["gem5.opt", "--help"], step="t-gem5-help", kvm=False), on_line=lines.append)
    assert any("Usage" in ln or "usage" in ln for ln in lines), lines[:5]
    info = art.manifest.parts["gem5"]["info"]
    assert info["gem5_source"]["version_tags"] and info["gem5_binary_sha256"]
    start = time.monotonic()
    again = env.ensure(cfg, engine=engine)
    assert again.image == art.image and time.monotonic() - start < 5
