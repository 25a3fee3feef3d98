"""What the user sees: each engine action, each step with its time, streamed
output with its phase, and progress: a bar (rich, imported only when one is
shown) on a terminal, plain lines otherwise (CI logs, pipes, files), so a log
reads the same everywhere it is kept."""
from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Iterator, Optional, TextIO

_out: TextIO = sys.stdout
_live: Any = None  # the rich Progress on screen, if any: lines go above it


def _print(msg: str) -> None:
    if _live is not None:
        _live.console.print(msg, markup=False, highlight=False, soft_wrap=True)
    else:
        print(msg, file=_out, flush=True)


def info(msg: str) -> None:
    _print(msg)


def action(msg: str) -> None:
    """An engine action, shown like the command it stands for."""
    _print(f"+ {msg}")


def warn(msg: str) -> None:
    print(f"hackback: warning: {msg}", file=sys.stderr, flush=True)


def stream(phase: str, line: str) -> None:
    _print(f"[{phase}] {line.rstrip()}")


def bars_wanted() -> bool:
    """Bars on a terminal; plain lines under CI, with HACKBACK_PLAIN=1, or when output is not a terminal."""
    if os.environ.get("CI") or os.environ.get("HACKBACK_PLAIN") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return _out.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """One task's progress: update(done, note). On a terminal a bar (a
    fraction of total when the total is known); elsewhere nothing here, the
    callers' plain lines say it."""

    def __init__(self, bar: Any = None, task: Any = None) -> None:
        self._bar, self._task = bar, task

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def update(self, done: float, note: str = "", total: Optional[float] = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, note=note[:60], **({"total": total} if total else {}))


@contextlib.contextmanager
def progress(what: str, total: Optional[float] = None, unit: str = "") -> Iterator[Progress]:
    global _live
    if _live is not None or not bars_wanted():  # one bar at a time: inner progress is plain lines
        yield Progress()
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress as Bars, TextColumn, TimeElapsedColumn

    amount = "{task.completed:.3g}" + ("/{task.total:.3g}" if total else "") + f" {unit}"
    bars = Bars(TextColumn("{task.description}"), BarColumn(), TextColumn(amount),
                TimeElapsedColumn(), TextColumn("{task.fields[note]}"), console=Console(file=_out), transient=False)
    task = bars.add_task(what, total=total, note="")
    with bars:
        _live = bars
        try:
            yield Progress(bars, task)
        finally:
            _live = None


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
