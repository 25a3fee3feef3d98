"""Content hashes: sha256 of files and trees, cached by (path, size, mtime) in the work dir."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from ..base import log
from ..base.errors import ArtifactError, ConfigError
from .layout import Layout, make_dir

_CHUNK = 4 << 20


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

    def known(self, path: Path, digest: str) -> None:
        """path's digest, computed while it was written (a 2 GiB sparse memory file
        need not be read again to be recorded)."""
        path = Path(path).resolve()
        st = path.stat()
        self._db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?)",
                         (str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, digest))

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


def file_record(path: Path, hashes: HashCache) -> dict[str, Any]:
    return {"sha256": hashes.sha256(path), "size": path.stat().st_size}


def hashes_of(layout: Layout) -> HashCache:
    """The work dir's hash cache, read-only in a dry run (which writes nothing there)."""
    return HashCache(layout.hash_db, read_only=layout.dry_run)
