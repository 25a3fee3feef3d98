"""Payloads: what can be carried (refused in one line otherwise), the stream's
layout, and results coming back. The guest side is in tests/test_rcs.py (the
helper, and the shell header older images run)."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from hackback.services import payload
from hackback.base.errors import ResultsLost, UsageError


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("a\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(1000))
    (root / "inner-link").symlink_to("sub/b.bin")  # stays inside: carried as a link
    return root


def test_a_payload_holds_every_file_and_inner_link(tmp_path: Path) -> None:
    p = payload.collect([_tree(tmp_path / "in")], 1 << 20)
    assert [name for name, _ in p.files] == ["a.txt", "inner-link", "sub/b.bin"]
    assert p.bytes == 2 + 1000  # a link is not its target again


def test_the_stream_is_header_script_index_then_each_file_where_the_index_says(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/bash\necho hi\n")
    stream = tmp_path / "stream"
    tree = _tree(tmp_path / "in")
    size = payload.write_stream(script, payload.collect([tree], 1 << 20), stream)
    data = stream.read_bytes()
    assert size == len(data)
    first, second = data.split(b"\n")[:2]
    assert first == b"#!/bin/sh" and second.startswith(b"# HACKBACK-PAYLOAD v1 ")
    fields = dict(kv.split(b"=") for kv in second.split()[3:])
    at, n = int(fields[b"script"]), int(fields[b"script_bytes"])
    assert data[at:at + n] == script.read_bytes()
    index_at, index_n = int(fields[b"index"]), int(fields[b"index_bytes"])
    entries = [line.split("\t") for line in data[index_at:index_at + index_n].decode().splitlines()]
    assert [e[4] for e in entries] == ["a.txt", "inner-link", "sub/b.bin"]
    for kind, mode, size_, offset, name, target in entries:
        if kind == "f":
            assert int(offset) % payload.ALIGN == 0 and int(mode, 8) == (tree / name).stat().st_mode & 0o7777
            assert data[int(offset):int(offset) + int(size_)] == (tree / name).read_bytes()
        else:
            assert kind == "l" and target == "sub/b.bin"


def test_a_name_the_index_cannot_hold_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "tab\there").write_text("x")
    with pytest.raises(UsageError, match="tab or a newline"):
        payload.collect([d], 1 << 20)


@pytest.mark.parametrize("make, says", [
    (lambda d: (d / "fifo").parent.mkdir(parents=True) or os.mkfifo(d / "fifo"), "special file"),
    (lambda d: d.mkdir(parents=True) or (d / "out").symlink_to("/etc/passwd"), "points out of"),
    (lambda d: d.mkdir(parents=True) or (d / "up").symlink_to("../elsewhere"), "points out of"),
    (lambda d: d.parent.mkdir(parents=True, exist_ok=True) or d.write_text("a file"), "is not a directory"),
    (lambda d: None, "is not a directory"),
])
def test_what_cannot_be_carried_is_refused_in_one_line(tmp_path: Path, make, says: str) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "payload"
    make(d)
    with pytest.raises(UsageError, match=says) as e:
        payload.collect([d], 1 << 20)
    assert "\n" not in e.value.one_line()


def test_a_payload_over_the_limit_and_a_name_in_two_dirs_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    (big / "f").write_bytes(b"x" * 2048)
    with pytest.raises(UsageError, match="over restore.payload_max_bytes"):
        payload.collect([big], 1024)
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "f").write_text("again")
    with pytest.raises(UsageError, match="in two payload directories"):
        payload.collect([big, twin], 1 << 20)


def test_a_stream_gem5_cannot_hand_over_is_refused_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payload, "MAX_STREAM", 8192)  # gem5's is 2 GiB (a 32-bit offset); the check is the same
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(UsageError, match="32-bit offset"):
        payload.write_stream(script, payload.collect([_tree(tmp_path / "in")], 1 << 20), tmp_path / "stream")
    assert not (tmp_path / "stream").exists()


def test_results_come_back_into_results_and_an_escaping_member_does_not(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    (src / "deep" / "r.txt").write_text("result\n")
    with tarfile.open(run / payload.RESULTS_TAR, "w") as tar:
        tar.add(src, arcname=".")
        evil = tarfile.TarInfo("../evil")
        evil.size = 0
        tar.addfile(evil)
    files = payload.unpack_results(run)
    assert not (tmp_path / "evil").exists() and not (run / "evil").exists()
    assert [str(f.relative_to(run)) for f in files] == ["results/deep/r.txt"]
    assert not (run / payload.RESULTS_TAR).exists()


def _results_tar(run: Path) -> int:
    src = run.parent / "src"
    src.mkdir()
    (src / "r.txt").write_text("result\n")
    with tarfile.open(run / payload.RESULTS_TAR, "w") as tar:
        tar.add(src, arcname=".")
    return (run / payload.RESULTS_TAR).stat().st_size


@pytest.mark.parametrize("console,keep_tar,says", [
    ("HACKBACK-SCRIPT-EXIT 0\nHACKBACK-RESULTS failed bytes=0\n", True, "could not send"),
    ("HACKBACK-SCRIPT-EXIT 0\nHACKBACK-RESULTS sent bytes=10240\n", False, "no hackback-results.tar arrived"),
    ("HACKBACK-SCRIPT-EXIT 0\nHACKBACK-RESULTS sent bytes=99\n", True, "sent 99 bytes of results"),
])
def test_results_the_guest_sent_that_did_not_all_arrive_are_a_failure(tmp_path: Path, console: str, keep_tar: bool,
                                                                       says: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _results_tar(run)
    if not keep_tar:
        (run / payload.RESULTS_TAR).unlink()
    with pytest.raises(ResultsLost, match=says):
        payload.unpack_results(run, console)


def test_results_that_arrived_whole_and_runs_that_sent_none_are_fine(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    size = _results_tar(run)
    files = payload.unpack_results(run, f"HACKBACK-RESULTS sent bytes={size}\n")
    assert [f.name for f in files] == ["r.txt"]
    # Ended by design before the guest sends anything (an instruction count, workend): no line, no results.
    assert not (run / payload.RESULTS_TAR).exists()
    assert payload.unpack_results(run, "HACKBACK-RESTORED reading the script\n") == []


def test_a_name_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / os.fsdecode(b"caf\xe9.txt")).write_text("latin-1 name")
    with pytest.raises(UsageError, match="is not valid UTF-8") as e:
        payload.collect([d], 1 << 20)
    assert "caf\\xe9.txt" in e.value.one_line() and "\n" not in e.value.one_line()


@pytest.mark.parametrize("clash", ["file", "symlink"])
def test_names_the_guest_would_merge_are_refused_before_the_restore(tmp_path: Path, clash: str) -> None:
    """One payload directory has `data` as a file (or a link), another has data/n.txt:
    the guest cannot unpack both, so the host refuses before anything runs."""
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "elsewhere").mkdir(parents=True)
    (b / "data").mkdir(parents=True)
    (b / "data" / "n.txt").write_text("42\n")
    if clash == "file":
        (a / "data").write_text("a file\n")
    else:
        (a / "data").symlink_to("elsewhere")
    with pytest.raises(UsageError, match=f"is a {clash} in the guest's /root/payload/data") as e:
        payload.collect([a, b], 1 << 20)
    assert "\n" not in e.value.one_line()
    assert [n for n, _ in payload.collect([b], 1 << 20).files] == ["data/n.txt"]  # each alone is fine

