"""A checkpoint's memory unpacked for fast restores (hackback.services.pmem): the
same bytes, stored sparse; left compressed where unpacking would not pay. That
gem5 restores the unpacked file is the gem5 tier's (IS's samples measure exactly
their intervals from unpacked sample checkpoints)."""
from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

from hackback.services import pmem

MiB = 1 << 20


def _memory(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "board.physmem.store0.pmem"
    with gzip.open(path, "wb") as f:
        f.write(content)
    return path


def test_a_mostly_empty_memory_is_stored_as_its_bytes_with_holes_for_its_zero_pages(tmp_path: Path) -> None:
    content = bytearray(64 * MiB)
    content[3 * MiB:3 * MiB + 4096] = os.urandom(4096)  # a page in use
    content[-10:] = b"last bytes"  # and the very end: the size is whole
    path = _memory(tmp_path, bytes(content))
    assert pmem.is_compressed(path)
    u = pmem.unpack(path)
    assert u.sparse and not pmem.is_compressed(path) and path.read_bytes() == content
    assert u.size == len(content) and u.sha256 == hashlib.sha256(content).hexdigest()
    assert u.on_disk == path.stat().st_blocks * 512 <= 4 * MiB  # two touched megabytes, not 64
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no staging file left


def test_a_memory_with_no_zero_pages_stays_compressed(tmp_path: Path) -> None:
    content = os.urandom(4 * MiB)
    path = _memory(tmp_path, content)
    before = path.read_bytes()
    u = pmem.unpack(path)
    assert not u.sparse and path.read_bytes() == before and pmem.is_compressed(path)
    assert u.on_disk >= 2 * MiB and [p.name for p in tmp_path.iterdir()] == [path.name]
