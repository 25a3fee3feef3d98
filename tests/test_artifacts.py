from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any, Callable
from pathlib import Path

import pytest

from hackback.store.build import Target, abandoned_tmp, build_unless_fresh, lock, new_tmp, staged
from hackback.store.hashes import HashCache, file_record, sha256_file
from hackback.store.layout import Layout, make_dir, require_free
from hackback.store.manifest import Manifest, write_manifest
from hackback.base.errors import ArtifactError, ConfigError, DiskSpaceError, LockBusy


def test_manifest_round_trip_and_freshness(tmp_path: Path) -> None:
    d = tmp_path / "a"
    d.mkdir()
    hashes = HashCache(tmp_path / "hashes.db")
    (d / "out.bin").write_bytes(b"x" * 10)
    m = Manifest("images", "default")
    m.set_part("image", {"template": "abc", "m5": "123"}, {"out.bin": file_record(d / "out.bin", hashes)}, {"note": 1})
    write_manifest(d, m)
    back = Manifest.read(d)
    assert back is not None and back.parts == m.parts
    assert back.is_fresh("image", {"m5": "123", "template": "abc"}, d, hashes)  # key order is irrelevant
    assert not back.is_fresh("image", {"template": "abd", "m5": "123"}, d, hashes)  # an input changed
    assert not back.is_fresh("other", {}, d, hashes)  # never built
    (d / "out.bin").write_bytes(b"x" * 11)
    assert not back.is_fresh("image", {"template": "abc", "m5": "123"}, d, hashes)  # output damaged


def test_freshness_sees_a_file_changed_in_place_at_the_same_size(tmp_path: Path) -> None:
    d = tmp_path / "a"
    d.mkdir()
    hashes = HashCache(tmp_path / "hashes.db")
    disk = d / "disk.img"
    disk.write_bytes(b"\0" * 4096)
    m = Manifest("images", "default")
    m.set_part("image", {}, {"disk.img": file_record(disk, hashes)}, {})
    assert m.is_fresh("image", {}, d, hashes)
    with open(disk, "r+b") as f:  # one byte, in place: same size, same inode
        f.seek(1000)
        f.write(b"\1")
    assert disk.stat().st_size == 4096
    assert not m.is_fresh("image", {}, d, hashes)


