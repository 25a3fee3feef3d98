#!/usr/bin/env python3
"""What switching CPUs inside a restore saves: the pointer chase
(examples/pointer-chase, working set in the L1D) with L1+L2 caches, restored
from a checkpoint in --work-dir (1) on o3 from start to end, (2) on atomic
switching to o3 at its m5 workbegin, (3) the same with a 20,000-instruction
warm-up. Prints, per way, the median over --repeat of the whole restore's host
seconds, and the ROI's instructions and IPC (the same ROI each way, less the
warm-up). Build the chase first: sh examples/pointer-chase/build.sh

    python3 benchmarks/switching.py --gem5-src SRC --gem5-binary BIN --work-dir DIR [--repeat 3]
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from _common import gem5_work_args, report

from hackback.base import config
from hackback.steps import env, restore
from hackback.store.layout import Layout
from hackback.store.manifest import Manifest
from hackback.protocol.context import StepContext
from hackback.store.records import CheckpointArtifact

CHASE = Path(__file__).resolve().parent.parent / "examples" / "pointer-chase"


def main() -> None:
    ap = gem5_work_args(__doc__.splitlines()[0], "the checkpoint's name (default: default)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not (CHASE / "bin" / "chase").is_file():
        raise SystemExit("build the chase first: sh examples/pointer-chase/build.sh")
    flags = {"work_dir": args.work_dir, "gem5.src": args.gem5_src, "gem5.binary": args.gem5_binary, "name": args.source,
             "restore.cpu": "o3", "restore.caches": "l1l2", "restore.payload": [str(CHASE / "bin"), str(CHASE / "inputs" / "l1")]}
    base = config.load(flags=flags, environ={})
    ctx = StepContext.open(base)
    e = env.ensure(ctx)
    cpt = CheckpointArtifact.read(Layout(base.work_dir).artifact_dir("checkpoints", args.source))
    ways = {"o3 throughout": {}, "atomic, o3 from workbegin": {"switch_from": "atomic"},
            "atomic, o3 from workbegin, 20k warm-up": {"switch_from": "atomic", "warmup_insts": 20_000}}
    for label, change in ways.items():
        cfg = dataclasses.replace(base, restore=dataclasses.replace(base.restore, **change))
        hosts, rois, ipcs = [], [], []
        for _ in range(args.repeat):
            r = restore.restore(ctx.with_config(cfg), e, cpt, [CHASE / "run.sh"], force=True)[0]
            info = Manifest.read(r.directory).parts["run"]["info"]  # type: ignore[union-attr]
            hosts.append(float(info.get("container_wall_seconds") or info["host_seconds"]))
            rois.append(float(info["roi"]["insts"]))
            ipcs.append(float(info["roi"]["ipc"]))
        report(f"{label}: host s (whole restore)", hosts)
        report(f"{label}: ROI instructions", rois, unit="insts")
        report(f"{label}: ROI IPC", ipcs, unit="")


if __name__ == "__main__":
    main()
