#!/usr/bin/env python3
"""gem5 figures for the hack-back flow, on an env/image/kernel already built in --work-dir:

  restore overhead: a script that exits at once (atomic): wall time, median of --repeat,
                    with where it goes (container and gem5 start-up, instantiate incl.
                    the checkpoint load, simulating the guest's part)
  per GiB:          the same on checkpoints of other memory sizes (--memory 1GiB ...),
                    booted once each as bench-mem-<size>
  -j scaling:       4 such scripts one at a time vs 4 at once (--jobs)
  full boot:        --full boots systemd to a checkpoint named bench-full
  baseline:         --baseline CPT_DIR --baseline-disk DISK --baseline-kernel VMLINUX: the same
                    script restored, in the same run, from a checkpoint an older hackback took
                    (a copy of its checkpoint directory, the disk image and kernel it was taken
                    with), straight through gem5 with the current env: the side-by-side figure

    python3 benchmarks/checkpoint_restore.py --gem5-src SRC [--gem5-binary BIN] --work-dir DIR
        [--repeat 5] [--jobs 4] [--memory 1GiB --memory 512MiB] [--full] [--baseline ...]

Restores write runs in --work-dir (each a fresh run: --force).
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import gem5_work_args, report

from hackback.store.records import CheckpointArtifact, ImageArtifact
from hackback.protocol.context import StepContext
from hackback.steps import checkpoint, env, kernel, restore
from hackback.base import config
from hackback.services import gem5run
from hackback.store.layout import Layout
from hackback.store.manifest import Manifest
from hackback.base.engine import Engine


def overhead(cfg: Any, e: Any, cpt: Any, script: Path, repeat: int, engine: Engine, label: str) -> float:
    walls, phases = [], []
    for _ in range(repeat):
        start = time.monotonic()
        r = restore.restore(StepContext.open(cfg, engine), e, cpt, [script], force=True)[0]
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


def baseline(e: Any, cpt_dir: Path, disk: Path, vmlinux: Path, script: Path, repeat: int, engine: Engine) -> float:
    """Restore an older checkpoint as gem5run runs any restore (no identity checks: its
    manifest names paths that a newer build has replaced)."""
    info = Manifest.read(cpt_dir).parts["checkpoint"]["info"]  # type: ignore[union-attr]
    g = e.gem5()
    walls, phases = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(dir=e.directory.parent) as out:
            job = gem5run.Gem5Job(
                label="gem5:baseline", env_image=g["env_image"], binary=g["binary"], mode="restore", kernel=vmlinux,
                disk=disk, kernel_args=info["kernel_args"], out=Path(out), checkpoint=cpt_dir / info["cpt"], script=script,
                board=gem5run.Board(memory=info["board"]["memory"], cores=int(info["board"]["cores"]), cpu="atomic"))
            start = time.monotonic()
            result = gem5run.run(engine, job, show=lambda _l: None)
            walls.append(time.monotonic() - start)
            phases.append(result.get("phases", {}))
    report(f"restore overhead, baseline {cpt_dir.name} (container + gem5 only)", walls)
    med = {k: statistics.median(p.get(k, 0.0) for p in phases) for k in ("instantiate_seconds", "simulate_seconds")}
    print(f"{'':<48} of which: instantiate {med['instantiate_seconds']:.2f} s, simulate the guest's part "
          f"{med['simulate_seconds']:.2f} s", flush=True)
    return statistics.median(walls)


def main() -> None:
    ap = gem5_work_args(__doc__.splitlines()[0], "checkpoint name the restores use (default: default)")
    ap.add_argument("--memory", action="append", default=[], help="also measure on a checkpoint of this memory size")
    ap.add_argument("--full", action="store_true", help="boot systemd (full boot) to a checkpoint, timed")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--baseline", type=Path, help="an older checkpoint directory (with its manifest.json)")
    ap.add_argument("--baseline-disk", type=Path, help="the disk image --baseline was taken with")
    ap.add_argument("--baseline-kernel", type=Path, help="the vmlinux --baseline was taken with")
    args = ap.parse_args()
    if args.baseline and not (args.baseline_disk and args.baseline_kernel):
        ap.error("--baseline needs --baseline-disk and --baseline-kernel")
    engine = Engine.connect()
    flags = {"work_dir": args.work_dir, "gem5.src": args.gem5_src, "gem5.binary": args.gem5_binary}
    base = config.load(flags=flags, environ={})
    e = env.ensure(StepContext.open(base, engine))
    layout = Layout(base.work_dir)
    img = ImageArtifact.read(layout.artifact_dir("images", base.name))
    k = kernel.ensure(StepContext.open(base, engine))
    if args.full:
        cfg = dataclasses.replace(config.load(flags={**flags, "checkpoint.boot": "full"}, environ={}), name="bench-full")
        start = time.monotonic()
        cpt = checkpoint.ensure(StepContext.open(cfg, engine), e, img, k, force=True)
        report("boot -> checkpoint, full boot: wall (whole step)", [time.monotonic() - start])
        report("boot -> checkpoint, full boot: simulated", [cpt.info["sim_seconds"]])

    with tempfile.TemporaryDirectory() as tmp:
        scripts = []
        for i in range(max(args.jobs, 1)):
            s = Path(tmp) / f"exit-at-once-{i}.rcS"
            s.write_text(f"#!/bin/sh\n# benchmark script {i}: does nothing\nexit 0\n")
            scripts.append(s)
        cpt = CheckpointArtifact.read(layout.artifact_dir("checkpoints", args.source))
        cfg = dataclasses.replace(base, name=args.source)
        if args.baseline:
            old = baseline(e, args.baseline.resolve(), args.baseline_disk.resolve(), args.baseline_kernel.resolve(),
                           scripts[0], args.repeat, engine)
        by_memory = {cpt.info["board"]["memory"]: overhead(cfg, e, cpt, scripts[0], args.repeat, engine,
                                                             f"'{args.source}' ({cpt.info['board']['memory']})")}
        if args.baseline:
            new = by_memory[cpt.info["board"]["memory"]]
            print(f"restore overhead, baseline -> now: {old:.2f} s -> {new:.2f} s ({old / new:.2f}x)", flush=True)
        for memory in args.memory:
            mcfg = dataclasses.replace(config.load(flags={**flags, "checkpoint.memory": memory}, environ={}),
                                       name=f"bench-mem-{memory}")
            mcpt = checkpoint.ensure(StepContext.open(mcfg, engine), e, img, k)
            by_memory[memory] = overhead(mcfg, e, mcpt, scripts[0], args.repeat, engine, f"bench-mem-{memory}")
        if len(by_memory) > 1:
            from hackback.base.config import memory_bytes

            pts = sorted((memory_bytes(m) or 0, w) for m, w in by_memory.items())
            (b0, w0), (b1, w1) = pts[0], pts[-1]
            print(f"restore overhead per GiB of guest memory: {(w1 - w0) / ((b1 - b0) / 2**30):.2f} s "
                  f"(from {len(pts)} sizes, medians)")

        one = dataclasses.replace(cfg, restore=dataclasses.replace(cfg.restore, jobs=1))
        many = dataclasses.replace(cfg, restore=dataclasses.replace(cfg.restore, jobs=args.jobs))
        start = time.monotonic()
        restore.restore(StepContext.open(one, engine), e, cpt, scripts, force=True)
        serial = time.monotonic() - start
        start = time.monotonic()
        restore.restore(StepContext.open(many, engine), e, cpt, scripts, force=True)
        parallel = time.monotonic() - start
        report(f"{len(scripts)} restores one at a time", [serial])
        report(f"{len(scripts)} restores, -j {args.jobs}", [parallel])
        print(f"-j {args.jobs} speed-up: {serial / parallel:.2f}x on {os.cpu_count()} host cores")


if __name__ == "__main__":
    main()
