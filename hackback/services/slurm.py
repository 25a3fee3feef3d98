"""Slurm's own commands (sbatch, squeue, scancel): the one module that runs
them. hackback submits plain sbatch scripts rather than going through a
library, so what runs on the cluster is a file a researcher can read, rerun
by hand and hand to their admins."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from ..base.errors import ClusterError, UsageError

# squeue's states for a task that has not ended yet.
WAITING = ("PENDING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED")
RUNNING = ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING")


def require() -> None:
    if shutil.which("sbatch") is None:
        raise UsageError("--on slurm needs Slurm's sbatch, and there is none on PATH",
                         "run it on a cluster's login node (or install slurm-wlm), or restore locally")


class NotSubmitted(ClusterError):
    """sbatch refused the job: nothing was queued."""


def _run(cmd: Sequence[str], what: str, error: type[ClusterError] = ClusterError) -> str:
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ClusterError(f"{what}: {cmd[0]} did not run ({e})", "check that Slurm's commands work here (sinfo)") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise error(f"{what}: {last}", f"the command was: {' '.join(cmd)}")
    return out.stdout


def submit(script: Path, hold: bool = False) -> str:
    """sbatch the script (held: queued, not started until released); the job id."""
    out = _run(["sbatch", "--parsable", *(["--hold"] if hold else []), str(script)], "sbatch refused the job array",
               NotSubmitted).strip()
    return out.split(";")[0]


def release(job_id: str) -> None:
    _run(["scontrol", "release", job_id], "scontrol release failed")


def task_states(job_id: str) -> dict[int, str]:
    """The array's tasks that squeue still lists (pending or running), by index."""
    try:
        out = _run(["squeue", "--noheader", "--array", "--jobs", job_id, "--format", "%K %T"], "squeue failed")
    except ClusterError as e:
        if "Invalid job id" in e.message:  # long gone: Slurm forgot it (MinJobAge)
            return {}
        raise
    states: dict[int, str] = {}
    for line in out.splitlines():
        index, _, state = line.strip().partition(" ")
        # A pending range is listed once as "0-99" (or "3-99%2") unless --array splits it.
        first, _, last = index.split("%")[0].partition("-")
        if first.isdigit():
            for i in range(int(first), int(last or first) + 1):
                states[i] = state.strip()
    return states


def cancel(job_id: str) -> None:
    _run(["scancel", job_id], "scancel failed")
