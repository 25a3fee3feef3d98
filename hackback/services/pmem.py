"""gem5's checkpointed memory, unpacked for restores that happen many times.

gem5 writes a checkpoint's memory (`*.pmem`) gzip-compressed, and a restore
inflates all of it: for a 2 GiB board that is several host seconds each time,
most of a short sample run's cost. gem5 reads the file through zlib's gzread,
which reads a file without a gzip header as it is, so the same memory stored
uncompressed restores with no inflating. Stored sparse (the zero pages as holes)
it takes about what the guest really uses on disk. A filesystem that keeps no
holes would take the whole memory size per checkpoint: then the file stays
compressed."""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
_ZERO = bytes(CHUNK)
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Unpacked:
    path: Path
    size: int  # bytes of memory
    on_disk: int  # bytes the filesystem allocated for it
    sha256: str  # of the memory as it now is on disk (read back, it is these bytes)
    sparse: bool  # False: the filesystem kept no holes, and the file was left compressed


def is_compressed(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == GZIP_MAGIC


def unpack(path: Path) -> Unpacked:
    """Replace the gzip-compressed memory file at path by its contents, stored sparse;
    left as it was where the filesystem keeps no holes. Written beside it and renamed
    over it, so an interruption leaves the compressed file whole."""
    tmp = path.with_name(f".{path.name}.unpacking")
    digest = hashlib.sha256()
    size = 0
    try:
        with gzip.open(path, "rb") as src, tmp.open("wb") as out:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                if chunk == _ZERO if len(chunk) == CHUNK else chunk.count(0) == len(chunk):
                    out.seek(len(chunk), os.SEEK_CUR)  # a hole: zeros read back, nothing allocated
                else:
                    out.write(chunk)
                size += len(chunk)
            out.truncate(size)  # a trailing hole still counts in the file's size
        on_disk = tmp.stat().st_blocks * 512
        if on_disk > size // 2:  # no holes kept (or a guest that fills its memory): not worth the disk
            return Unpacked(path, size, on_disk, "", False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return Unpacked(path, size, on_disk, digest.hexdigest(), True)
