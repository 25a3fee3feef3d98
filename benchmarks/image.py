#!/usr/bin/env python3
"""`invoke image`: time of each stage, virtual vs allocated size, no-op rerun.

    python3 benchmarks/image.py --m5 PATH [--repeat 3]

Builds into a fresh temporary work directory each time (the tools image is
reused: benchmarks/tools_image.py measures that). --m5 is any static x86-64 m5,
e.g. <work_dir>/env/default/m5.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import report, timed

from hackback.store.records import ImageArtifact
from hackback.protocol.context import StepContext
from hackback.base import config
from hackback.steps import image
from hackback.base.engine import Engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m5", required=True, type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    engine = Engine.connect()
    s1, s2, total, noop, virt, alloc = [], [], [], [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(dir=Path.home()) as work:
            cfg = config.load(flags={"work_dir": work, "image.m5": str(args.m5)})
            holder: list[ImageArtifact] = []
            total.append(timed(lambda: holder.append(image.ensure(StepContext.open(cfg, engine), args.m5))))
            info = holder[0].manifest.parts["image"]["info"]
            s1.append(info["stage1_seconds"])
            s2.append(info["stage2_seconds"])
            virt.append(info["virtual_bytes"] / 2**30)
            alloc.append(info["allocated_bytes"] / 2**30)
            noop.append(timed(lambda: image.ensure(StepContext.open(cfg, engine), args.m5)))
    report("stage 1: debootstrap + ext4 + raw disk", s1)
    report("stage 2: Packer + QEMU provisioning (incl. KVM probe)", s2)
    report("whole build (incl. check)", total)
    report("no-op rerun (library call)", noop)
    report("disk virtual size", virt, "GiB")
    report("disk allocated on the host", alloc, "GiB")


if __name__ == "__main__":
    main()
