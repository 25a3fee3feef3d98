"""`invoke clean`: reap what killed runs left (containers, staging directories),
and remove artifacts by kind and name, asking first."""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from . import log
from .artifacts import KINDS, Kind, Layout, abandoned_tmp
from .config import Config
from .engine import Engine
from .errors import UsageError


@dataclass
class CleanReport:
    containers: list[str] = field(default_factory=list)
    tmp_paths: list[Path] = field(default_factory=list)
    artifacts: list[Path] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


def reap_orphans(engine: Engine, layout: Layout, report: Optional[CleanReport] = None) -> CleanReport:
    """Remove containers and staging directories whose run (on this host) is gone.
    Every task does this first: an orphaned multi-hour build would otherwise
    keep competing for the cores."""
    report = report or CleanReport()
    for cid, cname, owner in engine.containers():
        log.action(f"docker rm -f {cname}  # left by {owner or 'an unknown run'}")
        engine.remove_container(cid)
        report.containers.append(cname)
    for p in abandoned_tmp(layout):
        log.action(f"rm -rf {p}  # left by a run that is gone")
        shutil.rmtree(p, ignore_errors=True)
        report.tmp_paths.append(p)
    return report


def clean(
    cfg: Config,
    kind: Optional[str] = None,
    name: Optional[str] = None,
    images: bool = False,
    yes: bool = False,
    confirm: Callable[[str], bool] | None = None,
    engine: Optional[Engine] = None,
) -> CleanReport:
    layout = Layout(cfg.work_dir)
    engine = engine or Engine.connect()
    report = reap_orphans(engine, layout)

    targets = _targets(layout, kind, name)
    if targets:
        listing = ", ".join(str(p) for p in targets)
        ask = confirm or _ask
        if not yes and not ask(f"delete {listing}?"):
            log.info("nothing deleted")
            return report
        for p in targets:
            log.action(f"rm -rf {p}")
            shutil.rmtree(p)
            report.artifacts.append(p)
    if images:
        for image_id, tags, _labels in engine.images():
            log.action(f"docker rmi {' '.join(tags) or image_id[:19]}")
            engine.remove_image(image_id)
            report.images.append(image_id)
    if not (report.containers or report.tmp_paths or report.artifacts or report.images):
        log.info("nothing to clean")
    return report


def _targets(layout: Layout, kind: Optional[str], name: Optional[str]) -> list[Path]:
    if kind is None and name is None:
        return []
    if kind is not None and kind not in KINDS:
        raise UsageError(f"--kind {kind!r} is not a kind of artifact", f"choose one of: {', '.join(KINDS)}")
    kinds = tuple(k for k in KINDS if kind in (None, k))
    found = []
    for k in kinds:
        base = layout.work_dir / k
        if name is not None:
            if (base / name).is_dir():
                found.append(base / name)
            if k == "runs" and base.is_dir():  # run ids start with their checkpoint's name
                found += sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith(f"{name}-"))
        elif base.is_dir():
            found += sorted(p for p in base.iterdir() if p.is_dir())
    if not found:
        raise UsageError(f"no {kind or 'artifact'} named {name or '*'} under {layout.work_dir}", "`invoke clean` alone reaps leftovers only")
    return found


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        raise UsageError(f"refusing to {question[:-1]} without a terminal to ask", "add --yes to confirm")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
