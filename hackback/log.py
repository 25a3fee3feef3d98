"""What the user sees: each engine action, each step with its time, streamed output with its phase."""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator, TextIO

_out: TextIO = sys.stdout


def info(msg: str) -> None:
    print(msg, file=_out, flush=True)


def action(msg: str) -> None:
    """An engine action, shown like the command it stands for."""
    print(f"+ {msg}", file=_out, flush=True)


def warn(msg: str) -> None:
    print(f"hackback: warning: {msg}", file=sys.stderr, flush=True)


def stream(phase: str, line: str) -> None:
    print(f"[{phase}] {line.rstrip()}", file=_out, flush=True)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    start = time.monotonic()
    info(f"==> {name}")
    try:
        yield
    finally:
        info(f"<== {name} ({format_seconds(time.monotonic() - start)})")


def format_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"
