#!/usr/bin/env python3
"""Submitting restores as a Slurm job array: how long `invoke restore --on slurm`
takes for N scripts, against a work dir whose env and checkpoint are built, on a
single-node Slurm of its own (tests/slurm_cluster.py, started and stopped here).
Each array is cancelled at once (its tasks would run gem5); its batch directory
is removed. The first submission (1 script) saves the env image for the nodes,
once; it is reported apart.

    python3 benchmarks/slurm_submit.py --gem5-src SRC --gem5-binary BIN --work-dir W --tasks 100 1000
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import gem5_work_args

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import slurm_cluster  # noqa: E402


def submit(env: dict[str, str], scripts: Path, work: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "invoke", "restore", "--on", "slurm", "--script", str(scripts)],
                         cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    m = re.search(r"submitted Slurm job (\d+): (\d+) task\(s\)", out.stdout)
    if out.returncode != 0 or not m:
        sys.exit(f"submission failed: {out.stdout[-1500:]}{out.stderr}")
    subprocess.run(["scancel", m.group(1)], env=env, check=True)
    batch = re.search(r"batch (\S+)", out.stdout)
    if batch:
        time.sleep(1)
        shutil.rmtree(batch.group(1), ignore_errors=True)
    return seconds


def main() -> None:
    ap = gem5_work_args(__doc__ or "", "the checkpoint name the restores use")
    ap.add_argument("--tasks", type=int, nargs="+", default=[100, 1000])
    args = ap.parse_args()
    work = Path(args.work_dir).resolve()
    with tempfile.TemporaryDirectory(prefix="hb-slurm-bench-") as tmp:
        cluster = slurm_cluster.SingleNodeSlurm(Path(tmp) / "slurm")
        cluster.root.mkdir()
        cluster.start()
        env = {**cluster.env, "HACKBACK_WORK_DIR": str(work), "HACKBACK_GEM5_SRC": args.gem5_src,
               "HACKBACK_NAME": args.source}
        if args.gem5_binary:
            env["HACKBACK_GEM5_BINARY"] = args.gem5_binary
        try:
            nonce = time.time_ns()
            for n in [1, *args.tasks]:
                scripts = Path(tmp) / f"scripts-{n}"
                scripts.mkdir()
                for i in range(n):
                    (scripts / f"s{i:05d}.sh").write_text(f"#!/bin/sh\n# {nonce}\necho {i}\n")
                seconds = submit(env, scripts, work)
                what = "first (saves the env image once)" if n == 1 else f"{n} tasks"
                print(f"submit {what:<34} {seconds:7.2f} s  ({1000 * seconds / n:.1f} ms per task)", flush=True)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
