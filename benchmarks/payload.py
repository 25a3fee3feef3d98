#!/usr/bin/env python3
"""What a payload costs a restore: a script that only lists /root/payload,
restored with payloads of --size MiB each (random bytes, so nothing compresses),
on the atomic CPU, against a checkpoint already taken in --work-dir. Prints,
per size, the median over --repeat of the run's simulated seconds and of its
host seconds (gem5's whole run, container and checkpoint load included), and
the same with no payload for the baseline.

    python3 benchmarks/payload.py --gem5-src SRC --gem5-binary BIN --work-dir DIR [--size 1 --size 10 --size 100] [--repeat 3]
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
from pathlib import Path

from _common import gem5_work_args, report

from hackback.base import config
from hackback.steps import env, restore
from hackback.store.layout import Layout
from hackback.store.manifest import Manifest
from hackback.protocol.context import StepContext
from hackback.store.records import CheckpointArtifact


def main() -> None:
    ap = gem5_work_args(__doc__.splitlines()[0], "the checkpoint's name (default: default)")
    ap.add_argument("--size", type=int, action="append", help="payload size in MiB (repeatable; default 1, 10, 100)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    flags = {"work_dir": args.work_dir, "gem5.src": args.gem5_src, "gem5.binary": args.gem5_binary, "name": args.source}
    base = config.load(flags=flags, environ={})
    ctx = StepContext.open(base)
    e = env.ensure(ctx)
    cpt = CheckpointArtifact.read(Layout(base.work_dir).artifact_dir("checkpoints", args.source))
    with tempfile.TemporaryDirectory(dir=base.work_dir) as tmp:
        script = Path(tmp) / "list-payload.sh"
        script.write_text("#!/bin/sh\nls -l /root/payload | head -n 3\ndu -s /root/payload\n")
        for mib in [0] + (args.size or [1, 10, 100]):
            cfg = base
            if mib:
                d = Path(tmp) / f"payload-{mib}"
                d.mkdir()
                with open(d / "data.bin", "wb") as f:
                    for _ in range(mib):
                        f.write(os.urandom(1 << 20))
                cfg = dataclasses.replace(base, restore=dataclasses.replace(base.restore, payload=(str(d),)))
            sims, hosts = [], []
            for _ in range(args.repeat):
                r = restore.restore(ctx.with_config(cfg), e, cpt, [script], force=True)[0]
                info = Manifest.read(r.directory).parts["run"]["info"]  # type: ignore[union-attr]
                sims.append(float(info["sim_seconds"]))
                hosts.append(float(info.get("container_wall_seconds") or info["host_seconds"]))
            label = f"{mib} MiB payload" if mib else "no payload"
            report(f"{label}: simulated", sims, unit="sim s")
            report(f"{label}: host (whole restore container)", hosts)
            print(f"{'':<48} median {statistics.median(hosts):.1f} host s, {statistics.median(sims) * 1000:.1f} simulated ms",
                  flush=True)


if __name__ == "__main__":
    main()
