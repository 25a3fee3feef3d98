"""Shared bits for the benchmark scripts: timing, medians, one table of figures."""
from __future__ import annotations

import argparse
import os
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


def gem5_work_args(description: str, checkpoint_help: str) -> argparse.ArgumentParser:
    """The arguments every benchmark restoring from a built work dir takes: gem5 as a user hands it
    over, the work dir, and which checkpoint (--from)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--gem5-src", required=True)
    ap.add_argument("--gem5-binary", default="")
    ap.add_argument("--work-dir", default=os.environ.get("HACKBACK_WORK_DIR", "build"))
    ap.add_argument("--from", dest="source", default="default", help=checkpoint_help)
    return ap
