"""One task of a hackback Slurm job array, on its node:

    python -m hackback.node BATCH_DIR      (SLURM_ARRAY_TASK_ID says which task)

The sbatch script hackback writes (hackback/sbatch/array.sbatch) runs this. Its
exit status is the one the local restore would have had; errors are one line
on stderr, in the task's log."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from invoke.exceptions import Exit

from .steps import cluster
from .edge import guarded


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    if len(argv) != 1 or not os.environ.get("SLURM_ARRAY_TASK_ID", "").isdigit():
        print("usage: SLURM_ARRAY_TASK_ID=N python -m hackback.node BATCH_DIR (Slurm sets the task id)", file=sys.stderr)
        return 2
    try:
        guarded(lambda: cluster.run_task(Path(argv[0]), int(os.environ["SLURM_ARRAY_TASK_ID"])))
    except Exit as e:
        if e.message:
            print(e.message, file=sys.stderr)
        return int(e.code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
