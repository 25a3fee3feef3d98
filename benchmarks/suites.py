#!/usr/bin/env python3
"""The benchmark suites from one checkpoint, as `hackback suite` runs them, and
the figures they give: NPB class S, every member on atomic end to end; IS, MG,
LU, SP and CG on o3 with L1+L2, switching from atomic at their own ROI (the
sampling benchmark's full detailed references); GAPBS on a 2^10-vertex graph,
every kernel on atomic and bfs and pr on o3; CG and pr on the 2-core checkpoint
with 2 OpenMP threads on timing; every NPB member built at classes W and A and
verified natively (`hackback build`, no gem5). Each part is one hackback command, rerun as a
no-op when its runs are kept: stop it at any point and run it again. Prints a
row per run: its own verdict, ROI instructions beside the native count of the
same binary (callgrind) and their difference (the kernel's share), IPC, miss
rates, simulated and host seconds.

    python3 benchmarks/suites.py --gem5-src SRC --gem5-binary BIN --work-dir DIR --npb NPB.tar.xz --gapbs GAPBS.tar.xz \\
        [--parts o3,atomic,gapbs,smp,classes]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import gem5_work_args

REPO = Path(__file__).resolve().parent.parent
O3 = ["--cpu", "o3", "--caches", "l1l2", "--switch-from", "atomic"]


def parts(npb: str, gapbs: str) -> dict[str, list[list[str]]]:
    return {
        "o3": [["suite", "npb", "--members", "is,mg,lu,sp,cg", "--source", npb, *O3, "-j", "2"]],
        "atomic": [["suite", "npb", "--source", npb, "--cpu", "atomic", "-j", "2"]],
        "gapbs": [["suite", "gapbs", "--source", gapbs, "--cpu", "atomic", "-j", "2"],
                  ["suite", "gapbs", "--members", "bfs,pr", "--source", gapbs, *O3, "-j", "2"]],
        "smp": [["checkpoint", "--name", "smp", "--cores", "2"],
                # atomic: CG with 2 threads on timing made no progress past its third iteration in 52 min (docs/benchmarks.md)
                ["suite", "npb", "--name", "smp", "--members", "cg", "--threads", "2", "--source", npb, "--cpu", "atomic"],
                ["suite", "gapbs", "--name", "smp", "--members", "pr", "--threads", "2", "--source", gapbs, "--cpu", "atomic"]],
        # Built and verified natively only: class A's ROIs take gem5 hours to days (and callgrind's count, at about
        # 50x native, hours for BT, LU and SP: native_counts off for these two classes).
        "classes": [["build", "npb", "--input", c, "--source", npb] for c in ("W", "A")],
    }

# What a part's commands run with beyond the benchmark's own environment.
PART_ENV = {"classes": {"HACKBACK_SUITE_NATIVE_COUNTS": "false"}}


def hackback(env: dict[str, str], args: list[str]) -> None:
    print(f"$ hackback {' '.join(args)}", flush=True)
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "hackback.cli", *args], cwd=REPO, env=env)
    print(f"  (exit {out.returncode}, {time.monotonic() - start:.0f} s)", flush=True)


def builds(work: Path) -> None:
    """A row per member built at a class other than S: its native verdict and its binary."""
    head = ("benchmark", "class", "native verdict", "build and native run s", "gem5 binary", "bytes", "sha256")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for f in sorted((work / "benchmarks").glob("npb-*-[WABC]-1t/manifest.json")):
        part = json.loads(f.read_text())["parts"]["benchmark"]
        m, v = part["info"]["member"], part["info"]["verdict"]
        (rel, rec), = ((k, r) for k, r in part["outputs"].items() if k.startswith("gem5/"))
        secs = part["info"].get("build_seconds")
        print(f"| npb {m['member']} | {m['input']} | {'PASS' if v['passed'] else 'FAIL'}: {' '.join(v['said'].split())} | "
              f"{secs if secs is not None else '-'} | {rel} | {rec['size']:,} | {rec['sha256'][:12]} |")


def table(work: Path) -> None:
    rows = []
    for run in sorted((work / "runs").glob("*/manifest.json")):
        info = json.loads(run.read_text())["parts"]["run"]["info"]
        m, v, roi = info.get("member"), info.get("verdict"), info.get("roi") or {}
        if not m:
            continue
        bench = work / "benchmarks" / f"{m['suite']}-{m['member']}-{m['input']}-{m['threads']}t" / "manifest.json"
        native = json.loads(bench.read_text())["parts"]["benchmark"]["info"].get("native_roi_insts") if bench.is_file() else None
        board = info["board"]
        cpu = f"{board['switch_from']}-to-{board['cpu']}" if board.get("switch_from") else board["cpu"]
        rows.append((f"{m['suite']} {m['member']}.{m['input']} {m['threads']}t", info["checkpoint"]["name"], cpu,
                     board.get("caches", "none"), "PASS" if v and v["passed"] else "FAIL", roi.get("insts"), native,
                     roi.get("ipc"), roi.get("l1d_miss_rate"), roi.get("l2_miss_rate"), info["sim_seconds"],
                     info["host_seconds"]))
    head = ("benchmark", "checkpoint", "cpu", "caches", "verdict", "ROI insts", "native ROI", "kernel share", "ROI IPC",
            "L1D miss", "L2 miss", "sim s", "host s")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        share = f"{(r[5] - r[6]) / r[6]:+.2%}" if r[5] and r[6] else "-"
        cells = [*r[:5], f"{r[5]:,.0f}" if r[5] else "-", f"{r[6]:,}" if r[6] else "-", share,
                 *(f"{x:.3f}" if x is not None else "-" for x in r[7:10]), f"{r[10]:.4f}", f"{r[11]:.0f}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")


def main() -> None:
    ap = gem5_work_args(__doc__.splitlines()[0], "unused")
    ap.add_argument("--npb", required=True)
    ap.add_argument("--gapbs", required=True)
    ap.add_argument("--parts", default="o3,atomic,gapbs,smp")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HACKBACK_")}
    env.update(HACKBACK_WORK_DIR=str(Path(args.work_dir).resolve()), HACKBACK_GEM5_SRC=args.gem5_src,
               HACKBACK_GEM5_BINARY=args.gem5_binary, HACKBACK_PLAIN="1")
    chosen = args.parts.split(",")
    for part in chosen:
        for command in parts(args.npb, args.gapbs)[part]:
            hackback({**env, **PART_ENV.get(part, {})}, command)
    table(Path(args.work_dir))
    if "classes" in chosen:
        builds(Path(args.work_dir))


if __name__ == "__main__":
    main()
