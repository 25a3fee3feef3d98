#!/usr/bin/env python3
"""Boot -> checkpoint with the earlier settings and with the shipped defaults, side by side.

    python3 benchmarks/boot.py --gem5-src SRC [--gem5-binary BIN] --work-dir DIR [--only new|baseline] [--reuse]

baseline: the kernel fragment as shipped before the boot-time work
          (benchmarks/baseline-gem5.config: x86_64_defconfig with ftrace, kprobes,
          ...) and X86Board's timing constants (checkpoint.timing = "x86board").
new:      the shipped defaults (the work dir's default kernel, built if missing).
The baseline builds its own kernel (name bench-baseline, so its cold build time
is printed too). Each boots the work dir's default image to a checkpoint of
its own (bench-baseline / bench-new; --force, unless --reuse takes one already
there).
Prints wall time, simulated seconds and host seconds per simulated second.
Both boots run one after the other, in one run of this script.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401 (SIGTERM unwinds; repo on sys.path)

from hackback.store.records import ImageArtifact
from hackback.protocol.context import StepContext
from hackback.steps import checkpoint, env, image, kernel
from hackback.base import config
from hackback.store.layout import Layout
from hackback.base.engine import Engine

HERE = Path(__file__).resolve().parent
SETTINGS: dict[str, dict[str, Any]] = {
    "baseline": {"kernel.fragment": str(HERE / "baseline-gem5.config"), "checkpoint.timing": "x86board"},
    "new": {},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gem5-src", required=True)
    ap.add_argument("--gem5-binary", default="")
    ap.add_argument("--work-dir", default=os.environ.get("HACKBACK_WORK_DIR", "build"))
    ap.add_argument("--only", choices=sorted(SETTINGS), action="append")
    ap.add_argument("--reuse", action="store_true", help="keep a bench-* checkpoint already taken")
    args = ap.parse_args()
    engine = Engine.connect()
    common = {"work_dir": args.work_dir, "gem5.src": args.gem5_src, "gem5.binary": args.gem5_binary}
    base = config.load(flags=common, environ={})
    e = env.ensure(StepContext.open(base, engine))
    img = ImageArtifact.read(Layout(base.work_dir).artifact_dir("images", base.name))
    rows = []
    for name in args.only or ["baseline", "new"]:
        loaded = config.load(flags={**common, **SETTINGS[name]}, environ={})
        cfg = dataclasses.replace(loaded, name=f"bench-{name}")
        start = time.monotonic()
        k = kernel.ensure(StepContext.open(cfg if name == "baseline" else loaded, engine))
        kernel_wall = time.monotonic() - start
        start = time.monotonic()
        cpt = checkpoint.ensure(StepContext.open(cfg, engine), e, img, k, force=not args.reuse)
        wall = time.monotonic() - start
        info = cpt.info
        kinfo = k.manifest.parts["kernel"]["info"]
        rows.append((name, kernel_wall, kinfo.get("build_seconds", 0), kinfo.get("files_compiled", 0), wall,
                     info["sim_seconds"], info["host_seconds"], " ".join(info.get("timing", {}).get("args", ["lpj=7999923"]))))
    print(f"\n{'settings':<10} {'kernel build':>13} {'files':>6} {'boot step':>10} {'simulated':>10} {'gem5 host':>10} "
          f"{'host s/sim s':>13}  timing args")
    for name, _kw, kb, files, wall, sim, host, targs in rows:
        print(f"{name:<10} {kb:>12.0f}s {files:>6} {wall:>9.0f}s {sim:>9.3f}s {host:>9.0f}s {host / sim:>13.0f}  {targs}")
    if len(rows) == 2:
        (_, _, _, _, w0, s0, h0, _), (_, _, _, _, w1, s1, h1, _) = rows
        print(f"new vs baseline: boot step {w0 / w1:.2f}x faster, {s0 / s1:.2f}x fewer simulated seconds")


if __name__ == "__main__":
    main()
