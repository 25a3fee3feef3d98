"""The work directory's layout: the artifact kinds and where each lives.

Under the work directory:
    env/<name>/  images/<name>/  kernels/<name>/  checkpoints/<name>/  runs/<run-id>/
    benchmarks/<suite>-<member>-<input>-<threads>t/  profiles/<checkpoint>-b<interval>/  samplings/<checkpoint>-r<rule>/
    estimates/<sampling>-<board>/
        each with a manifest.json
    cache/   build trees and downloads that outlive artifacts (gem5 scons tree, kernel tree)
    .tmp/    staging directories, renamed into place when complete; an artifact a
             replace sets aside (old-<kind>-<name>.*) until the new one is in
    .locks/  one lock file per artifact
"""
from __future__ import annotations

import errno
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from ..base.errors import ArtifactError, ConfigError, DiskSpaceError

Kind = Literal["env", "images", "kernels", "checkpoints", "runs", "exports", "benchmarks", "profiles", "samplings", "estimates"]


KINDS: tuple[Kind, ...] = ("env", "images", "kernels", "checkpoints", "runs", "exports", "benchmarks", "profiles", "samplings",
                           "estimates")


@dataclass(frozen=True)
class Layout:
    work_dir: Path
    # A cluster node keeps its own hash cache (SQLite is not safe on a shared
    # network filesystem); None: the work dir's.
    node_hash_db: Optional[Path] = None
    # The task's --dry-run: nothing is built, written or started; each builder
    # asks would_build() first, which raises WouldBuild instead.
    dry_run: bool = False

    def would_build(self, what: str, why: str) -> None:
        """The one check each builder makes before building: in a dry run, say so instead."""
        if self.dry_run:
            raise WouldBuild(what, why)

    def artifact_dir(self, kind: Kind, name: str) -> Path:
        return self.work_dir / kind / name

    def cache_dir(self, *parts: str) -> Path:
        return self.work_dir.joinpath("cache", *parts)

    @property
    def tmp_dir(self) -> Path:
        return self.work_dir / ".tmp"

    @property
    def lock_dir(self) -> Path:
        return self.work_dir / ".locks"

    @property
    def hash_db(self) -> Path:
        return self.node_hash_db or self.work_dir / ".hashes.sqlite"


def make_dir(path: Path, what: str) -> None:
    """mkdir -p that fails in one line: a read-only work dir, a file in the way, a full disk."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise ConfigError(f"cannot create {path} ({what}): permission denied",
                          "make the work dir writable, or point work_dir (HACKBACK_WORK_DIR, --work-dir) at one you can write") from None
    except (FileExistsError, NotADirectoryError):
        in_way = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise ArtifactError(f"{in_way} is a file, where hackback keeps its {what}",
                            f"move it aside (mv {in_way} {in_way}.bak); hackback makes the folder again") from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskSpaceError(f"cannot create {path} ({what}): no space left", "free some space on that disk") from None
        raise ConfigError(f"cannot create {path} ({what}): {e.strerror}",
                          "point work_dir (HACKBACK_WORK_DIR, --work-dir) at a directory you can write") from None


class WouldBuild(Exception):
    """Raised instead of building while a dry run (--dry-run) is on: what would be
    built and why. Not an error: the pipeline turns it into a line of the plan."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")
        self.what, self.why = what, why


def require_free(path: Path, need_bytes: int, what: str) -> None:
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need_bytes:
        raise DiskSpaceError(
            f"{what} needs about {need_bytes / 2**30:.1f} GiB free under {probe}, only {free / 2**30:.1f} GiB is",
            "free some space, or point work_dir (HACKBACK_WORK_DIR) at a larger disk",
        )


def copy_file(src: Path, dst: Path, what: str) -> None:
    """shutil.copy2 whose disk filling up is one line: the space is checked first,
    and a copy that fills the disk anyway leaves no partial file."""
    size = src.stat().st_size
    require_free(dst.parent, size + (16 << 20), what)
    try:
        shutil.copy2(src, dst)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        dst.unlink(missing_ok=True)
        raise DiskSpaceError(f"{what}: the disk under {dst.parent} filled up",
                             f"free at least {size / 2**20:.0f} MiB there, or point work_dir at a larger disk") from None
