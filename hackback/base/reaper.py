"""A guard that outlives a killed task: when the task's process is gone without
cleaning up (kill -9, a hang-up of its terminal, an OOM kill), it removes the
containers that process started, so a gem5 build or boot does not keep the
cores for hours. The engine starts one (engine._spawn_reaper), in a session
of its own, with the process's first container; it polls the owner's pid every POLL seconds and,
once the owner has exited (normally or not), removes what carries its owner
label and exits itself.

    python -m hackback.base.reaper <host>:<pid>
"""
from __future__ import annotations

import socket
import sys
import time

from .engine import Engine
from .ownership import parse_owner, pid_alive

POLL = 2.0  # seconds; a killed task's containers are gone within a few of these


def watch(owner: str) -> int:
    parsed = parse_owner(owner)
    if parsed is None or parsed[0] != socket.gethostname():
        return 2  # only a process of this host can be watched
    while pid_alive(parsed[1]):
        time.sleep(POLL)
    engine = Engine.connect()
    for c in engine.labelled_containers():
        if c.owner == owner:
            engine.remove_container(c.id)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(watch(sys.argv[1]) if len(sys.argv) == 2 else 2)
    except Exception:  # noqa: BLE001 - a guard with no terminal has nowhere to report; it only exits
        sys.exit(1)
