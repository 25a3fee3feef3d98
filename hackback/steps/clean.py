"""`hackback clean`: reap what killed runs of this work dir left (containers, .tmp
entries), and remove artifacts and env images by kind and name, asking first.

Only what is provably ours is touched without a flag: a container whose owner
label names this host and a run that is gone, and whose work-dir label is this
work dir; a directory under <work>/<kind>/ holding a hackback manifest, under
its lock; an image one of this work dir's env manifests names, when no
container uses it."""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

from ..base import log
from ..store.build import abandoned_tmp, lock, tmp_name, trash_of
from ..store.layout import KINDS, Kind, Layout
from ..store.manifest import Manifest
from ..base.config import Config
from ..base.engine import LABEL, Engine
from ..base.errors import ArtifactError, DockerFailure, LockBusy, UsageError
from ..protocol.context import StepContext
from ..store.records import EstimateInfo, Gem5Image, RunInfo, SamplingInfo
from ..protocol.step import Request, Step

Ask = Callable[[str], bool]


@dataclass(frozen=True)
class CleanRequest:
    """What `hackback clean` was asked to remove beyond the leftovers it always reaps."""

    kind: Optional[str] = None
    name: Optional[str] = None
    images: bool = False  # the env images this work dir's env manifests name
    all_owners: bool = False  # containers not provably this work dir's leftovers too (listed, asked)
    yes: bool = False  # do not ask
    dry_run: bool = False  # say what would be removed, and remove nothing


@dataclass
class CleanReport:
    containers: list[str] = field(default_factory=list)
    tmp_paths: list[Path] = field(default_factory=list)
    artifacts: list[Path] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # one line per thing left alone, saying why


def reap_orphans(engine: Engine, layout: Layout, report: Optional[CleanReport] = None, dry: bool = False) -> CleanReport:
    """Remove the containers and .tmp entries that runs of this work dir, on this
    host, left when they died. Every task does this first: an orphaned multi-hour
    build would otherwise keep competing for the cores. Nothing else is touched.
    dry: say what would be removed, and remove nothing."""
    report = report or CleanReport()
    host = socket.gethostname()
    for c in engine.labelled_containers():
        if c.verdict(layout.work_dir, host) == "reap":
            log.action(f"{'plan: would ' if dry else ''}docker rm -f {c.name}  # left by {c.owner}, which is gone")
            if not dry:
                engine.remove_container(c.id)
            report.containers.append(c.name)
    for p in abandoned_tmp(layout):
        held = trash_of(p.name)
        if held is None or dry:
            log.action(f"{'plan: would ' if dry else ''}rm -rf {p}  # left by a run that is gone")
            if not dry:
                shutil.rmtree(p, ignore_errors=True)
            report.tmp_paths.append(p)
            continue
        try:
            with lock(layout, held[0], held[1], wait=False):
                report.tmp_paths.append(p)  # taking the lock put it back, or removed it
        except LockBusy as e:
            _leave(report, f"left {p}: {e.message}")
    return report


def clean(cfg: Config, request: Optional[CleanRequest] = None, confirm: Optional[Ask] = None,
          engine: Optional[Engine] = None) -> CleanReport:
    req = request or CleanRequest()
    if req.kind is not None and req.kind not in KINDS:
        raise UsageError(f"--kind {req.kind!r} is not a kind of artifact", f"choose one of: {', '.join(KINDS)}")
    layout = Layout(cfg.work_dir)
    ask: Ask = _would if req.dry_run else (lambda _question: True) if req.yes else (confirm or _ask)
    engine = engine or Engine.connect(cfg.work_dir)
    report = reap_orphans(engine, layout, dry=req.dry_run)  # first: it may put back an artifact a killed replace set aside
    _other_containers(engine, layout, req.all_owners, ask, report)
    # Planned before any artifact goes: the env manifests are what name the images.
    images = _image_plan(engine, layout, req.name, report) if req.images else []
    try:
        targets = _targets(layout, req.kind, req.name, report)
    except UsageError as e:
        if not req.dry_run:
            raise
        log.info(f"plan: would remove nothing: {e.message}")
        targets = []
    _delete(layout, targets, ask, report)
    _remove_images(engine, images, ask, report)
    if not (report.containers or report.tmp_paths or report.artifacts or report.images or report.left):
        log.info("nothing to clean")
    return report


