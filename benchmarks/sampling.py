#!/usr/bin/env python3
"""Sampled simulation against full detailed runs, side by side: for NPB class S
IS, MG, LU, SP and CG, a checkpoint at each one's own ROI (hackback suite ...
--save-checkpoint), the ROI sampled on o3 with L1+L2 (hackback sample), and
the estimate beside the full detailed run from the same ROI checkpoint
(--reference: run once, then kept), for each cache preset asked for (l1l2 and l1l2walk: the
same L1s and L2, the second with gem5's page-walk caches); then CG with a second cache
configuration (l1l2 with a 256 KiB L2), sampled and run in full. Every step is a hackback command and a no-op when its
runs are kept. Prints one table: k, samples, interval, warm-ups, detailed
instructions as a share of the ROI, sampled and full CPI, error, interval,
and host seconds of the one-off passes, of the samples and of the full run; then
where a sample run's host seconds go (container, gem5's instantiate and restore,
functional warm-up, detailed part).

    python3 benchmarks/sampling.py --gem5-src SRC --gem5-binary BIN --work-dir DIR --npb NPB.tar.xz \
        [--members is,mg,lu,sp,cg] [--caches l1l2,l1l2walk]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import gem5_work_args

REPO = Path(__file__).resolve().parent.parent


def hackback(env: dict[str, str], args: list[str]) -> int:
    print(f"$ hackback {' '.join(args)}", flush=True)
    start = time.monotonic()
    code = subprocess.run([sys.executable, "-m", "hackback.cli", *args], cwd=REPO, env=env).returncode
    print(f"  (exit {code}, {time.monotonic() - start:.0f} s)", flush=True)
    if code != 0:  # a table over what is left would pass a failed step off as measured
        sys.exit(f"sampling benchmark: `hackback {args[0]}` exited {code}; no table printed")
    return code


def table(work: Path) -> None:
    head = ("ROI", "board", "k", "samples", "interval", "warm-up (func/det)", "detailed % ROI", "sampled CPI", "95% interval",
            "full CPI", "error", "covered", "one-off host s", "samples host s", "full host s", "speed-up")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for f in sorted((work / "estimates").glob("*/manifest.json")):
        e = json.loads(f.read_text())["parts"]["estimate"]["info"]
        s = json.loads((work / "samplings" / e["sampling"] / "manifest.json").read_text())["parts"]["sampling"]["info"]
        b = e["board"]
        func = max(x["functional_warmup"] for x in s["samples"])
        det = max(x["detailed_warmup"] for x in s["samples"])
        full = e.get("full_cpi")
        err = (e["cpi"] - full) / full if full else None
        cells = [e["sampling"], f"{b['cpu']} {b['caches']} {b.get('l1d', '')}/{b.get('l2', '')}", s["k"], e["samples"],
                 f"{s['interval']:,}", f"{func:,}/{det:,}", f"{e['detailed_insts'] / e['roi_insts']:.1%}", f"{e['cpi']:.4f}",
                 f"±{e['half_width'] / e['cpi']:.1%}", f"{full:.4f}" if full else "-", f"{err:+.2%}" if err is not None else "-",
                 ("yes" if abs(e["cpi"] - full) <= e["half_width"] else "NO") if full else "-",
                 f"{e['one_off_host_seconds']:.0f}", f"{e['sample_host_seconds']:.0f}",
                 f"{e['full_host_seconds']:.0f}" if e.get("full_host_seconds") else "-",
                 f"{e['full_host_seconds'] / e['sample_host_seconds']:.1f}x" if e.get("full_host_seconds") else "-"]
        print("| " + " | ".join(str(c) for c in cells) + " |")


def where_the_time_goes(work: Path) -> None:
    """Per estimate, a sample run's host seconds by phase (medians over its samples): the
    container's life, gem5's instantiate (the board and the checkpoint's restore), the
    functional warm-up (to the switch) and the detailed part (after it)."""
    head = ("estimate", "samples", "container s", "instantiate s", "functional s", "detailed s", "sum of gem5 s")
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for f in sorted((work / "estimates").glob("*/manifest.json")):
        e = json.loads(f.read_text())["parts"]["estimate"]["info"]
        rows = []
        for rid in e["runs"]:
            i = json.loads((work / "runs" / rid / "manifest.json").read_text())["parts"]["run"]["info"]
            inst = i.get("phases", {}).get("instantiate_seconds", 0.0)
            switched = (i.get("switch") or {}).get("host_seconds", inst)
            rows.append((i.get("container_wall_seconds") or 0.0, inst, switched - inst, i["host_seconds"] - switched,
                         i["host_seconds"]))
        cols = list(zip(*rows))
        print(f"| {f.parent.name} | {len(rows)} | " + " | ".join(f"{statistics.median(c):.2f}" for c in cols[:4])
              + f" | {sum(cols[4]):.0f} |")


def main() -> None:
    ap = gem5_work_args(__doc__.splitlines()[0], "unused")
    ap.add_argument("--npb", required=True)
    ap.add_argument("--members", default="is,mg,lu,sp,cg")
    ap.add_argument("--caches", default="l1l2,l1l2walk", help="cache presets to sample each member with")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HACKBACK_")}
    env.update(HACKBACK_WORK_DIR=str(Path(args.work_dir).resolve()), HACKBACK_GEM5_SRC=args.gem5_src,
               HACKBACK_GEM5_BINARY=args.gem5_binary, HACKBACK_PLAIN="1")
    members = args.members.split(",")
    for m in members:
        hackback(env, ["suite", "npb", "--members", m, "--source", args.npb, "--save-checkpoint", f"{m}-roi"])
    for caches in args.caches.split(","):
        for m in members:
            hackback(env, ["sample", "--checkpoint", f"{m}-roi", "--cpu", "o3", "--caches", caches, "-j", "2", "--reference"])
    if "cg" in members:  # a second cache configuration, both ways: the samples and checkpoints are reused
        hackback(env, ["sample", "--checkpoint", "cg-roi", "--cpu", "o3", "--caches", "l1l2", "--l2", "256KiB", "-j", "2",
                       "--reference"])
    table(Path(args.work_dir))
    where_the_time_goes(Path(args.work_dir))


if __name__ == "__main__":
    main()
