from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from hackback import artifacts
from hackback.artifacts import HashCache, Layout, Manifest, lock, staged, write_manifest
from hackback.errors import ArtifactError, DiskSpaceError, LockBusy


def test_manifest_round_trip_and_freshness(tmp_path: Path) -> None:
    d = tmp_path / "a"
    d.mkdir()
    hashes = HashCache(tmp_path / "hashes.db")
    (d / "out.bin").write_bytes(b"x" * 10)
    m = Manifest("images", "default")
    m.set_part("image", {"template": "abc", "m5": "123"}, {"out.bin": artifacts.file_record(d / "out.bin", hashes)}, {"note": 1})
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
    m.set_part("image", {}, {"disk.img": artifacts.file_record(disk, hashes)}, {})
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
    assert first == artifacts.sha256_file(f)
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
    mine = artifacts.new_tmp(layout, "images-x")
    proc = multiprocessing.get_context("fork").Process(target=artifacts.new_tmp, args=(layout, "images-y"))
    proc.start()
    proc.join()
    found = artifacts.abandoned_tmp(layout)
    assert mine not in found
    assert [p.name.split(".")[0] for p in found] == ["images-y"]


def test_require_free_names_the_shortfall(tmp_path: Path) -> None:
    artifacts.require_free(tmp_path, 1, "a tiny step")
    with pytest.raises(DiskSpaceError, match="needs about .* GiB free") as e:
        artifacts.require_free(tmp_path / "not" / "yet", 1 << 60, "a huge step")
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
