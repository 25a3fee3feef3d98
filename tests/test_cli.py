"""The tasks as a user runs them: `invoke` in the repo and the installed `hackback` command."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TASKS = ("env", "image", "kernel", "checkpoint", "restore", "clean")


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HACKBACK_")}
    environ.update(HACKBACK_WORK_DIR=str(tmp_path / "work"), **env)
    return subprocess.run(args, cwd=REPO, env=environ, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("program", [[sys.executable, "-m", "invoke"], ["hackback"]])
def test_list_names_every_task_with_help(program: list[str], tmp_path: Path) -> None:
    out = run(program + ["--list"], tmp_path)
    assert out.returncode == 0, out.stderr
    for task in TASKS:
        line = next((ln for ln in out.stdout.splitlines() if ln.strip().startswith(task + " ")), "")
        assert len(line.split()) > 2, f"{task} has no one-line help in:\n{out.stdout}"


@pytest.mark.parametrize("task, missing", [("kernel", "kernel"), ("checkpoint", "kernel"), ("restore", "kernel")])
def test_steps_not_built_yet_say_so_and_exit_non_zero(task: str, missing: str, tmp_path: Path) -> None:
    out = run([sys.executable, "-m", "invoke", task], tmp_path)
    assert out.returncode == 3
    assert f"`invoke {missing}` is not available" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_unknown_config_key_is_one_line_with_exit_2(tmp_path: Path) -> None:
    out = run([sys.executable, "-m", "invoke", "env"], tmp_path, HACKBACK_GEM5_VERSOIN="x")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("hackback: error: unknown config key")


def test_no_docker_engine_is_one_line_on_how_to_start_it(tmp_path: Path) -> None:
    out = run(["hackback", "env"], tmp_path, DOCKER_HOST=f"unix://{tmp_path}/none.sock")
    assert out.returncode == 4
    assert "dockerd" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.docker
def test_env_without_reachable_gem5_fails_fast_and_leaves_nothing(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = engine.containers(all_owners=True)
    start = time.monotonic()
    out = run([sys.executable, "-m", "invoke", "env"], tmp_path, HACKBACK_GEM5_REPO="https://gem5.invalid/gem5.git")
    assert time.monotonic() - start < 120
    assert out.returncode == 7
    assert "--gem5-src" in out.stderr.strip().splitlines()[-1]
    assert engine.containers(all_owners=True) == before
    assert not any((tmp_path / "work" / "env").glob("*"))