def _would(question: str) -> bool:
    """A dry run's answer: it says what it was asked, and removes nothing."""
    log.info(f"plan: would {question.rstrip('?')}")
    return False


def _leave(report: CleanReport, line: str) -> None:
    log.info(line)
    report.left.append(line)


# ---------------------------------------------------------------- containers


def _other_containers(engine: Engine, layout: Layout, all_owners: bool, ask: Ask, report: CleanReport) -> None:
    """Containers whose leftover status cannot be proven from here (another host,
    another work dir, no owner label): named by count, removed only with --all-owners
    after listing them. Those of a run alive on this host are never touched."""
    host = socket.gethostname()
    others = [c for c in engine.labelled_containers() if c.verdict(layout.work_dir, host) == "unproven"]
    if not others:
        return
    if not all_owners:
        _leave(report, f"left {len(others)} container(s) not provably this work dir's leftovers (another host or work "
                       "dir, or no owner label): `hackback clean --all-owners` lists them and asks")
        return
    for c in others:
        log.info(f"    {c.name}: {c.state}, owner {c.owner or '(none)'}, work dir {c.work_dir or '(none)'}")
    if not ask(f"remove containers {', '.join(c.name for c in others)}?"):
        _leave(report, "no container removed")
        return
    for c in others:
        log.action(f"docker rm -f {c.name}")
        engine.remove_container(c.id)
        report.containers.append(c.name)


# ---------------------------------------------------------------- artifacts


def _targets(layout: Layout, kind: Optional[str], name: Optional[str], report: CleanReport) -> list[tuple[Kind, Path]]:
    """The artifact directories asked for that hold our manifest; those asked for
    without one are left, each with a line."""
    if kind is None and name is None:
        return []
    found: list[tuple[Kind, Path]] = []
    left = len(report.left)
    for k in KINDS:
        base = layout.work_dir / k
        if kind not in (None, k) or not base.is_dir():
            continue
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            if _wanted(k, d, name, report):
                found.append((k, d))
    if not found and len(report.left) == left:
        raise UsageError(f"no {kind or 'artifact'} named {name or '*'} under {layout.work_dir}",
                         "`hackback clean` alone reaps leftovers only")
    return found


def _wanted(kind: Kind, d: Path, name: Optional[str], report: CleanReport) -> bool:
    """Whether d is an artifact asked for. Runs, samplings and estimates match their
    own name or, by their manifest, the checkpoint's name they were made from (never
    a prefix of their name: X-other's runs start with X- too)."""
    maybe = name is None or d.name == name or (kind in BY_CHECKPOINT and d.name.startswith(f"{name}-"))
    try:
        manifest = Manifest.read(d)
    except ArtifactError as e:
        if maybe:
            _leave(report, f"left {d}: {e.message}")
        return False
    if manifest is None or manifest.kind != kind:
        if maybe:
            _leave(report, f"left {d}: it holds no hackback {kind} manifest.json")
        return False
    if name is None or d.name == name:
        return True
    return kind in BY_CHECKPOINT and _checkpoint_of(kind, manifest) == name


BY_CHECKPOINT: tuple[Kind, ...] = ("runs", "samplings", "estimates")  # named by more than their checkpoint's name


def _checkpoint_of(kind: Kind, manifest: Manifest) -> Optional[str]:
    try:
        if kind == "runs" and manifest.has("run"):
            return RunInfo.of(manifest).checkpoint.name
        if kind == "samplings" and manifest.has("sampling"):
            return SamplingInfo.of(manifest).checkpoint.name
        if kind == "estimates" and manifest.has("estimate"):
            return EstimateInfo.of(manifest).sampled
    except ArtifactError:
        pass  # not one this hackback can read: not matched by name
    return None


def _delete(layout: Layout, targets: list[tuple[Kind, Path]], ask: Ask, report: CleanReport) -> None:
    if not targets:
        return
    if not ask(f"delete {', '.join(str(d) for _k, d in targets)}?"):
        _leave(report, "no artifact deleted")
        return
    for kind, d in targets:
        try:
            with _locks(layout, kind, d.name):
                if d.is_dir():  # else another clean was quicker
                    _remove_tree(layout, kind, d)
                    report.artifacts.append(d)
        except LockBusy as e:
            _leave(report, f"left {d}: {e.message}")
        except OSError as e:  # e.g. a file a root container left: one line, the rest still cleaned
            _leave(report, f"left part of {d}: could not delete {e.filename} ({e.strerror})")


