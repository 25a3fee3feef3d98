"""Tarballs handed to hackback (a gem5 source, a benchmark suite): extracted
with the 'data' filter, so a damaged, truncated or unsafe one is one line."""
from __future__ import annotations

import errno
import lzma
import os
import tarfile
import zlib
from pathlib import Path

from .errors import DiskSpaceError, UsageError

# The 'data' extraction filter's refusals (Pythons before 3.9.17/3.10.12/3.11.4 have none).
_FILTER_ERRORS: tuple[type[Exception], ...] = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()


def extract(tarball: Path, dest: Path, what: str, safe_hint: str) -> None:
    """Extract `tarball` into `dest`; `what` names it in messages (--gem5-src, suite.npb.source)."""
    try:
        with tarfile.open(tarball) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, filter="data")
            else:  # pragma: no cover - Pythons without extraction filters
                _refuse_unsafe(tf, dest, tarball, what, safe_hint)
                tf.extractall(dest)
    except _FILTER_ERRORS as e:  # a member outside the tree, an absolute link, a device file
        raise UsageError(f"{what} {tarball} is unsafe to extract: {e}", safe_hint) from None
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise UsageError(f"{what} {tarball} is damaged or truncated ({e or type(e).__name__})",
                         "download it again, or give an unpacked tree") from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskSpaceError(f"no space left under {dest.parent} while extracting {tarball}",
                                 "free some space, or point work_dir (HACKBACK_WORK_DIR) at a larger disk") from None
        raise UsageError(f"cannot extract {what} {tarball}: {e.strerror or e}", "give a readable tarball or tree") from None


def _refuse_unsafe(tf: tarfile.TarFile, dest: Path, tarball: Path, what: str, hint: str) -> None:  # pragma: no cover - old Pythons only
    root = os.path.realpath(dest)
    for m in tf.getmembers():
        where = os.path.realpath(os.path.join(root, m.name))
        base = os.path.dirname(where) if m.issym() else root  # a hard link's name is from the archive's root
        link = os.path.realpath(os.path.join(base, m.linkname)) if m.issym() or m.islnk() else root
        if os.path.commonpath([root, where]) != root or os.path.commonpath([root, link]) != root or m.isdev():
            raise UsageError(f"{what} {tarball} is unsafe to extract: {m.name!r} points outside the tree or is a device", hint)
