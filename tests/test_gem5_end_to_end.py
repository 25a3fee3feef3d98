"""The whole method with real gem5 (gem5 tier): boot -> checkpoint -> restore.

Needs HACKBACK_TEST_GEM5_SRC (a gem5 v24 tree). A cold gem5 build takes hours
and a simulated boot tens of minutes on 2 cores, so point
HACKBACK_TEST_WORK_DIR at a work directory where `invoke checkpoint` has run
(or will: the test builds whatever is missing, like the task). Restores write
runs there; nothing is written to the checkpoint, image or kernel (checked).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hackback.artifacts import HashCache, Manifest

pytestmark = pytest.mark.gem5
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def work(gem5_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(os.environ.get("HACKBACK_TEST_WORK_DIR") or tmp_path_factory.mktemp("gem5-work"))


def hackback(work: Path, gem5_src: Path, *args: str, timeout: int = 6 * 3600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HACKBACK_")}
    env.update(HACKBACK_WORK_DIR=str(work), HACKBACK_GEM5_SRC=str(gem5_src))
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def checkpoint_dir(work: Path, gem5_src: Path) -> Path:
    out = hackback(work, gem5_src, "checkpoint")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    return work / "checkpoints" / "default"


def digests(paths: list[Path]) -> dict[str, str]:
    return {str(p): HashCache.quick_sha256(p) for root in paths for p in sorted(root.rglob("*") if root.is_dir() else [root]) if p.is_file()}


def test_checkpoint_is_taken_after_linux_boot(checkpoint_dir: Path) -> None:
    info = Manifest.read(checkpoint_dir).parts["checkpoint"]["info"]  # type: ignore[union-attr]
    cpt = checkpoint_dir / info["cpt"]
    assert (cpt / "m5.cpt").is_file()
    assert any(p.name.endswith(".cow") for p in cpt.iterdir()), "the disk's copy-on-write layer is in the checkpoint"
    console = (checkpoint_dir / "console.log").read_text(errors="replace")
    assert "Linux version" in console and "HACKBACK-READY" in console
    assert info["gem5"]["release"].startswith("24.0") and info["tick"] > 0


@pytest.mark.parametrize("cpu", ["atomic", "timing"])
def test_restore_runs_hello_and_leaves_the_checkpoint_and_image_as_they_were(cpu: str, checkpoint_dir: Path, work: Path, gem5_src: Path) -> None:
    info = Manifest.read(checkpoint_dir).parts["checkpoint"]["info"]  # type: ignore[union-attr]
    watched = [checkpoint_dir, Path(info["image"]["path"]), Path(info["kernel"]["path"])]
    before = digests(watched)
    out = hackback(work, gem5_src, "restore", "--script", str(REPO / "examples" / "hello.rcS"), "--cpu", cpu, "--force")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    runs = sorted((work / "runs").glob(f"default-hello-{cpu}-*"), key=lambda p: p.stat().st_mtime)
    run = runs[-1]
    console = (run / "console.log").read_text(errors="replace")
    assert "hello from the restored guest" in console and "HACKBACK-SCRIPT-EXIT 0" in console
    assert "HACKBACK-READY" not in console  # the restore starts after the checkpoint
    rec = Manifest.read(run).parts["run"]["info"]  # type: ignore[union-attr]
    assert rec["cause"] == "exit" and rec["script_status"] == "0" and rec["board"]["cpu"] == cpu
    for name in ("stats.txt", "config.ini", "config.json", "script.rcS"):
        assert (run / name).is_file()
    assert f'"{cpu}"' in (run / "config.json").read_text() or cpu in (run / "config.ini").read_text().lower()
    assert digests(watched) == before


def test_a_script_that_exits_3_makes_the_restore_exit_3(checkpoint_dir: Path, work: Path, gem5_src: Path, tmp_path: Path) -> None:
    s = tmp_path / "exit3.rcS"
    s.write_text("#!/bin/sh\necho about to fail\nexit 3\n")
    out = hackback(work, gem5_src, "restore", "--script", str(s), "--force")
    assert out.returncode == 3, out.stdout[-2000:] + out.stderr
    assert "exited 3" in out.stderr.strip().splitlines()[-1]


def test_a_changed_copy_of_the_image_is_refused(checkpoint_dir: Path, work: Path, gem5_src: Path, tmp_path: Path) -> None:
    info = Manifest.read(checkpoint_dir).parts["checkpoint"]["info"]  # type: ignore[union-attr]
    copy = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", info["image"]["path"], str(copy)], check=True)
    with open(copy, "r+b") as f:
        f.seek(1 << 20)
        b = f.read(1)
        f.seek(1 << 20)
        f.write(bytes([b[0] ^ 0xFF]))
    start = time.monotonic()
    out = hackback(work, gem5_src, "restore", "--script", str(REPO / "examples" / "hello.rcS"), "--image", str(copy))
    assert out.returncode == 14
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not the one checkpoint 'default' was taken with" in lines[0]
    assert time.monotonic() - start < 120


def test_kvm_boot_is_refused_within_a_minute_where_kvm_cannot_run_a_guest(work: Path, gem5_src: Path, checkpoint_dir: Path, engine, tools) -> None:  # type: ignore[no-untyped-def]
    from hackback import accel
    from hackback.artifacts import Layout

    img = work / "images" / "default" / "vmlinuz"
    works, _why = accel.kvm_runs_guests(engine, Layout(work), tools.ref, tools.versions.get("qemu", ""), img)
    if works:
        pytest.skip("KVM runs guests on this host: the refusal does not apply (and a KVM boot would replace the checkpoint)")
    before = digests([checkpoint_dir])
    start = time.monotonic()
    out = hackback(work, gem5_src, "checkpoint", "--cpu", "kvm", timeout=600)
    assert time.monotonic() - start < 60
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "KVM cannot run a guest here" in lines[0]
    assert digests([checkpoint_dir]) == before
