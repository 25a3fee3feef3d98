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

from hackback import download
from hackback.download import DownloadError

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
