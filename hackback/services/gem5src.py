"""Where gem5's source comes from, and what exactly it is.

By default a shallow clone of the pinned release from upstream, kept under the
work directory; `--gem5-src PATH` takes a local checkout (a researcher's fork,
used in place so edits are seen by the next incremental build) or a tarball
(extracted once). Identity is recorded, not assumed: the release from
src/base/version.cc, the git commit when there is one, a digest of the tree,
and the checkpoint version tags this tree compiles in.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Optional

from ..base import log, tarballs
from ..store.build import new_tmp
from ..store.hashes import HashCache
from ..store.layout import Layout
from ..base.config import Gem5Config
from ..base.errors import Gem5SourceError, UsageError
from ..store.records import Gem5Source

# What a gem5 build (here, or an earlier one in the tree itself) writes into a
# source tree: never part of its identity. No gem5 source file has these names.
_SKIP_NAMES = {".git", "__pycache__", ".sconsign.dblite", "parsetab.py", "parser.out"}
_HINT = "pass --gem5-src PATH (a gem5 checkout or tarball), or set gem5.src in hackback.toml"


def resolve(cfg: Gem5Config, layout: Layout, hashes: HashCache) -> Gem5Source:
    if cfg.src is None:
        path, origin = _clone(cfg, layout), f"clone of {cfg.repo} {cfg.version}"
    elif cfg.src.is_dir():
        path, origin = cfg.src, f"local tree {cfg.src}"
    elif cfg.src.is_file() and tarfile.is_tarfile(cfg.src):
        path, origin = _extract(cfg.src, layout, hashes), f"tarball {cfg.src}"
    elif cfg.src.exists():
        raise UsageError(f"--gem5-src {cfg.src} is neither a directory nor a tarball", _HINT)
    else:
        raise UsageError(f"--gem5-src {cfg.src} does not exist", _HINT)
    return describe(path, origin, hashes)


def describe(path: Path, origin: str, hashes: HashCache) -> Gem5Source:
    for must in ("SConstruct", "src/base/version.cc", "util/m5/SConstruct", "build_opts/X86"):
        if not (path / must).is_file():
            raise UsageError(f"{path} is not a gem5 source tree (no {must})", _HINT)
    release = read_release(path)
    commit, dirty = _git_state(path)
    skip_top = {path / "build", path / "util" / "m5" / "build"}

    def skip(p: Path) -> bool:
        return p.name in _SKIP_NAMES or p.suffix == ".pyc" or p in skip_top

    with log.step(f"hashing gem5 source {path}"):
        tree = hashes.tree_sha256(path, skip)
        m5 = hashes.tree_sha256(path / "util" / "m5", skip) + hashes.tree_sha256(path / "include", skip)
    tags = tuple(sorted(p.stem for p in (path / "util" / "cpt_upgraders").glob("*.py")))
    return Gem5Source(path, origin, release, commit, dirty, tree, m5, tags)


def read_release(path: Path) -> str:
    text = (path / "src" / "base" / "version.cc").read_text(errors="replace")
    m = re.search(r'gem5Version\s*=\s*"([^"]+)"', text)
    if not m:
        raise UsageError(f"{path}/src/base/version.cc names no gem5Version", _HINT)
    return m.group(1)


def _git_state(path: Path) -> tuple[Optional[str], Optional[bool]]:
    if not (path / ".git").exists() or shutil.which("git") is None:
        return None, None
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return None, None
    return commit, bool(status.strip())


def _clone(cfg: Gem5Config, layout: Layout) -> Path:
    target = layout.cache_dir("src", f"gem5-{cfg.version}")
    if (target / "SConstruct").is_file():
        return target
    layout.would_build("the gem5 source", f"a clone of gem5 {cfg.version} from {cfg.repo} into the work dir (or give --gem5-src)")
    if shutil.which("git") is None:
        raise Gem5SourceError("git is not installed, so gem5 cannot be cloned", _HINT)
    log.info(f"cloning gem5 {cfg.version} from {cfg.repo} (the whole clone may take at most {cfg.clone_timeout}s: "
             "gem5.clone_timeout)")
    tmp = new_tmp(layout, "gem5-src")
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    try:
        cmd = ["git", "clone", "--depth", "1", "--branch", cfg.version, cfg.repo, str(tmp / "gem5")]
        log.action(" ".join(cmd))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.clone_timeout, env=env)
        except subprocess.TimeoutExpired:
            raise Gem5SourceError(f"cloning gem5 from {cfg.repo} did not finish in {cfg.clone_timeout}s", _HINT) from None
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["git failed"])[-1]
            raise Gem5SourceError(f"cannot clone gem5 {cfg.version} from {cfg.repo}: {reason}", _HINT)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp / "gem5", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _extract(tarball: Path, layout: Layout, hashes: HashCache) -> Path:
    target = layout.cache_dir("src", f"gem5-tar-{hashes.sha256(tarball)[:16]}")
    if target.is_dir():
        return target
    layout.would_build("the gem5 source", f"{tarball} extracted into the work dir")
    tmp = new_tmp(layout, "gem5-tar")
    try:
        with log.step(f"extracting {tarball}"):
            tarballs.extract(tarball, tmp, "--gem5-src", "use a gem5 release tarball or a checkout")
        entries = list(tmp.iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(root, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-extracted tree never stays
    return target