@contextlib.contextmanager
def _locks(layout: Layout, kind: Kind, name: str) -> Iterator[None]:
    """The artifact's lock and its parts' (env-<name>.<part>: a step building one
    part is writing the artifact too), none waited for."""
    prefix = f"{kind}-{name}."
    parts = sorted(p.name[len(prefix):-len(".lock")] for p in layout.lock_dir.glob(f"{glob.escape(prefix)}*.lock"))
    with contextlib.ExitStack() as stack:
        for n in [name, *(f"{name}.{part}" for part in parts)]:
            stack.enter_context(lock(layout, kind, n, wait=False))
        yield


def _remove_tree(layout: Layout, kind: Kind, d: Path) -> None:
    # Renamed out of the tree first: the artifact vanishes at once, and a clean
    # killed halfway leaves a .tmp entry the next run reaps, never half an artifact.
    log.action(f"rm -rf {d}")
    layout.tmp_dir.mkdir(parents=True, exist_ok=True)
    doomed = layout.tmp_dir / tmp_name(f"del-{kind}-{d.name}")
    try:
        os.rename(d, doomed)
    except OSError:
        doomed = d  # on another file system: delete it in place
    shutil.rmtree(doomed)


# ---------------------------------------------------------------- images


def _image_plan(engine: Engine, layout: Layout, name: Optional[str], report: CleanReport) -> list[str]:
    """The env images this work dir's env manifests (env/<name>'s with --name) name,
    that the engine still has as we built them and that no container uses."""
    plan: list[str] = []
    for env_dir, ref, built_id in _env_images(layout, name, report):
        why = _keep_image(engine, ref, built_id)
        if why:
            _leave(report, f"left image {ref} ({env_dir}): {why}")
        elif ref not in plan:
            plan.append(ref)
    return plan


def _env_images(layout: Layout, name: Optional[str], report: CleanReport) -> list[tuple[Path, str, str]]:
    base = layout.work_dir / "env"
    out = []
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        if not d.is_dir() or name not in (None, d.name):
            continue
        try:
            manifest = Manifest.read(d)
        except ArtifactError as e:
            _leave(report, f"left the env image of {d}: {e.message}")
            continue
        image = Gem5Image.in_env(manifest) if manifest is not None and manifest.kind == "env" else None
        if image is not None and image.ref:
            out.append((d, image.ref, image.id))
    return out


def _keep_image(engine: Engine, ref: str, built_id: str) -> str:
    """Why the image must stay, or "" when it may go."""
    current = engine.image_id(ref)
    if current is None:
        return "not on this Docker engine"
    if built_id and current != built_id:
        return "the tag now names another image than the one this work dir built"
    if engine.image_labels(ref).get(LABEL) != "1":
        return "not labelled as hackback's"
    users = engine.containers_using(current)
    return f"in use by container(s) {', '.join(users)}" if users else ""


def _remove_images(engine: Engine, plan: list[str], ask: Ask, report: CleanReport) -> None:
    if not plan:
        return
    if not ask(f"remove Docker images {', '.join(plan)}?"):
        _leave(report, "no image removed")
        return
    for ref in plan:
        log.action(f"docker rmi {ref}")
        try:
            engine.remove_image(ref, force=False)  # not forced: the engine refuses one a container took up meanwhile
            report.images.append(ref)
        except DockerFailure as e:
            _leave(report, f"left image {ref}: {e.message}")


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        raise UsageError(f"refusing to {question[:-1]} without a terminal to ask", "add --yes to confirm")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


class CleanStep(Step):
    """`hackback clean`: reaps what killed runs left, removes what it is asked to (asking first)."""

    name = "clean"
    builds = False

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> CleanReport:
        asked = CleanRequest(kind=req.kind, name=req.artifact, images=req.images, all_owners=req.all_owners, yes=req.yes,
                             dry_run=ctx.layout.dry_run)
        return clean(ctx.cfg, asked, engine=ctx.engine)


CLEAN = CleanStep()
