"""Shared bits for the benchmark scripts: timing, medians, one table of figures."""
from __future__ import annotations

import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# A benchmark stopped with SIGTERM unwinds like Ctrl-C, so hackback removes
# the containers it started (as the tasks themselves do).
def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _interrupt)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def report(name: str, samples: list[float], unit: str = "s") -> None:
    med = statistics.median(samples)
    spread = f" (min {min(samples):.2f}, max {max(samples):.2f})" if len(samples) > 1 else ""
    print(f"{name:<48} median {med:9.2f} {unit} over {len(samples)} run(s){spread}", flush=True)
