#!/usr/bin/env python3
"""`invoke kernel`: no-op rerun, a one-option config change, and (with --cold)
a cold build in a fresh work directory.

    python3 benchmarks/kernel.py [--work-dir DIR] [--repeat 3] [--cold]

The config change merges a fragment that adds CONFIG_IKCONFIG=y (the kernel
carries its own config), then the shipped fragment again: both rebuilds are
reported. The kernel must already be built in --work-dir (except with --cold).
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from _common import report, timed

from hackback.store.records import KernelArtifact
from hackback.protocol.context import StepContext
from hackback.base import config
from hackback.steps import kernel
from hackback.services import kernel_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", default=os.environ.get("HACKBACK_WORK_DIR", "build"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cold", action="store_true")
    args = ap.parse_args()

    if args.cold:
        with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
            cfg = config.load(flags={"work_dir": tmp})
            holder: list[KernelArtifact] = []
            report("cold kernel build (source fetch + config + compile)", [timed(lambda: holder.append(kernel.ensure(StepContext.open(cfg))))])
            print(f"  {holder[0].manifest.parts['kernel']['info']['files_compiled']} files compiled")

    cfg = config.load(flags={"work_dir": args.work_dir})
    kernel.ensure(StepContext.open(cfg))
    report("no-op rerun (library call)", [timed(lambda: kernel.ensure(StepContext.open(cfg))) for _ in range(args.repeat)])
    with tempfile.TemporaryDirectory() as tmp:
        frag = Path(tmp) / "ikconfig.config"
        frag.write_text(kernel_config.FRAGMENT.read_text() + "CONFIG_IKCONFIG=y\n")
        changed = config.load(flags={"work_dir": args.work_dir, "kernel.fragment": str(frag)})
        before = kernel.ensure(StepContext.open(cfg)).manifest.parts["kernel"]["outputs"]["vmlinux"]["sha256"]
        on, off = [], []
        for _ in range(args.repeat):
            on.append(timed(lambda: kernel.ensure(StepContext.open(changed))))
            off.append(timed(lambda: kernel.ensure(StepContext.open(cfg))))
        after = kernel.ensure(StepContext.open(cfg)).manifest.parts["kernel"]["outputs"]["vmlinux"]["sha256"]
    report("config change rebuild (+CONFIG_IKCONFIG)", on)
    report("config change rebuild (back to the shipped fragment)", off)
    # Reproducible builds: back to the same config is back to the same vmlinux
    # (so checkpoints taken with it stay valid).
    print(f"vmlinux after the round trip is {'the same' if before == after else 'DIFFERENT'} (sha256 {after[:16]}…)")


if __name__ == "__main__":
    main()
