"""Making an artifact: per-artifact locks, staged writes renamed into place, the no-op when fresh, leftovers of killed runs."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

from ..base import log
from ..base.errors import LockBusy
from ..base.ownership import pid_alive
from .hashes import HashCache, digest_of, hashes_of
from .layout import KINDS, Kind, Layout, make_dir
from .manifest import MANIFEST, Manifest, write_manifest

@contextlib.contextmanager
def lock(layout: Layout, kind: Kind, name: str, wait: bool = True) -> Iterator[None]:
    """Exclusive per-artifact lock. Waits (saying so) if another run holds it,
    unless wait=False, then raises LockBusy. Once held, a replace of this artifact
    that a killed run left half-done is finished first (see staged)."""
    make_dir(layout.lock_dir, "per-artifact locks (.locks)")
    path = layout.lock_dir / f"{kind}-{name}.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            f.seek(0)
            holder = f.read().strip() or "another process"
            if not wait:
                raise LockBusy(f"{kind}/{name} is being built by {holder}", "wait for it to finish, or stop it") from None
            log.info(f"waiting for {kind}/{name}: {holder} is building it")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        try:
            _finish_replace(layout, kind, name)
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def tmp_name(label: str) -> str:
    """<label>.<host>.<pid>.<random>: who made a .tmp entry, so `clean` can tell abandoned ones."""
    return f"{label}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def new_tmp(layout: Layout, label: str) -> Path:
    """A fresh staging directory; its name carries our host and pid so `clean` can tell abandoned ones."""
    layout.tmp_dir.mkdir(parents=True, exist_ok=True)
    path = layout.tmp_dir / tmp_name(label)
    path.mkdir()
    return path


@contextlib.contextmanager
def staged(layout: Layout, kind: Kind, name: str, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a staging directory; on success it replaces <kind>/<name> by rename.
    On any error (or Ctrl-C) the staging directory is removed and the old
    artifact is left exactly as it was. keep_existing copies the current
    artifact in first, for updating one part of it. Call it holding lock()."""
    final = layout.artifact_dir(kind, name)
    tmp = new_tmp(layout, f"{kind}-{name}")
    trash: Optional[Path] = None
    try:
        if keep_existing and final.is_dir():
            hashes = hashes_of(layout)
            shutil.copytree(final, tmp, dirs_exist_ok=True, copy_function=lambda a, b: _link_or_copy(a, b, hashes))
        yield tmp
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            # Set aside, not deleted, until the new one is in: a kill between the two
            # renames leaves it in .tmp under a name that says so, and whoever takes
            # this artifact's lock next puts it back (_finish_replace).
            trash = layout.tmp_dir / tmp_name(f"{TRASH}{kind}-{name}")
            os.rename(final, trash)
        os.rename(tmp, final)
    except BaseException:
        if trash is not None and trash.exists() and not final.exists():
            os.rename(trash, final)  # interrupted between the renames: the old one goes back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    if keep_existing:
        # Removing the old names changed the kept files' ctime again (not their content).
        hashes_of(layout).relinked(p for p in final.rglob("*") if p.is_file())


def _link_or_copy(src: str, dst: str, hashes: Optional["HashCache"] = None) -> None:
    # Hard links make keeping an artifact's big unchanged files free; every
    # writer replaces files (write temp, rename) and never edits one in place.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
        return
    if hashes is not None:
        hashes.linked(Path(src), Path(dst))


@dataclass(frozen=True)
class Outcome:
    manifest: Manifest
    directory: Path
    built: bool  # False: it was up to date and nothing ran


@dataclass(frozen=True)
class Target:
    """What a step makes: one part of the artifact <kind>/<name>. An artifact of
    several parts (env: m5 and gem5) has each brought up to date on its own,
    under its own build lock, so building one never waits for another."""

    kind: Kind
    name: str
    part: str
    what: str  # for messages: "image 'default'"
    shared: bool = False  # the artifact has other parts, kept as they are


# Extra reasons a part is stale that its manifest cannot see (an env image gone from the engine).
Check = Callable[[Manifest], Optional[str]]


def build_unless_fresh(layout: Layout, target: Target, want: Mapping[str, Any], force: bool,
                       build: Callable[[Path, Manifest], None], check: Optional[Check] = None) -> Outcome:
    """The one way an artifact is made: under its lock, a no-op when its manifest
    says `want` is what the part was made from (and its outputs are there);
    otherwise build(staging_dir, new_manifest) fills a staging directory, the
    manifest is written last, and the whole is renamed into place."""
    directory = layout.artifact_dir(target.kind, target.name)
    lock_name = f"{target.name}.{target.part}" if target.shared else target.name
    # A dry run reads only: it neither waits for a lock nor takes one.
    with contextlib.nullcontext() if layout.dry_run else lock(layout, target.kind, lock_name):
        manifest = Manifest.read(directory)
        why = "asked for (--force)" if force else _staleness(layout, target, manifest, want, check)
        if manifest and why is None:
            if not target.shared:
                log.info(f"{target.what} is up to date ({directory})")
            return Outcome(manifest, directory, built=False)
        twin = None if force else _twin(layout, target, want)
        if twin is not None:
            layout.would_build(target.what, f"the same as {target.kind}/{twin[0].name}: its files would be linked, nothing built")
            log.info(f"{target.what}: made from the same inputs as {target.kind}/{twin[0].name}; its files linked, nothing rebuilt")
            build = _linker(layout, target, *twin)
        else:
            layout.would_build(target.what, why or "")
        if target.shared:
            return _build_part(layout, target, build)
        manifest = Manifest(target.kind, target.name)
        with staged(layout, target.kind, target.name) as tmp:
            build(tmp, manifest)
            write_manifest(tmp, manifest)
        hashes_of(layout).moved(tmp, directory)
        return Outcome(manifest, directory, built=True)