def test_manifest_of_another_schema_is_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"schema": 99, "kind": "env", "name": "x", "parts": {}}')
    with pytest.raises(ArtifactError, match="schema 99"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable"):
        Manifest.read(tmp_path)
    assert Manifest.read(tmp_path / "missing") is None


def test_hash_cache_reads_a_file_once_until_it_changes(tmp_path: Path) -> None:
    f = tmp_path / "disk.img"
    f.write_bytes(os.urandom(1 << 20))
    cache = HashCache(tmp_path / "h.sqlite")
    first = cache.sha256(f)
    assert first == sha256_file(f)
    assert cache.sha256(f) == first and cache.reads == 1
    again = HashCache(tmp_path / "h.sqlite")  # remembered across processes
    assert again.sha256(f) == first and again.reads == 0
    with open(f, "r+b") as fh:
        fh.write(b"changed")
    assert again.sha256(f) != first and again.reads == 1


def test_tree_digest_sees_content_mode_and_skips(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / "sub").mkdir(parents=True)
    (root / "a.cc").write_text("int a;")
    (root / "sub" / "b.py").write_text("x = 1")
    (root / "build").mkdir()
    (root / "build" / "junk.o").write_text("obj")
    cache = HashCache(tmp_path / "h.sqlite")
    skip = lambda p: p.name == "build"  # noqa: E731
    d1 = cache.tree_sha256(root, skip)
    (root / "build" / "junk.o").write_text("other")
    assert cache.tree_sha256(root, skip) == d1
    (root / "a.cc").write_text("int b;")
    d2 = cache.tree_sha256(root, skip)
    assert d2 != d1
    (root / "a.cc").chmod(0o755)
    assert cache.tree_sha256(root, skip) != d2


def test_staged_success_replaces_and_failure_keeps_the_old(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    with staged(layout, "kernels", "k") as t:
        (t / "vmlinux").write_text("v1")
    final = layout.artifact_dir("kernels", "k")
    assert (final / "vmlinux").read_text() == "v1"
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with staged(layout, "kernels", "k") as t:
                (t / "vmlinux").write_text("half")
                raise exc
        assert (final / "vmlinux").read_text() == "v1"
    assert list(layout.tmp_dir.iterdir()) == []  # no staging left behind


def test_staged_keep_existing_updates_one_part(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    with staged(layout, "env", "e") as t:
        (t / "m5").write_text("m5")
    with staged(layout, "env", "e", keep_existing=True) as t:
        (t / "other").write_text("new")
    final = layout.artifact_dir("env", "e")
    assert sorted(p.name for p in final.iterdir()) == ["m5", "other"]


def _hold_lock(work: str, ready: "multiprocessing.synchronize.Event", release: "multiprocessing.synchronize.Event") -> None:
    with lock(Layout(Path(work)), "images", "x"):
        ready.set()
        release.wait(10)


def test_lock_excludes_a_second_writer(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockBusy, match=f"pid {holder.pid}"):
            with lock(Layout(tmp_path), "images", "x", wait=False):
                pass
        with lock(Layout(tmp_path), "images", "other", wait=False):
            pass  # other artifacts are not blocked
    finally:
        release.set()
        holder.join(10)
    start = time.monotonic()
    with lock(Layout(tmp_path), "images", "x", wait=False):
        assert time.monotonic() - start < 1


def test_abandoned_staging_is_found_only_for_dead_runs(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    mine = new_tmp(layout, "images-x")
    proc = multiprocessing.get_context("fork").Process(target=new_tmp, args=(layout, "images-y"))
    proc.start()
    proc.join()
    found = abandoned_tmp(layout)
    assert mine not in found
    assert [p.name.split(".")[0] for p in found] == ["images-y"]


def test_require_free_names_the_shortfall(tmp_path: Path) -> None:
    require_free(tmp_path, 1, "a tiny step")
    with pytest.raises(DiskSpaceError, match="needs about .* GiB free") as e:
        require_free(tmp_path / "not" / "yet", 1 << 60, "a huge step")
    assert "work_dir" in e.value.hint


def _hash_tree(db: str, root: str, rounds: int, out: "multiprocessing.queues.Queue[str]") -> None:
    cache = HashCache(Path(db))
    for i in range(rounds):
        (Path(root) / f"own-{os.getpid()}-{i}").write_text(str(i))  # new files: every round writes
        out.put(cache.tree_sha256(Path(root)))


def test_processes_hashing_at_once_share_the_cache_without_failing(tmp_path: Path) -> None:
    """Two tasks at once (or restores in parallel) hash into the same SQLite cache."""
    root = tmp_path / "tree"
    root.mkdir()
    for i in range(200):
        (root / f"f{i}").write_text("x" * i)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_hash_tree, args=(str(tmp_path / "h.sqlite"), str(root), 20, out)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert sum(1 for _ in range(60) if out.get(timeout=5)) == 60


# ---------------------------------------------------------------- bad state in the work dir (issue 10)


def _without_write_access(action: Callable[[Path], object]) -> str:
    """Run action(dir) on a directory this process cannot write, and return what it
    raised as 'Type|one line' ('ok' if nothing). Root writes anywhere, so as root the
    action runs in a child process that has become `nobody`."""
    import shutil
    import tempfile

    from hackback.base.errors import HackbackError

    base = Path(tempfile.mkdtemp(prefix="hackback-ro-"))
    base.chmod(0o755)  # `nobody` must be able to reach it
    ro = base / "work"
    ro.mkdir()
    (ro / "sub").mkdir()
    ro.chmod(0o555)

    def run() -> str:
        try:
            action(ro)
            return "ok"
        except HackbackError as e:
            return f"{type(e).__name__}|{e.one_line()}"
        except BaseException as e:  # noqa: BLE001 - the point is to see a raw one
            return f"RAW|{type(e).__name__}: {e}"

    try:
        if os.geteuid() != 0:
            return run()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.setgid(65534)
                os.setuid(65534)
                os.write(w, run().encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            out = f.read()
        os.waitpid(pid, 0)
        return out
    finally:
        ro.chmod(0o755)
        shutil.rmtree(base)


class TestReadOnlyWorkDir:
    def test_the_hash_database_names_the_directory(self) -> None:
        got = _without_write_access(lambda ro: HashCache(ro / ".hashes.sqlite"))
        kind, _, line = got.partition("|")
        assert kind == "ConfigError" and "is not writable" in line and "work_dir" in line, got
        assert "\n" not in line

    def test_a_directory_that_cannot_be_created(self) -> None:
        got = _without_write_access(lambda ro: HashCache(ro / "new" / ".hashes.sqlite"))
        assert got.startswith("ConfigError|") and "/work/new" in got and "permission denied" in got, got

    def test_the_locks_folder(self) -> None:
        def take(ro: Path) -> None:
            with lock(Layout(ro), "kernels", "k"):
                pass

        got = _without_write_access(take)
        assert got.startswith("ConfigError|") and "/work/.locks" in got, got

    def test_make_dir_turns_permission_denied_into_one_line(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        def denied(self: Path, *a: object, **kw: object) -> None:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "mkdir", denied)
        with pytest.raises(ConfigError, match="permission denied") as e:
            make_dir(tmp_path / "w" / ".tmp", "staging")
        assert str(tmp_path / "w" / ".tmp") in e.value.one_line()


class TestCorruptHashDatabase:
    def test_a_file_that_is_not_a_database_is_set_aside_with_a_warning(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        db = tmp_path / ".hashes.sqlite"
        db.write_bytes(b"this is not SQLite" * 300)
        cache = HashCache(db)
        (tmp_path / "f").write_bytes(b"x")
        assert cache.sha256(tmp_path / "f") == sha256_file(tmp_path / "f")  # the fresh one works
        aside = [p for p in tmp_path.iterdir() if p.name.startswith(".hashes.sqlite.corrupt-")]
        assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not SQLite")  # kept, not deleted
        err = capsys.readouterr().err
        assert "warning" in err and "moved aside" in err and err.count("\n") == 1

    def test_a_damaged_sqlite_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        db = tmp_path / "h.sqlite"
        HashCache(db)._db.close()  # a real database file to damage
        data = bytearray(db.read_bytes())
        data[16:100] = b"\xff" * 84  # page size and header fields
        db.write_bytes(bytes(data))
        (tmp_path / "f").write_bytes(b"x")
        capsys.readouterr()
        cache = HashCache(db)  # set aside, started again: no raw sqlite3.DatabaseError
        assert cache.sha256(tmp_path / "f") == sha256_file(tmp_path / "f")
        aside = [p for p in tmp_path.iterdir() if p.name.startswith("h.sqlite.corrupt-") and not p.name.endswith(("-wal", "-shm"))]
        assert len(aside) == 1 and aside[0].read_bytes() == bytes(data)  # the damaged file, kept as it was
        err = capsys.readouterr().err
        assert "warning" in err and "moved aside" in err and err.count("\n") == 1

    def test_a_directory_where_the_database_should_be(self, tmp_path: Path) -> None:
        (tmp_path / "h.sqlite").mkdir()
        with pytest.raises(ArtifactError, match="is a directory") as e:
            HashCache(tmp_path / "h.sqlite")
        assert "mv " in e.value.one_line() and (tmp_path / "h.sqlite").is_dir()


class TestLocksFolderIsAFile:
    def test_one_line_naming_it_and_the_file_left_alone(self, tmp_path: Path) -> None:
        (tmp_path / ".locks").write_text("mine")
        with pytest.raises(ArtifactError) as e:
            with lock(Layout(tmp_path), "images", "default"):
                pass
        line = e.value.one_line()
        assert f"{tmp_path / '.locks'} is a file" in line and "mv " in line and "\n" not in line
        assert (tmp_path / ".locks").read_text() == "mine"
        assert sorted(p.name for p in tmp_path.iterdir()) == [".locks"]


class TestManifestShape:
    @pytest.mark.parametrize("text, says", [
        ("[]", "JSON list"),
        ('"manifest"', "JSON str"),
        ('{"schema": 1, "kind": 3, "name": "x", "parts": {}}', "'kind' is 3"),
        ('{"schema": 1, "kind": "env", "parts": {}}', "'name' is None"),
        ('{"schema": 1, "kind": "env", "name": "x", "parts": []}', "'parts' is a list"),
        ('{"schema": 1, "kind": "env", "name": "x", "parts": {"gem5": 7}}', "part 'gem5' is a int"),
        ('{"schema": 1, "kind": "env", "name": "x", "parts": {"gem5": {"inputs": {}, "outputs": {}, "inputs_digest": "d"}}}',
         "part 'gem5' has no 'info' object"),
        ('{"schema": 1, "kind": "env", "name": "x", "parts": {"gem5": {"inputs": {}, "outputs": [], "info": {}, "inputs_digest": "d"}}}',
         "part 'gem5' has no 'outputs' object"),
        ('{"schema": 1, "kind": "env", "name": "x", "parts": {"m5": {"inputs": {}, "outputs": {}, "info": {}}}}',
         "part 'm5' has no 'inputs_digest'"),
    ])
    def test_well_formed_json_of_the_wrong_shape_names_the_file(self, tmp_path: Path, text: str, says: str) -> None:
        (tmp_path / "manifest.json").write_text(text)
        with pytest.raises(ArtifactError) as e:
            Manifest.read(tmp_path)
        line = e.value.one_line()
        assert str(tmp_path / "manifest.json") in line and says in line and "\n" not in line


def test_tree_digest_is_remembered_until_any_file_changes(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.cc").write_text("int a;\n")
    (root / "SConstruct").write_text("# top\n")
    hashes = HashCache(tmp_path / "h.db")
    first = hashes.tree_sha256(root)
    assert hashes.tree_sha256(root) == first  # remembered
    (root / "src" / "a.cc").write_text("int b;\n")  # same size, new content
    second = hashes.tree_sha256(root)
    assert second != first
    (root / "src" / "new.cc").write_text("")
    assert hashes.tree_sha256(root) not in (first, second)
    (root / "src" / "new.cc").unlink()
    assert hashes.tree_sha256(root) == second  # back to the same content, same digest


def test_digests_follow_a_staged_artifact_into_place(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "work")
    target = Target("images", "default", "image", "image 'default'")
    out = build_unless_fresh(layout, target, {"a": 1}, False,
                                       lambda tmp, m: m.set_part("image", {"a": 1}, {"disk.img": file_record(
                                           _write(tmp / "disk.img", b"x" * 4096), HashCache(layout.hash_db))}, {}))
    hashes = HashCache(layout.hash_db)
    assert hashes.sha256(out.directory / "disk.img") and hashes.reads == 0  # known already: not read again
    again = build_unless_fresh(layout, target, {"a": 1}, False, lambda t, m: None)
    assert not again.built


def test_a_shared_artifact_builds_one_part_and_keeps_the_others(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "work")

    def part(name: str, data: bytes) -> Any:
        def build(tmp: Path, m: Manifest) -> None:
            m.set_part(name, {"v": data.decode()}, {name: file_record(_write(tmp / name, data), HashCache(layout.hash_db))}, {})
        return build

    m5 = Target("env", "default", "m5", "env 'default' m5", shared=True)
    gem5 = Target("env", "default", "gem5", "env 'default' gem5", shared=True)
    assert build_unless_fresh(layout, m5, {"v": "1"}, False, part("m5", b"1")).built
    assert build_unless_fresh(layout, gem5, {"v": "a"}, False, part("gem5", b"a")).built
    out = build_unless_fresh(layout, m5, {"v": "2"}, False, part("m5", b"2"))
    assert out.built and set(out.manifest.parts) == {"m5", "gem5"}
    assert (out.directory / "m5").read_bytes() == b"2" and (out.directory / "gem5").read_bytes() == b"a"
    hashes = HashCache(layout.hash_db)
    before = hashes.reads
    hashes.sha256(out.directory / "gem5")  # kept by a hard link into the new version: not read again
    assert hashes.reads == before
    assert not build_unless_fresh(layout, gem5, {"v": "a"}, False, part("gem5", b"a")).built
    gone = build_unless_fresh(layout, gem5, {"v": "a"}, False, part("gem5", b"a"), check=lambda m: "image gone")
    assert gone.built  # what the manifest cannot see is asked too


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_an_artifact_made_from_the_same_inputs_under_another_name_is_linked_not_built(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "work")
    calls: list[str] = []

    def build(tmp: Path, m: Manifest) -> None:
        calls.append(tmp.name)
        m.set_part("kernel", {"a": 1}, {"vmlinux": file_record(_write(tmp / "vmlinux", b"k" * 4096), HashCache(layout.hash_db))}, {})
        _write(tmp / "build.log", b"log")

    first = build_unless_fresh(layout, Target("kernels", "default", "kernel", "kernel"), {"a": 1}, False, build)
    second = build_unless_fresh(layout, Target("kernels", "other", "kernel", "kernel"), {"a": 1}, False, build)
    assert len(calls) == 1 and second.built  # made, by linking
    assert (second.directory / "vmlinux").stat().st_ino == (first.directory / "vmlinux").stat().st_ino
    hashes = HashCache(layout.hash_db)
    before = hashes.reads
    hashes.sha256(first.directory / "vmlinux"), hashes.sha256(second.directory / "vmlinux")
    assert hashes.reads == before  # the link changed the inode's ctime, not what the cache knows
    assert (second.directory / "build.log").is_file()
    assert second.manifest.parts["kernel"]["info"]["linked_from"] == str(first.directory)
    third = build_unless_fresh(layout, Target("kernels", "third", "kernel", "kernel"), {"a": 2}, False, build)
    assert len(calls) == 2 and third.built  # other inputs: built
    forced = build_unless_fresh(layout, Target("kernels", "other", "kernel", "kernel"), {"a": 1}, True, build)
    assert len(calls) == 3 and forced.built  # --force builds, never links
