#!/usr/bin/env python3
"""No-op reruns: how long a task takes when everything is up to date, and what
the hash cache saves on the gem5 source tree.

    python3 benchmarks/noop.py --gem5-src PATH [--gem5-binary BIN] [--work-dir DIR] [--repeat 5]

Every task must have run once in that work directory (`invoke restore --script
examples/hello.rcS --gem5-src PATH [--gem5-binary BIN]`).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import report, timed

from hackback.services import gem5src
from hackback import pipeline
from hackback.store.hashes import HashCache

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gem5-src", required=True)
    ap.add_argument("--work-dir", default=os.environ.get("HACKBACK_WORK_DIR", str(REPO / "build")))
    ap.add_argument("--gem5-binary", default="")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    src = Path(args.gem5_src)
    from hackback.base import config
    from hackback.store.layout import Layout

    cfg = config.load(flags={"work_dir": args.work_dir, "gem5.src": str(src)}, environ={})
    tree = gem5src.resolve(cfg.gem5, Layout(cfg.work_dir), HashCache(Layout(cfg.work_dir).hash_db)).path  # a tarball's extraction

    with tempfile.TemporaryDirectory() as tmp:
        cold = timed(lambda: gem5src.describe(tree, "bench", HashCache(Path(tmp) / "h.sqlite")))
        warm_cache = HashCache(Path(tmp) / "h.sqlite")
        warm = [timed(lambda: gem5src.describe(tree, "bench", warm_cache)) for _ in range(args.repeat)]
    report("gem5 tree identity, cold hash cache", [cold])
    report("gem5 tree identity, warm hash cache", warm)
    print(f"{'':<48} ratio cold/warm {cold / sorted(warm)[len(warm) // 2]:.1f}x")

    env = {k: v for k, v in os.environ.items() if not k.startswith("HACKBACK_")}
    env.update(HACKBACK_WORK_DIR=args.work_dir, HACKBACK_GEM5_SRC=str(src), HACKBACK_GEM5_BINARY=args.gem5_binary)
    for task in pipeline.STEPS:
        if task == "m5":
            continue  # part of env
        extra = {"restore": ["--script", str(REPO / "examples" / "hello.rcS")]}
        cmd = [sys.executable, "-m", "invoke", task, *extra.get(task, [])]
        samples = [timed(lambda: subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)) for _ in range(args.repeat)]
        report(f"invoke {task} (no-op rerun, whole process)", samples)


if __name__ == "__main__":
    main()
