"""The resumable, checksummed download, against a local HTTP server the test
starts (with Range support, and able to drop a connection half-way)."""
from __future__ import annotations

import hashlib
import http.server
import os
import threading
from pathlib import Path
from typing import Iterator

import pytest

from hackback.services import download
from hackback.services.download import DownloadError
from hackback.base.errors import DiskSpaceError

PAYLOAD = os.urandom(3 * download.CHUNK + 12345)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    drops_left = 0  # how many more responses to cut short
    ranges_seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/file":
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        Handler.ranges_seen.append(rng or "")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if Handler.drops_left:
            Handler.drops_left -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Handler.drops_left, Handler.ranges_seen = 0, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_checks_and_renames_into_place(server: str, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    dest = download.fetch(f"{server}/file", tmp_path / "vmlinux", SHA, progress=lambda d, t: seen.append((d, t)))
    assert dest.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert not (tmp_path / "vmlinux.part").exists()


def test_a_dropped_connection_resumes_with_range(server: str, tmp_path: Path) -> None:
    Handler.drops_left = 1
    dest = download.fetch(f"{server}/file", tmp_path / "f", SHA, progress=lambda d, t: None)
    assert dest.read_bytes() == PAYLOAD
    assert Handler.ranges_seen[0] == "" and Handler.ranges_seen[1].startswith("bytes=")


def test_a_partial_file_from_an_earlier_run_is_resumed(server: str, tmp_path: Path) -> None:
    (tmp_path / "f.part").write_bytes(PAYLOAD[:1000])
    download.fetch(f"{server}/file", tmp_path / "f", SHA, progress=lambda d, t: None)
    assert Handler.ranges_seen == ["bytes=1000-"]
    assert (tmp_path / "f").read_bytes() == PAYLOAD


def test_bad_checksum_is_refused_and_nothing_is_left(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="expected") as e:
        download.fetch(f"{server}/file", tmp_path / "f", "0" * 64, progress=lambda d, t: None)
    assert "\n" not in e.value.one_line()
    assert list(tmp_path.iterdir()) == []


def test_already_present_is_not_fetched_again(server: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(PAYLOAD)
    download.fetch(f"{server}/file", tmp_path / "f", SHA)
    assert Handler.ranges_seen == []


@pytest.mark.parametrize("url, sha, match", [("/missing", SHA, "HTTP 404"), ("/file", "abc", "not a sha256")])
def test_bad_url_or_digest_is_one_line(server: str, tmp_path: Path, url: str, sha: str, match: str) -> None:
    with pytest.raises(DownloadError, match=match):
        download.fetch(f"{server}{url}", tmp_path / "f", sha, progress=lambda d, t: None)


class TestDiskFull:
    """Our own orchestration on a full disk: the write call is made to fail with
    ENOSPC (no tmpfs, no mounts), as the kernel would on a full disk."""

    def test_enospc_mid_download_is_one_line_and_leaves_no_partial_file(
            self, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import builtins
        import errno

        real_open = builtins.open

        class FullDisk:
            def __init__(self, f: object) -> None:
                self.f, self.written = f, 0

            def __enter__(self) -> "FullDisk":
                return self

            def __exit__(self, *exc: object) -> None:
                self.f.close()  # type: ignore[attr-defined]

            def write(self, data: bytes) -> int:
                if self.written:  # the first chunk fits, the second does not
                    raise OSError(errno.ENOSPC, "No space left on device")
                self.written += len(data)
                return self.f.write(data)  # type: ignore[attr-defined, no-any-return]

        def fake_open(path: object, mode: str = "r", *a: object, **kw: object) -> object:
            f = real_open(path, mode, *a, **kw)  # type: ignore[call-overload]
            return FullDisk(f) if str(path).endswith(".part") and "b" in mode and ("w" in mode or "a" in mode) else f

        monkeypatch.setattr(download, "open", fake_open, raising=False)
        with pytest.raises(DiskSpaceError) as e:
            download.fetch(f"{server}/file", tmp_path / "dl" / "vmlinux", SHA, progress=lambda d, t: None)
        line = e.value.one_line()
        assert "\n" not in line and str(tmp_path / "dl") in line and "filled up" in line
        assert list((tmp_path / "dl").iterdir()) == []  # no .part to resume into, no file in place
        assert len(Handler.ranges_seen) == 1  # not retried: a full disk is not a network error

    def test_too_little_space_for_the_size_the_server_gives_is_refused_before_writing(
            self, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import shutil

        monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))  # type: ignore[attr-defined]
        with pytest.raises(DiskSpaceError, match="downloading file") as e:
            download.fetch(f"{server}/file", tmp_path / "vmlinux", SHA, progress=lambda d, t: None)
        assert "\n" not in e.value.one_line()
        assert list(tmp_path.iterdir()) == []
