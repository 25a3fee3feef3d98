"""The edge between the library and the user: typed errors become one line and
an exit code here, and nowhere else."""
from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from invoke.exceptions import Exit

from . import config
from .engine import label_work_dir
from .errors import HackbackError


def load_config(flags: Mapping[str, Any], config_file: Optional[str] = None) -> config.Config:
    """The task's config; every container this process starts is labelled with its work dir."""
    cfg = config.load(flags=flags, user_file=Path(config_file) if config_file else None)
    label_work_dir(cfg.work_dir)
    return cfg


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
