#!/usr/bin/env python3
"""gem5 figures for the hack-back flow, on an env/image/kernel already built in --work-dir:

  restore overhead: a script that exits at once (atomic): wall time, median of --repeat,
                    with where it goes (container and gem5 start-up, instantiate incl.
                    the checkpoint load, simulating the guest's part)
  per GiB:          the same on checkpoints of other memory sizes (--memory 1GiB ...),
                    booted once each as bench-mem-<size>
  -j scaling:       4 such scripts one at a time vs 4 at once (--jobs)
  full boot:        --full boots systemd to a checkpoint named bench-full

    python3 benchmarks/checkpoint_restore.py --gem5-src SRC [--gem5-binary BIN] --work-dir DIR
        [--repeat 5] [--jobs 4] [--memory 1GiB --memory 512MiB] [--full]

Restores write runs in --work-dir (each a fresh run: --force).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import report

from hackback import checkpoint, config, env, image, kernel, restore
from hackback.artifacts import Layout, Manifest
from hackback.engine import Engine


def overhead(cfg: Any, e: Any, cpt: Any, script: Path, repeat: int, engine: Engine, label: str) -> float:
    walls, phases = [], []
    for _ in range(repeat):
        start = time.monotonic()
        r = restore.restore(cfg, e, cpt, [script], force=True, engine=engine)[0]
        walls.append(time.monotonic() - start)
        info = Manifest.read(r.directory).parts["run"]["info"]  # type: ignore[union-attr]
        phases.append({**info.get("phases", {}), "container": info.get("container_wall_seconds") or 0.0})
    report(f"restore overhead, {label}: wall", walls)
    med = {k: statistics.median(p.get(k, 0.0) for p in phases) for k in ("container", "instantiate_seconds", "simulate_seconds")}
    rest = statistics.median(walls) - med["container"]
    print(f"{'':<48} of which: hackback's own checks {rest:.2f} s, docker run/rm + gem5 start-up and board "
          f"{med['container'] - med['instantiate_seconds'] - med['simulate_seconds']:.2f} s, instantiate (checkpoint load) "
          f"{med['instantiate_seconds']:.2f} s, simulate the guest's part {med['simulate_seconds']:.2f} s", flush=True)
    return statistics.median(walls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gem5-src", required=True)
    ap.add_argument("--gem5-binary", default="")
    ap.add_argument("--work-dir", default=os.environ.get("HACKBACK_WORK_DIR", "build"))
    ap.add_argument("--from", dest="source", default="default", help="checkpoint name the restores use (default: default)")
    ap.add_argument("--memory", action="append", default=[], help="also measure on a checkpoint of this memory size")
    ap.add_argument("--full", action="store_true", help="boot systemd (full boot) to a checkpoint, timed")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=4)
    args = ap.parse_args()
    engine = Engine.connect()
    flags = {"work_dir": args.work_dir, "gem5.src": args.gem5_src, "gem5.binary": args.gem5_binary}
    base = config.load(flags=flags, environ={})
    e = env.ensure(base, engine=engine)
    layout = Layout(base.work_dir)
    img = image.load(layout.artifact_dir("images", base.name))
    k = kernel.ensure(base, engine=engine)
    if args.full:
        cfg = dataclasses.replace(config.load(flags={**flags, "checkpoint.boot": "full"}, environ={}), name="bench-full")
        start = time.monotonic()
        cpt = checkpoint.ensure(cfg, e, img, k, force=True, engine=engine)
        report("boot -> checkpoint, full boot: wall (whole step)", [time.monotonic() - start])
        report("boot -> checkpoint, full boot: simulated", [cpt.info["sim_seconds"]])

    with tempfile.TemporaryDirectory() as tmp:
        scripts = []
        for i in range(max(args.jobs, 1)):
            s = Path(tmp) / f"exit-at-once-{i}.rcS"
            s.write_text(f"#!/bin/sh\n# benchmark script {i}: does nothing\nexit 0\n")
            scripts.append(s)
        cpt = checkpoint.load(layout.artifact_dir("checkpoints", args.source))
        cfg = dataclasses.replace(base, name=args.source)
        by_memory = {cpt.info["board"]["memory"]: overhead(cfg, e, cpt, scripts[0], args.repeat, engine,
                                                             f"'{args.source}' ({cpt.info['board']['memory']})")}
        for memory in args.memory:
            mcfg = dataclasses.replace(config.load(flags={**flags, "checkpoint.memory": memory}, environ={}),
                                       name=f"bench-mem-{memory}")
            mcpt = checkpoint.ensure(mcfg, e, img, k, engine=engine)
            by_memory[memory] = overhead(mcfg, e, mcpt, scripts[0], args.repeat, engine, f"bench-mem-{memory}")
        if len(by_memory) > 1:
            from hackback.config import memory_bytes

            pts = sorted((memory_bytes(m) or 0, w) for m, w in by_memory.items())
            (b0, w0), (b1, w1) = pts[0], pts[-1]
            print(f"restore overhead per GiB of guest memory: {(w1 - w0) / ((b1 - b0) / 2**30):.2f} s "
                  f"(from {len(pts)} sizes, medians)")

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
