"""Progress: a bar on a (pseudo-)terminal, plain lines elsewhere and under CI."""
from __future__ import annotations

import io
import os
import pty
import select
from typing import Iterator

import pytest

from hackback.base import log


def _drain(fd: int) -> str:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out.decode("utf-8", "replace")


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, io.TextIOWrapper]]:
    master, slave = pty.openpty()
    out = os.fdopen(slave, "w", encoding="utf-8")
    monkeypatch.setattr(log, "_out", out)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("HACKBACK_PLAIN", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    yield master, out
    out.close()
    os.close(master)


def test_a_terminal_gets_a_bar_and_lines_above_it(terminal: tuple[int, io.TextIOWrapper]) -> None:
    master, _out = terminal
    with log.progress("gem5:boot", 0.5, "simulated s") as bar:
        assert bar.shown
        for i in range(1, 6):
            bar.update(i / 10, f"console line {i}")
        log.info("a line while the bar is up")
    text = _drain(master)
    assert "gem5:boot" in text and "━" in text and "/0.5 simulated s" in text, text[-500:]
    assert "a line while the bar is up" in text


def test_under_ci_a_terminal_gets_plain_lines(terminal: tuple[int, io.TextIOWrapper], monkeypatch: pytest.MonkeyPatch) -> None:
    master, _out = terminal
    monkeypatch.setenv("CI", "true")
    with log.progress("gem5:boot", 0.5, "simulated s") as bar:
        assert not bar.shown
        bar.update(0.3, "ignored: the caller prints its own line")
        log.info("a plain line")
    text = _drain(master)
    assert "━" not in text and "a plain line" in text


def test_a_pipe_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(log, "_out", buf)
    monkeypatch.delenv("CI", raising=False)
    with log.progress("restores", 3, "runs") as bar:
        assert not bar.shown
        log.info("done 1")
    assert buf.getvalue() == "done 1\n"
