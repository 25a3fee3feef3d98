"""Artifacts on disk: layout, manifests, cached hashing, staged writes, locks.

Layout under the work directory:
    env/<name>/  images/<name>/  kernels/<name>/  checkpoints/<name>/  runs/<run-id>/
    benchmarks/<suite>-<member>-<input>-<threads>t/  profiles/<checkpoint>-b<interval>/  samplings/<checkpoint>/
    estimates/<sampling>-<board>/
        each with a manifest.json
    cache/   build trees and downloads that outlive artifacts (gem5 scons tree, kernel tree)
    .tmp/    staging directories, renamed into place when complete; an artifact a
             replace sets aside (old-<kind>-<name>.*) until the new one is in
    .locks/  one lock file per artifact
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import random
import shutil
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Any, Callable, Iterator, Literal, Mapping, Optional

from . import log
from .errors import ArtifactError, ConfigError, DiskSpaceError, LockBusy
from .ownership import pid_alive

SCHEMA_VERSION = 1
Kind = Literal["env", "images", "kernels", "checkpoints", "runs", "exports", "benchmarks", "profiles", "samplings", "estimates"]
KINDS: tuple[Kind, ...] = ("env", "images", "kernels", "checkpoints", "runs", "exports", "benchmarks", "profiles", "samplings",
                           "estimates")
MANIFEST = "manifest.json"
_CHUNK = 4 << 20


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


# ---------------------------------------------------------------- hashing


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


class HashCache:
    """sha256 of files, remembered by (path, size, mtime_ns, inode, ctime_ns) so
    a multi-GB disk image is read once, not at every check. SQLite because
    parallel restores share it."""

    def __init__(self, db_path: Path, read_only: bool = False) -> None:
        self.reads = 0  # files actually read; benchmarks and tests look at this
        if read_only:  # a dry run: what is known is used, nothing is written to the work dir
            self._db = self._snapshot(db_path)
            return
        make_dir(db_path.parent, "work directory")
        try:
            self._db = self._open(db_path)
        except sqlite3.OperationalError as e:
            raise self._unusable(db_path, e) from None
        except sqlite3.DatabaseError as e:
            # Not a database, or a malformed one. It is only a cache: set it aside
            # (kept, in case someone wants to look) and start again.
            aside = db_path.with_name(f"{db_path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):  # a parallel run may have moved it already
                    os.rename(f"{db_path}{suffix}", f"{aside}{suffix}")
            log.warn(f"{db_path} was not a usable hash database ({e}): moved aside to {aside.name}; "
                     "starting a fresh one (big files are hashed once more)")
            try:
                self._db = self._open(db_path)
            except sqlite3.DatabaseError as again:
                raise self._unusable(db_path, again) from None
        self.reads = 0  # files actually read; benchmarks and tests look at this

    @classmethod
    def _snapshot(cls, db_path: Path) -> sqlite3.Connection:
        """An in-memory copy of the database (empty when there is none): reads see the
        digests known, writes stay in memory."""
        mem = sqlite3.connect(":memory:", isolation_level=None)
        if db_path.is_file():
            try:
                disk = sqlite3.connect(f"file:{db_path}?mode=ro&immutable=1", uri=True)
                disk.backup(mem)
                disk.close()
            except sqlite3.DatabaseError:
                pass  # unreadable: a dry run starts from nothing known
        mem.execute("CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INT, mtime INT, ino INT, ctime INT, sha256 TEXT)")
        return mem

    @staticmethod
    def _open(db_path: Path) -> sqlite3.Connection:
        # Switching a new database to WAL takes an exclusive lock, and SQLite can
        # answer "database is locked" at once, without waiting out its busy
        # timeout, when processes open it together: try again for a while.
        deadline = time.monotonic() + 60
        while True:
            try:
                return HashCache._open_once(db_path)
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05 + random.random() * 0.2)

    @staticmethod
    def _open_once(db_path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(db_path), timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # the first statement that reads the file
            db.execute(
                "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INT, mtime INT, ino INT, ctime INT, sha256 TEXT)"
            )
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _unusable(db_path: Path, e: sqlite3.DatabaseError) -> Exception:
        """The one-line error for a hash database SQLite cannot open or write."""
        if db_path.is_dir():
            return ArtifactError(f"{db_path} is a directory, where hackback keeps its hash database",
                                 f"move it aside (mv {db_path} {db_path}.bak) and run again")
        # SQLITE_CANTOPEN / SQLITE_READONLY: the directory (or the file) cannot be written.
        if "unable to open" in str(e) or "readonly" in str(e) or not os.access(db_path.parent, os.W_OK):
            return ConfigError(f"the work directory {db_path.parent} is not writable (hash database: {e})",
                               "make it writable, or point work_dir (HACKBACK_WORK_DIR, --work-dir) at one you can write")
        return ArtifactError(f"cannot use the hash database {db_path}: {e}",
                             f"if no other hackback is running, move it aside (mv {db_path} {db_path}.bak) and run again")

    def sha256(self, path: Path) -> str:
        path = Path(path).resolve()
        st = path.stat()
        key = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
        row = self._db.execute("SELECT size, mtime, ino, ctime, sha256 FROM hashes WHERE path = ?", (str(path),)).fetchone()
        if row is not None and tuple(row[:4]) == key:
            return str(row[4])
        digest = sha256_file(path)
        self.reads += 1
        self._db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?)", (str(path), *key, digest))
        return digest

    def linked(self, src: Path, dst: Path) -> None:
        """After os.link(src, dst): the content is what was hashed (same size, mtime
        and inode), but the link changed the inode's ctime. Keep the digest, for
        every name of that inode and for the new one, under the new ctime, so that
        linking (twins, a part updated beside the others) never forces a rehash."""
        st = Path(dst).stat()
        row = self._db.execute("SELECT sha256 FROM hashes WHERE ino = ? AND size = ? AND mtime = ? LIMIT 1",
                               (st.st_ino, st.st_size, st.st_mtime_ns)).fetchone()
        if row is None:
            return
        self._db.execute("UPDATE hashes SET ctime = ? WHERE ino = ? AND size = ? AND mtime = ?",
                         (st.st_ctime_ns, st.st_ino, st.st_size, st.st_mtime_ns))
        self._db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?)",
                         (str(Path(dst).resolve()), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, str(row[0])))

    def relinked(self, paths: Iterable[Path]) -> None:
        """The files' inodes lost or gained a name (ctime changed, content did not):
        digests known for them (same inode, size, mtime) follow the new ctime."""
        for path in paths:
            st = path.stat()
            self._db.execute("UPDATE hashes SET ctime = ? WHERE ino = ? AND size = ? AND mtime = ?",
                             (st.st_ctime_ns, st.st_ino, st.st_size, st.st_mtime_ns))

    def moved(self, old: Path, new: Path) -> None:
        """Files hashed under `old` now live under `new` (a staging directory renamed
        into place; their stat identity is unchanged): keep their digests, so the
        first no-op after a build does not read a 4 GiB image again."""
        old_s, new_s = str(Path(old).resolve()) + "/", str(Path(new).resolve()) + "/"
        self._db.execute("DELETE FROM hashes WHERE substr(path, 1, ?) = ?", (len(new_s), new_s))
        self._db.execute("UPDATE hashes SET path = ? || substr(path, ?) WHERE substr(path, 1, ?) = ?",
                         (new_s, len(old_s) + 1, len(old_s), old_s))

    @staticmethod
    def sha256_uncached(path: Path) -> str:
        """For small files shipped with hackback: read every time, no cache."""
        return sha256_file(path)

    def tree_sha256(self, root: Path, skip: Callable[[Path], bool] = lambda p: False) -> str:
        """One digest for a directory tree: relative paths, modes and file digests.
        A tree whose every file has the size, mtime, ctime and inode it had last
        time (one stat per file, no per-file lookup) gets the digest it had then:
        a no-op rerun must not pay ~1 s for a 12,000-file gem5 tree."""
        root = Path(root)
        self._db.execute("CREATE TABLE IF NOT EXISTS trees (root TEXT PRIMARY KEY, fingerprint TEXT, sha256 TEXT)")
        fingerprint = _tree_fingerprint(root, skip)
        row = self._db.execute("SELECT fingerprint, sha256 FROM trees WHERE root = ?", (str(root),)).fetchone()
        if row and row[0] == fingerprint:
            return str(row[1])
        digest = self._tree_sha256(root, skip)
        self._db.execute("INSERT OR REPLACE INTO trees VALUES (?, ?, ?)", (str(root), fingerprint, digest))
        return digest

    def _tree_sha256(self, root: Path, skip: Callable[[Path], bool]) -> str:
        h = hashlib.sha256()
        # IMMEDIATE: take the write lock up front, waiting for it (timeout above).
        # A deferred transaction that reads and then writes gets SQLITE_BUSY at
        # once when another process wrote in between, and fails the task.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for dirpath, dirnames, filenames in os.walk(root):
                here = Path(dirpath)
                dirnames[:] = sorted(d for d in dirnames if not skip(here / d))
                for fn in sorted(filenames):
                    p = here / fn
                    if skip(p):
                        continue
                    rel = p.relative_to(root).as_posix()
                    if p.is_symlink():
                        h.update(f"L {rel} {os.readlink(p)}\n".encode())
                    elif p.is_file():
                        mode = "x" if os.access(p, os.X_OK) else "f"
                        h.update(f"{mode} {rel} {self.sha256(p)}\n".encode())
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return h.hexdigest()


def _tree_fingerprint(root: Path, skip: Callable[[Path], bool]) -> str:
    """Every entry's relative path, type and stat identity (size, mtime, ctime,
    inode, mode): changes whenever a file's content can have changed."""
    h = hashlib.sha256()
    pending = [root]
    while pending:
        here = pending.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError as e:
            h.update(f"E {here} {e.errno}\n".encode())
            continue
        for entry in entries:
            path = Path(entry.path)
            if skip(path):
                continue
            st = entry.stat(follow_symlinks=False)
            h.update(f"{entry.path}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
            if entry.is_dir(follow_symlinks=False):
                pending.append(path)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_of(value: Any) -> str:
    """Stable digest of JSON-able data (dict key order does not matter)."""
    return sha256_bytes(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode())


# ---------------------------------------------------------------- manifests


@dataclass
class Manifest:
    """What an artifact was made from (inputs, whose digest decides staleness),
    what it is (outputs with sha256), and facts worth keeping (info).
    `parts` lets one artifact be brought up to date piece by piece (env: m5, gem5)."""

    kind: str
    name: str
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def part(self, part: str) -> Optional[dict[str, Any]]:
        return self.parts.get(part)

    def has(self, part: str) -> bool:
        return part in self.parts

    # The typed reads of a part: steps use these (and records' Record.of for its
    # info), never walk the part's dict themselves.

    def info(self, part: str) -> Optional[Mapping[str, Any]]:
        """The part's info, for a record to read (records.Record.of); None without the part."""
        p = self.parts.get(part)
        return p.get("info", {}) if p is not None else None

    def inputs_of(self, part: str) -> Mapping[str, Any]:
        """The inputs the part was made from ({} without the part)."""
        return dict(self.parts.get(part, {}).get("inputs", {}))

    def outputs_of(self, part: str) -> Mapping[str, Any]:
        """The part's outputs, name -> record ({} without the part)."""
        return dict(self.parts.get(part, {}).get("outputs", {}))

    def inputs_digest(self, part: str) -> str:
        return str(self.parts[part]["inputs_digest"])

    def output_sha256(self, part: str, name: str) -> Optional[str]:
        out = self.parts.get(part, {}).get("outputs", {}).get(name)
        return str(out["sha256"]) if isinstance(out, Mapping) and "sha256" in out else None

    def identity(self, part: str) -> str:
        """What the part is, whole: its inputs' digest and its outputs (what a dependant keys on)."""
        p = self.parts[part]
        return digest_of({"inputs": p["inputs_digest"], "outputs": p["outputs"]})

    def put_part(self, part: str, record: dict[str, Any]) -> None:
        """A whole part record as part_record() made it."""
        self.parts[part] = record

    def set_part(self, part: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any], info: Mapping[str, Any]) -> None:
        self.parts[part] = part_record(inputs, outputs, info)

    def is_fresh(self, part: str, inputs: Mapping[str, Any], directory: Path, hashes: "HashCache") -> bool:
        """Same inputs as recorded, and every recorded output file still there with
        its sha256: a file changed in place at the same size is seen. The hash cache
        (size, mtime, inode) means an unchanged file is not read again."""
        return self.staleness(part, inputs, directory, hashes) is None

    def staleness(self, part: str, inputs: Mapping[str, Any], directory: Path, hashes: "HashCache") -> Optional[str]:
        """Why `part` would be built again, in words (None: it is up to date)."""
        rec = self.parts.get(part)
        if rec is None:
            return "not built yet"
        if rec.get("inputs_digest") != digest_of(inputs):
            old = rec.get("inputs", {})
            changed = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
            return f"its inputs changed ({', '.join(changed) or 'their form'})"
        for rel, out in rec.get("outputs", {}).items():
            if isinstance(out, dict) and "size" in out:
                p = directory / rel
                if not p.is_file() or p.stat().st_size != out["size"]:
                    return f"its output {rel} is missing or has another size"
                if "sha256" in out and hashes.sha256(p) != out["sha256"]:
                    return f"its output {rel} was changed"
        return None

    def to_json(self) -> str:
        return json.dumps({"schema": self.schema, "kind": self.kind, "name": self.name, "parts": self.parts}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, directory: Path) -> Optional["Manifest"]:
        path = directory / MANIFEST
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            # `clean` leaves a directory whose manifest it cannot read: it may not be ours.
            raise ArtifactError(f"{path} is unreadable ({e})", f"delete {directory} yourself and rebuild") from None
        if not isinstance(raw, dict):
            raise ArtifactError(f"{path} is not a hackback manifest (JSON {type(raw).__name__}, not an object)",
                                f"delete {directory} yourself and rebuild")
        if raw.get("schema") != SCHEMA_VERSION:
            raise ArtifactError(
                f"{path} has manifest schema {raw.get('schema')}, this hackback writes {SCHEMA_VERSION}",
                "rebuild it with --force",
            )
        problem = cls._shape_problem(raw)
        if problem:
            raise ArtifactError(f"{path} is not a hackback manifest: {problem}", f"delete {directory} yourself and rebuild")
        return cls(kind=raw["kind"], name=raw["name"], parts=raw.get("parts", {}), schema=raw["schema"])

    @staticmethod
    def _shape_problem(raw: dict[str, Any]) -> str:
        """What is missing or of the wrong type in well-formed JSON, "" when it has a manifest's shape
        (every reader indexes parts[...]["inputs"/"outputs"/"info"] without looking first)."""
        for key in ("kind", "name"):
            if not isinstance(raw.get(key), str):
                return f"'{key}' is {raw.get(key)!r}, not a string"
        parts = raw.get("parts", {})
        if not isinstance(parts, dict):
            return f"'parts' is a {type(parts).__name__}, not an object"
        for part, rec in parts.items():
            if not isinstance(rec, dict):
                return f"part '{part}' is a {type(rec).__name__}, not an object"
            for key in ("inputs", "outputs", "info"):
                if not isinstance(rec.get(key), dict):
                    return f"part '{part}' has no '{key}' object"
            if not isinstance(rec.get("inputs_digest"), str):
                return f"part '{part}' has no 'inputs_digest'"
        return ""


def part_record(inputs: Mapping[str, Any], outputs: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "inputs": dict(inputs),
        "inputs_digest": digest_of(inputs),
        "outputs": dict(outputs),
        "info": dict(info),
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "built_on": socket.gethostname(),
    }


def file_record(path: Path, hashes: HashCache) -> dict[str, Any]:
    return {"sha256": hashes.sha256(path), "size": path.stat().st_size}


# ---------------------------------------------------------------- locks and staged writes


def hashes_of(layout: Layout) -> HashCache:
    """The work dir's hash cache, read-only in a dry run (which writes nothing there)."""
    return HashCache(layout.hash_db, read_only=layout.dry_run)


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


class WouldBuild(Exception):
    """Raised instead of building while a dry run (--dry-run) is on: what would be
    built and why. Not an error: the pipeline turns it into a line of the plan."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")
        self.what, self.why = what, why


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


def write_atomically(path: Path, text: str) -> None:
    """path holds text whole or not at all (a reader never sees half of it): written beside it, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_manifest(directory: Path, manifest: Manifest) -> None:
    write_atomically(directory / MANIFEST, manifest.to_json())


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


# ---------------------------------------------------------------- disk space


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