def _twin(layout: Layout, target: Target, want: Mapping[str, Any]) -> Optional[tuple[Path, dict[str, Any]]]:
    """Another artifact of the same kind whose part was made from exactly these
    inputs and is intact: what this one would be, so its files can be linked
    (a kernel or a base image under a second name is not built twice)."""
    if target.kind == "runs":
        return None  # a run's id holds its inputs' digest: a twin would be itself
    digest = digest_of(want)
    kind_dir = layout.work_dir / target.kind
    for other in sorted(kind_dir.iterdir()) if kind_dir.is_dir() else []:
        if other.name == target.name or not (other / MANIFEST).is_file():
            continue
        manifest = Manifest.read(other)
        rec = manifest.parts.get(target.part) if manifest else None
        if manifest and rec and rec.get("inputs_digest") == digest and \
                manifest.staleness(target.part, want, other, hashes_of(layout)) is None:
            return other, rec
    return None


def _linker(layout: Layout, target: Target, twin: Path, rec: dict[str, Any]) -> Callable[[Path, Manifest], None]:
    """A build that hard-links the twin's files (all of them; of a shared artifact,
    the part's outputs) and records its part as it is."""
    def link(tmp: Path, manifest: Manifest) -> None:
        names = [str(p.relative_to(twin)) for p in twin.rglob("*") if p.is_file() and p.name != MANIFEST] \
            if not target.shared else [n for n in rec["outputs"] if (twin / n).is_file()]
        hashes = hashes_of(layout)
        for name in names:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(str(twin / name), str(tmp / name), hashes)
        manifest.parts[target.part] = {**rec, "info": {**rec.get("info", {}), "linked_from": str(twin)}}

    return link


def _staleness(layout: Layout, target: Target, manifest: Optional[Manifest], want: Mapping[str, Any],
               check: Optional[Check]) -> Optional[str]:
    if manifest is None:
        return "not built yet"
    directory = layout.artifact_dir(target.kind, target.name)
    why = manifest.staleness(target.part, want, directory, hashes_of(layout))
    return why if why is not None or check is None else check(manifest)


def _build_part(layout: Layout, target: Target, build: Callable[[Path, Manifest], None]) -> Outcome:
    """One part of a shared artifact: built in a work directory of its own (it may
    take hours), then committed under the artifact's lock, its other parts kept."""
    work = new_tmp(layout, f"{target.kind}-{target.name}-{target.part}")
    try:
        built = Manifest(target.kind, target.name)
        build(work, built)
        with lock(layout, target.kind, target.name), staged(layout, target.kind, target.name, keep_existing=True) as tmp:
            manifest = Manifest.read(layout.artifact_dir(target.kind, target.name)) or Manifest(target.kind, target.name)
            for produced in work.iterdir():
                os.replace(produced, tmp / produced.name)
            manifest.parts[target.part] = built.parts[target.part]
            write_manifest(tmp, manifest)
        hashes_of(layout).moved(tmp, layout.artifact_dir(target.kind, target.name))
        return Outcome(manifest, layout.artifact_dir(target.kind, target.name), built=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def keep_failed(layout: Layout, kind: Kind, name: str, tmp: Path) -> Path:
    """Logs of a run that failed, kept out of the artifact tree (which holds only
    complete artifacts) in <work>/failed/<kind>-<name>/, replacing older ones."""
    dest = layout.work_dir / "failed" / f"{kind}-{name}"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for p in tmp.iterdir():
        if p.is_file() and p.stat().st_size < (256 << 20):  # logs and results, not memory images
            shutil.copy2(p, dest / p.name)
    return dest


TRASH = "old-"  # label prefix of an artifact staged() set aside: old-<kind>-<name>


def tmp_owner(entry_name: str, host: str) -> Optional[tuple[str, int]]:
    """(label, pid) of a .tmp entry that `host` made (named by tmp_name), else None.
    The host is matched whole: host names and labels may both hold dots."""
    parts = entry_name.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[0].endswith(f".{host}"):
        return None
    label = parts[0][: -len(host) - 1]
    return (label, int(parts[1])) if label else None


def abandoned_tmp(layout: Layout) -> list[Path]:
    """.tmp entries left by runs of this host that are no longer alive (another
    host's cannot be judged from here, and are left alone)."""
    if not layout.tmp_dir.is_dir():
        return []
    host = socket.gethostname()
    out = []
    for p in sorted(layout.tmp_dir.iterdir()):
        owner = tmp_owner(p.name, host)
        if owner is not None and not pid_alive(owner[1]):
            out.append(p)
    return out


def trash_of(entry_name: str) -> Optional[tuple[Kind, str]]:
    """(kind, name) of the artifact a set-aside entry holds, None for other entries."""
    owner = tmp_owner(entry_name, socket.gethostname())
    if owner is None or not owner[0].startswith(TRASH):
        return None
    kind, _, name = owner[0][len(TRASH):].partition("-")
    for k in KINDS:
        if k == kind and name:
            return k, name
    return None


def _finish_replace(layout: Layout, kind: Kind, name: str) -> None:
    """Under the artifact's lock: finish a replace whose run died between its two
    renames. The set-aside old artifact goes back when nothing took its place;
    when the new one is in, it is only garbage."""
    final = layout.artifact_dir(kind, name)
    for p in abandoned_tmp(layout):
        if trash_of(p.name) != (kind, name):
            continue
        if final.exists():
            log.action(f"rm -rf {p}  # {kind}/{name} was replaced by a run that is gone")
            shutil.rmtree(p, ignore_errors=True)
        else:
            log.action(f"mv {p} {final}  # put back: the run replacing it died before the new one was in")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(p, final)
