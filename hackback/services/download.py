"""Downloads that survive a dropped connection and prove what they fetched:
resumed with HTTP Range into a .part file, checked against a sha256 before
they are renamed into place, with progress. (For the kernel step's kernel.org
tarball or prebuilt vmlinux; requests does the HTTP.)"""
from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Callable, Optional

import requests

from ..base import log
from ..store.hashes import sha256_file
from ..store.layout import make_dir, require_free
from ..base.errors import DiskSpaceError, DownloadError

CHUNK = 1 << 20


def fetch(
    url: str,
    dest: Path,
    sha256: str,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
    timeout: float = 30.0,
    attempts: int = 3,
) -> Path:
    """Fetch url to dest unless dest already has the expected sha256."""
    sha256 = sha256.lower()
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise DownloadError(f"sha256 {sha256!r} for {url} is not a sha256 hex digest", "give the 64 hex digits the publisher lists")
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    make_dir(dest.parent, "downloads")
    part = dest.with_name(dest.name + ".part")
    show = progress or _printer(url)
    last_error = ""
    for _attempt in range(attempts):
        try:
            _get(url, part, timeout, show)
            break
        except requests.RequestException as e:
            last_error = str(e).splitlines()[0] if str(e) else type(e).__name__
            time.sleep(1)
        except OSError as e:
            raise _write_failed(e, url, part) from None
    else:
        raise DownloadError(f"could not download {url}: {last_error}", "check the URL and the network; a rerun resumes")
    got = sha256_file(part)
    if got != sha256:
        part.unlink()
        raise DownloadError(f"{url} has sha256 {got}, expected {sha256}", "the file changed upstream or the digest in the config is wrong")
    os.replace(part, dest)
    return dest


def _get(url: str, part: Path, timeout: float, show: Callable[[int, Optional[int]], None]) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
        if r.status_code == 416:  # asked past the end: what we have is the whole file
            return
        if r.status_code == 200 and have:
            have = 0  # the server ignored Range: start over
        elif r.status_code not in (200, 206):
            raise DownloadError(f"{url} answered HTTP {r.status_code}", "check the URL")
        total = _total(r, have)
        if total is not None:  # refused up front rather than failing when the disk fills
            require_free(part.parent, total - have + (64 << 20), f"downloading {url.rsplit('/', 1)[-1]}")
        with open(part, "ab" if have else "wb") as f:
            done = have
            for chunk in r.iter_content(CHUNK):
                f.write(chunk)
                done += len(chunk)
                show(done, total)
        if total is not None and done < total:
            raise requests.ConnectionError(f"connection closed at {done} of {total} bytes")


def _write_failed(e: OSError, url: str, part: Path) -> Exception:
    """A write of the download failed: a full disk gives one line, and no partial file to resume into."""
    part.unlink(missing_ok=True)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskSpaceError(f"the disk under {part.parent} filled up while downloading {url}",
                              "free some space there, or point work_dir (HACKBACK_WORK_DIR) at a larger disk; "
                              "the partial download was removed")
    return DownloadError(f"cannot write {part} while downloading {url}: {e.strerror or e}", "check that directory")


def _total(r: requests.Response, have: int) -> Optional[int]:
    if r.status_code == 206 and "/" in r.headers.get("Content-Range", ""):
        size = r.headers["Content-Range"].rsplit("/", 1)[1]
        return int(size) if size.isdigit() else None
    length = r.headers.get("Content-Length")
    return int(length) + (have if r.status_code == 206 else 0) if length and length.isdigit() else None


def _printer(url: str) -> Callable[[int, Optional[int]], None]:
    state = {"next": 0.0}

    def show(done: int, total: Optional[int]) -> None:
        now = time.monotonic()
        if now < state["next"] and done != total:
            return
        state["next"] = now + 2
        of = f" of {total / 2**20:.1f} MiB ({100 * done // total}%)" if total else ""
        log.info(f"  {url.rsplit('/', 1)[-1]}: {done / 2**20:.1f} MiB{of}")

    return show
