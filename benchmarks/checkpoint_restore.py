#!/usr/bin/env python3
"""gem5 figures for the hack-back flow, on an env/image/kernel already built in --work-dir:

  boot -> checkpoint: wall and simulated time, fast boot and (with --full) full boot
  restore overhead: a script that exits at once (atomic), wall and simulated time
  -j scaling: 4 such scripts one at a time vs 4 at once (--jobs)

    python3 benchmarks/checkpoint_restore.py --gem5-src PATH --work-dir DIR [--full] [--repeat 3] [--jobs 4]

Boots write checkpoints under names bench-fast / bench-full in --work-dir;
restores write runs there too (each a fresh run: --force).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from _common import report

from hackback import checkpoint, config, env, image, kernel, restore
from hackback.artifacts import Layout
from hackback.engine import Engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gem5-src", required=True)
    ap.add_argument("--work-dir", default=os.environ.get("HACKBACK_WORK_DIR", "build"))
    ap.add_argument("--boot", action="append", choices=("fast", "full"), default=[],
                    help="boot to a checkpoint named bench-<boot> (repeatable)")
    ap.add_argument("--restores", action="store_true", help="measure restore overhead and -j scaling")
    ap.add_argument("--from", dest="source", default="default", help="checkpoint name the restores use (default: default)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=4)
    args = ap.parse_args()
    engine = Engine.connect()
    base = config.load(flags={"work_dir": args.work_dir, "gem5.src": args.gem5_src})
    e = env.ensure(base, engine=engine)
    layout = Layout(base.work_dir)
    img = image.load(layout.artifact_dir("images", base.name))
    k = kernel.ensure(base, engine=engine)

    for boot in args.boot:
        cfg = config.load(flags={"work_dir": args.work_dir, "gem5.src": args.gem5_src, "checkpoint.boot": boot})
        cfg = dataclasses.replace(cfg, name=f"bench-{boot}")
        start = time.monotonic()
        cpt = checkpoint.ensure(cfg, e, img, k, force=True, engine=engine)
        report(f"boot -> checkpoint, {boot} boot: wall (whole step)", [time.monotonic() - start])
        report(f"boot -> checkpoint, {boot} boot: simulated", [cpt.info["sim_seconds"]])
    if not args.restores:
        return

    cpt = checkpoint.load(layout.artifact_dir("checkpoints", args.source))
    cfg = dataclasses.replace(base, name=args.source)
    report(f"checkpoint '{args.source}' ({cpt.info['boot']} boot) as recorded: host", [cpt.info["host_seconds"]])
    report(f"checkpoint '{args.source}' as recorded: simulated", [cpt.info["sim_seconds"]])
    with tempfile.TemporaryDirectory() as tmp:
        scripts = []
        for i in range(max(args.jobs, 1)):
            s = Path(tmp) / f"exit-at-once-{i}.rcS"
            s.write_text(f"#!/bin/sh\n# benchmark script {i}: does nothing\nexit 0\n")
            scripts.append(s)
        walls, sims = [], []
        for _ in range(args.repeat):
            start = time.monotonic()
            r = restore.restore(cfg, e, cpt, scripts[:1], force=True, engine=engine)[0]
            walls.append(time.monotonic() - start)
            sims.append(r.sim_seconds)
        report("restore overhead (script exits at once): wall", walls)
        report("restore overhead: simulated", sims)

        one = dataclasses.replace(cfg, restore=dataclasses.replace(cfg.restore, jobs=1))
        many = dataclasses.replace(cfg, restore=dataclasses.replace(cfg.restore, jobs=args.jobs))
        start = time.monotonic()
        restore.restore(one, e, cpt, scripts, force=True, engine=engine)
        serial = time.monotonic() - start
        start = time.monotonic()
        restore.restore(many, e, cpt, scripts, force=True, engine=engine)
        parallel = time.monotonic() - start
        report(f"{len(scripts)} restores one at a time", [serial])
        report(f"{len(scripts)} restores, -j {args.jobs}", [parallel])
        print(f"-j {args.jobs} speed-up: {serial / parallel:.2f}x on {os.cpu_count()} host cores")


if __name__ == "__main__":
    main()
