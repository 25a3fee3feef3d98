"""The edge between the library and the user: typed errors become one line and
an exit code here, and nowhere else."""
from __future__ import annotations

import signal
import sys
from typing import Any, Callable

from invoke.exceptions import Exit

from .base.errors import HackbackError


def _sigterm(signum: int, frame: Any) -> None:
    # A killed CLI must still run the cleanup that Ctrl-C runs.
    raise KeyboardInterrupt


def guarded(fn: Callable[[], Any]) -> Any:
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        return fn()
    except HackbackError as e:
        raise Exit(e.one_line(), code=e.exit_code) from None
    except KeyboardInterrupt:
        print("\nhackback: interrupted; containers removed, nothing half-written left in place", file=sys.stderr)
        raise Exit(code=130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
