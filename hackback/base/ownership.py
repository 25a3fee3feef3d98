"""Who made a thing: a run is "<host>:<pid>" of the process that started it.
Containers carry it as a label, staging directories in their names; whether
that process is still alive decides what may be reaped (engine, artifacts,
clean, reaper all ask here)."""
from __future__ import annotations

import os
import socket
from typing import Optional


def owner_label() -> str:
    """This process, as owners are written."""
    return f"{socket.gethostname()}:{os.getpid()}"


def parse_owner(owner: str) -> Optional[tuple[str, int]]:
    """An owner label's (host, pid), None when it is not one. A host name may hold
    dots (even colons): the pid is what follows the last colon."""
    host, sep, pid = owner.rpartition(":")
    return (host, int(pid)) if sep and host and pid.isdigit() else None


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with that pid exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def host_user() -> str:
    """uid:gid the containers run as, so the user owns what they write."""
    return f"{os.getuid()}:{os.getgid()}"
