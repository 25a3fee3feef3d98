"""The tools image, built for real from the pulled or bootstrapped base (Docker tier)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from hackback.store.records import ToolsImage
from hackback.services import tools_image
from hackback.base import config
from hackback.store.layout import Layout
from hackback.base.engine import Engine, RunSpec

pytestmark = pytest.mark.docker


@pytest.mark.parametrize(
    "command, expect",
    [
        (["packer", "version"], "Packer v1.6.6"),
        (["qemu-system-x86_64", "--version"], "QEMU emulator version"),
        (["scons", "--version"], "SCons"),
        (["debootstrap", "--version"], "debootstrap"),
        (["sh", "-c", "mke2fs -V 2>&1; sfdisk --version"], "sfdisk"),
    ],
)
def test_tools_image_runs_each_tool(engine: Engine, tools: ToolsImage, command: list[str], expect: str) -> None:
    lines: list[str] = []
    engine.run(RunSpec(tools.ref, command, step="t-tools", kvm=False), on_line=lines.append)
    assert any(expect in line for line in lines), lines


def test_versions_are_recorded_as_installed(tools: ToolsImage) -> None:
    assert tools.versions["packer"] == "Packer v1.6.6"
    assert tools.versions["gcc"].startswith("gcc")
    assert tools.versions["debian"].startswith("12.")


def test_second_ensure_is_a_quick_no_op(engine: Engine, tools: ToolsImage, session_work: Path) -> None:
    cfg = config.load(flags={"work_dir": str(session_work)}, environ={})
    start = time.monotonic()
    again = tools_image.ensure_tools(cfg, engine, Layout(cfg.work_dir))
    assert again.id == tools.id
    assert time.monotonic() - start < 5


def test_air_gapped_base_is_bootstrapped_and_labelled(engine: Engine, tools: ToolsImage) -> None:
    if tools.base.origin in ("pulled", "local"):
        pytest.skip(f"this engine has {tools.base.ref} ({tools.base.origin}); the bootstrap path was not needed")
    labels = engine.image_labels(tools.base.ref)
    assert labels["io.hackback.kind"] == "base"
    assert labels["io.hackback.mirror"] == "http://deb.debian.org/debian"
