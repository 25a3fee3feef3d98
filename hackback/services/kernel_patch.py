"""hackback's own patches to the Linux source (hackback/linux/patches/*.patch,
data as files), applied to a copy of the source tree the kernel step builds
from. The pristine tree stays as it was downloaded; the patched one sits
beside it in <work>/cache/kernel-src/, hard-linked to it except for the files a
patch touches, and is named by the patches' digest so a changed patch makes a
new one. The build mounts it where it mounts any tree, so switching between
the two recompiles only the patched files."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ..base import log, resources
from ..store.build import new_tmp
from ..store.hashes import HashCache, digest_of
from ..store.layout import Layout
from ..base.engine import Engine, Mount, RunSpec
from ..base.errors import ArtifactError

PATCH_DIR = resources.package_file("linux/patches")
_MARKER = ".hackback-patched"
_TARGET = re.compile(r"^\+\+\+ b/(\S+)", re.M)


def patches() -> list[Path]:
    return sorted(PATCH_DIR.glob("*.patch"))


def identity() -> list[dict[str, str]]:
    """What the manifest records: each patch by name and sha256."""
    return [{"name": p.name, "sha256": HashCache.sha256_uncached(p)} for p in patches()]


def patched_tree(tree: Path, layout: Layout, engine: Engine, tools_ref: str) -> Path:
    """`tree` with hackback's patches applied (made once, then reused)."""
    if not patches():
        return tree
    target = tree.parent / f"{tree.name}+hackback-{digest_of(identity())[:12]}"
    if (target / _MARKER).is_file():
        return target
    tmp = new_tmp(layout, "kernel-patch")
    try:
        with log.step(f"kernel source: applying {len(patches())} hackback patch(es) to a copy of {tree.name}"):
            work = tmp / "src"
            # Hard links (same filesystem): seconds, and no second 1.6 GiB.
            subprocess.run(["cp", "-al", str(tree), str(work)], check=True, capture_output=True)
            for p in patches():
                for rel in _TARGET.findall(p.read_text()):
                    _unshare(work / rel)  # never write through a link into the pristine tree
            script = "set -e; for p in /hackback/patches/*.patch; do patch -p1 --forward --batch < \"$p\"; done"
            engine.run(RunSpec(tools_ref, ["bash", "-c", script], step="kernel-patch", workdir="/hackback/linux",
                               kvm=False, network="none",
                               mounts=[Mount(work, "/hackback/linux", read_only=False), Mount(PATCH_DIR, "/hackback/patches")]),
                       phase="kernel-patch")
            (work / _MARKER).write_text("\n".join(f"{i['sha256']}  {i['name']}" for i in identity()) + "\n")
            os.rename(work, target)
    except subprocess.CalledProcessError as e:
        raise ArtifactError(f"could not copy {tree} to patch it: {e.stderr.decode(errors='replace').strip()[:200]}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _unshare(path: Path) -> None:
    if path.is_file():
        data = path.read_bytes()
        mode = path.stat().st_mode
        path.unlink()
        path.write_bytes(data)
        path.chmod(mode)
