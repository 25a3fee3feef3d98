from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from hackback.base import resources

REPO = Path(__file__).resolve().parent.parent


def test_dockerfiles_are_found_in_the_checkout() -> None:
    assert (resources.docker_dir("tools") / "Dockerfile").is_file()
    assert (resources.docker_dir("env") / "Dockerfile").is_file()


def test_a_wheel_carries_dockerfiles_guest_files_and_defaults(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("hackback-*.whl"))).namelist()
    for want in ("hackback/docker/tools/Dockerfile", "hackback/docker/env/Dockerfile", "hackback/defaults.toml",
                 "hackback/guest/hack_back_ckpt.rcS", "hackback/guest/stage1.sh", "hackback/guest/check.sh",
                 "hackback/linux/gem5.config", "hackback/guest/hackback-guest.c", "hackback/guest/packer-template.json",
                 "hackback/configs/hackback_contract.json"):
        assert want in names, want
    patches = [n for n in names if n.startswith("hackback/linux/patches/") and n.endswith(".patch")]
    assert len(patches) == len(list((REPO / "hackback" / "linux" / "patches").glob("*.patch"))) > 0
