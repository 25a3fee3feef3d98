"""A real single-node Slurm for the cluster tier: Debian's slurm-wlm and munge,
configured in a temporary directory (its own munge key and socket, its own
ports, state and spool), started for the tests and stopped after. Nothing of
the host's own Slurm or munge, if any, is touched: every command here is given
this cluster's slurm.conf (SLURM_CONF) and munge socket."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

NEEDED = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo")

CONF = """\
ClusterName=hackbacktest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MaxArraySize=5001
MaxJobCount=20000
KillWait=15
MinJobAge=300
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=hackbacktest Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def missing() -> list[str]:
    return [c for c in NEEDED if shutil.which(c) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SingleNodeSlurm:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60) -> "SingleNodeSlurm":
        root = self.root
        root.chmod(0o700)
        for sub in ("state", "spool"):
            (root / sub).mkdir(exist_ok=True)
        key = root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={root}/munge.sock",
                        f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log", f"--seed-file={root}/munged.seed"],
                       check=True, capture_output=True)
        host = socket.gethostname().split(".")[0]
        self.conf.write_text(CONF.format(host=host, root=root, ctld_port=_free_port(), d_port=_free_port(),
                                         cpus=os.cpu_count() or 1))
        subprocess.run(["slurmctld", "-c"], env=self.env, check=True, capture_output=True)
        subprocess.run(["slurmd", "-c"], env=self.env, check=True, capture_output=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "--noheader", "--format", "%T"], env=self.env, capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated"):
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the test's Slurm did not come up in {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            p = self.root / name
            if p.is_file():
                parts.append(f"{name}: " + " | ".join(p.read_text(errors="replace").splitlines()[-3:]))
        return "; ".join(parts)

    def stop(self) -> None:
        subprocess.run(["scontrol", "shutdown"], env=self.env, capture_output=True)
        deadline = time.monotonic() + 30
        for pid_file in ("slurmctld.pid", "slurmd.pid"):
            pid = self._pid(pid_file)
            while pid and _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["munged", f"--socket={self.root}/munge.sock", "--stop"], capture_output=True)

    def _pid(self, name: str) -> Optional[int]:
        try:
            return int((self.root / name).read_text().strip())
        except (OSError, ValueError):
            return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
