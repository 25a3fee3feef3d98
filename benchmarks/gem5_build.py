#!/usr/bin/env python3
"""gem5-side build times: the m5 utility, a one-file incremental gem5 rebuild,
and (with --cold) a cold gem5 build in a fresh work directory.

    python3 benchmarks/gem5_build.py --gem5-src PATH [--work-dir DIR] [--repeat 3] [--cold]

The incremental figure appends a function to one .cc of the tree (default
src/cpu/simple/atomic.cc), rebuilds, then restores the file and rebuilds again;
both rebuilds are reported. The env must already be built in --work-dir.
A cold build takes hours on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from _common import report, timed

from hackback.protocol.context import StepContext
from hackback.base import config
from hackback.steps import env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gem5-src", required=True)
    ap.add_argument("--work-dir", default=os.environ.get("HACKBACK_WORK_DIR", "build"))
    ap.add_argument("--file", default="src/cpu/simple/atomic.cc")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cold", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = config.load(flags={"work_dir": tmp, "gem5.src": args.gem5_src})
        env.ensure_m5(StepContext.open(cfg))  # the tools image, so m5 figures do not include it
        report("m5 utility build", [timed(lambda: env.ensure_m5(StepContext.open(cfg), force=True)) for _ in range(args.repeat)])
        if args.cold:
            report("gem5 cold build (+ env image)", [timed(lambda: env.ensure(StepContext.open(cfg)))])

    cfg = config.load(flags={"work_dir": args.work_dir, "gem5.src": args.gem5_src})
    report("env no-op (library call)", [timed(lambda: env.ensure(StepContext.open(cfg))) for _ in range(args.repeat)])
    target = Path(args.gem5_src) / args.file
    original = target.read_bytes()
    edit, revert = [], []
    try:
        for i in range(args.repeat):
            # A new external function, not a comment: ccache drops comments and scons
            # would then see an identical object and skip the link.
            target.write_bytes(original + f'\nextern "C" int hackback_benchmark_edit_{i}() {{ return {i}; }}\n'.encode())
            edit.append(timed(lambda: env.ensure(StepContext.open(cfg))))
            target.write_bytes(original)
            revert.append(timed(lambda: env.ensure(StepContext.open(cfg))))
    finally:
        target.write_bytes(original)
    report(f"one-file rebuild ({args.file} edited)", edit)
    report(f"one-file rebuild ({args.file} restored)", revert)


if __name__ == "__main__":
    main()
