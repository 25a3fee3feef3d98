"""Which step needs which, like make: asking for a restore builds whatever is
missing (env, image, kernel, checkpoint) and reuses whatever is up to date.
Each step decides for itself whether it is a no-op (by its manifest); this is
the only module that knows the order. A step whose artifact was handed over
(--m5, --checkpoint) is not built, and neither is what only it needed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from . import checkpoint, clean, cluster, config, env, export, image, kernel, log, report, restore, sample, suite
from .artifacts import WouldBuild
from .context import StepContext
from .errors import UsageError
from .records import CheckpointArtifact


@dataclass(frozen=True)
class Request:
    """One task as the user asked for it: the config layers' flags, and what is
    handed over instead of being built or found."""

    target: str
    flags: Mapping[str, Any] = field(default_factory=dict)  # dotted config keys; None = not given
    config_file: Optional[str] = None
    force: bool = False  # reaches only the target step, never its dependencies
    dry_run: bool = False
    scripts: tuple[str, ...] = ()
    checkpoint: Optional[str] = None  # restore this one (a name or a directory) instead of checkpoints/<name>
    kernel: Optional[Path] = None  # checked against the checkpoint's, then used
    disk: Optional[Path] = None
    check: Optional[Path | bool] = None  # image --check [PATH]
    resource_dir: Optional[Path] = None  # export: a gem5 resource directory to seed
    source: Optional[str] = None  # suite: its tarball, tree or URL (instead of suite.<name>.source)
    sha256: Optional[str] = None  # ... and that tarball's sha256


# A builder takes the context, the request and the results of the steps it needs.
Builder = Callable[[StepContext, Request, Mapping[str, Any]], Any]
# What was handed over for a step instead of building it (None: build it).
Given = Callable[[StepContext, Request], Any]


@dataclass(frozen=True)
class Step:
    name: str
    needs: tuple[str, ...]
    build: Optional[Builder] = None
    given: Optional[Given] = None


def _forced(req: Request, step: str) -> bool:
    return req.force and req.target == step


def _given_checkpoint(ctx: StepContext, req: Request) -> Optional[CheckpointArtifact]:
    # A restore takes the checkpoint as it was made (memory, cores, kernel, image):
    # never re-derived from today's config, so a plain restore after
    # `hackback checkpoint --cores 2` uses that 2-core checkpoint.
    if req.checkpoint is not None:
        return checkpoint.find(ctx.layout, req.checkpoint)
    return checkpoint.existing(ctx.cfg) if req.target in ("restore", "export", "suite", "sample") else None


def _asked(req: Request) -> suite.Asked:
    return suite.Asked(req.source, req.sha256, req.kernel, req.disk, _forced(req, "suite"))


def _restore(ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> Any:
    # A checkpoint saved inside a script's region of interest resumes there: no script is read.
    scripts = restore.scripts_from(req.scripts) if req.scripts or not deps["checkpoint"].info.resumes_inside else []
    if ctx.cfg.restore.on == "slurm":
        return cluster.submit(ctx, deps["env"], deps["checkpoint"], scripts, req.kernel, req.disk, force=_forced(req, "restore"))
    return restore.restore(ctx, deps["env"], deps["checkpoint"], scripts, req.kernel, req.disk, force=_forced(req, "restore"))


STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        # An explicit image.m5 (--m5) stands in for the one `hackback env` builds.
        Step("m5", (), lambda ctx, req, deps: env.ensure_m5(ctx, force=_forced(req, "m5")).m5,
             lambda ctx, req: ctx.cfg.image.m5),
        Step("env", (), lambda ctx, req, deps: env.ensure(ctx, force=_forced(req, "env"))),  # builds m5 too
        Step("image", ("m5",), lambda ctx, req, deps: image.ensure(ctx, deps["m5"], force=_forced(req, "image"))),
        Step("kernel", (), lambda ctx, req, deps: kernel.ensure(ctx, force=_forced(req, "kernel"))),
        Step("checkpoint", ("env", "image", "kernel"),
             lambda ctx, req, deps: checkpoint.ensure(ctx, deps["env"], deps["image"], deps["kernel"],
                                                      force=_forced(req, "checkpoint")),
             _given_checkpoint),
        Step("restore", ("env", "checkpoint"), _restore),
        Step("suite", ("env", "checkpoint"),
             lambda ctx, req, deps: suite.run(ctx, deps["env"], deps["checkpoint"], _asked(req))),
        Step("sample", ("env", "checkpoint"), lambda ctx, req, deps: sample.run(ctx, deps["env"], deps["checkpoint"])),
        Step("export", ("checkpoint",),
             lambda ctx, req, deps: export.export(ctx, deps["checkpoint"], req.resource_dir, force=_forced(req, "export"))),
    )
}


def plan(target: str, steps: Mapping[str, Step] = STEPS, given: Mapping[str, Any] = {}) -> list[str]:
    """The steps to bring `target` up to date, dependencies first, each once; a
    step in `given` is taken as it is, and what only it needed is left out."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise AssertionError(f"step cycle: {' -> '.join(path + (name,))}")
        if name in order:
            return
        if name not in given:
            for dep in steps[name].needs:
                visit(dep, path + (name,))
        order.append(name)

    visit(target, ())
    return order


def handed_over(ctx: StepContext, req: Request, steps: Mapping[str, Step] = STEPS) -> dict[str, Any]:
    """The steps' artifacts the request hands over (or that a restore finds), by name."""
    out = {}
    for name, step in steps.items():
        value = step.given(ctx, req) if step.given else None
        if value is not None:
            out[name] = value
    return out


def run(ctx: StepContext, req: Request, steps: Mapping[str, Step] = STEPS) -> Any:
    given = handed_over(ctx, req, steps)
    results: dict[str, Any] = {}
    for name in plan(req.target, steps, given):
        if name in given:
            results[name] = given[name]
            continue
        build = steps[name].build
        assert build is not None, f"step {name} has no builder"
        results[name] = build(ctx, req, {d: results[d] for d in steps[name].needs})
    return results[req.target]


def dry_run_report(ctx: StepContext, req: Request, steps: Mapping[str, Step] = STEPS) -> dict[str, Any]:
    """What the request would build, and why, building nothing: each step is asked
    as a real run would ask it, and stops where it would start building. A step
    after one that would be built would be built (or rerun) too. The results of
    the steps that are up to date, by name."""
    assert ctx.layout.dry_run, "a dry run's context is opened dry"
    results: dict[str, Any] = {}
    given = handed_over(ctx, req, steps)
    for name in plan(req.target, steps, given):
        if name in given:
            results[name] = given[name]
            log.info(f"plan: {name:<10} taken as it is ({getattr(given[name], 'directory', given[name])})")
            continue
        behind = [d for d in steps[name].needs if d not in results]
        if behind:
            log.info(f"plan: {name:<10} would be made after {', '.join(behind)} (it needs what they make)")
            continue
        try:
            build = steps[name].build
            assert build is not None
            results[name] = build(ctx, req, {d: results[d] for d in steps[name].needs})
            log.info(f"plan: {name:<10} up to date")
        except WouldBuild as e:
            log.info(f"plan: {name:<10} would {'run' if name == 'restore' else 'build'} {e.what}: {e.why}")
    return results


def open_context(flags: Mapping[str, Any], config_file: Optional[str] = None, dry_run: bool = False) -> StepContext:
    """The task's context: its config, and its engine labelling every container with its work dir."""
    cfg = config.load(flags=flags, user_file=Path(config_file) if config_file else None)
    return StepContext.open(cfg, dry_run=dry_run)


def perform(req: Request) -> Any:
    """Carry out one task's request: check what can be checked without building,
    reap this work dir's leftovers, then run (or plan) the steps. A dry run is dry
    from the start: its checks read, and nothing is written or started."""
    if req.target == "restore" and req.scripts:
        restore.scripts_from(req.scripts)  # a bad script is refused before the config is even read
    ctx = open_context(req.flags, req.config_file, req.dry_run)
    if req.target == "restore":
        if not req.scripts:
            _resumes_inside_a_script(ctx, req)
        restore.check_payload(ctx.cfg)
    if req.target == "suite":
        suite.check(ctx, _asked(req))
        restore.check_payload(ctx.cfg)
    if req.target == "sample":  # from a checkpoint at a ROI's start, single-core: refused before anything builds
        found = checkpoint.find(ctx.layout, req.checkpoint) if req.checkpoint else checkpoint.existing(ctx.cfg)
        if found is None:
            raise UsageError("no checkpoint to sample from", "name one saved at a region of interest: --checkpoint NAME")
        sample.check(found)
    for what, path in (("--kernel", req.kernel), ("--image", req.disk)):
        # Before the env step can start a gem5 build.
        if path is not None and not path.is_file():
            raise UsageError(f"{what} {path} does not exist", f"give the file the checkpoint was taken with, or leave {what} off")
    if req.check:
        return image.check_existing(ctx, None if req.check is True else Path(req.check), ctx.cfg.image.m5)
    if req.dry_run:
        return dry_run_report(ctx, req)
    clean.reap_orphans(ctx.engine, ctx.layout)
    return run(ctx, req)


def _resumes_inside_a_script(ctx: StepContext, req: Request) -> None:
    """A restore without --script is one of a checkpoint saved inside its script's region of interest; any other is refused."""
    cpt = checkpoint.find(ctx.layout, req.checkpoint) if req.checkpoint else checkpoint.existing(ctx.cfg)
    if cpt is None or not cpt.info.resumes_inside:
        restore.scripts_from(())  # says: no script given


def list_checkpoints(flags: Mapping[str, Any], config_file: Optional[str]) -> list[str]:
    ctx = open_context(flags, config_file)
    lines = checkpoint.tree(ctx.layout)
    for line in lines or [f"no checkpoints in {ctx.layout.work_dir} yet (take one with `hackback checkpoint`)"]:
        print(line)
    return lines


def make_report(flags: Mapping[str, Any], config_file: Optional[str], checkpoint_name: Optional[str], script: Optional[str],
                cpu: Optional[str], out: Optional[Path], dry: bool = False) -> report.Report:
    ctx = open_context(flags, config_file)
    # --checkpoint and --script take what they take on restore (a name or a directory; a file), matched by name.
    return report.report(ctx.layout, report.Selection(checkpoint.name_of(ctx.layout, checkpoint_name) if checkpoint_name else None,
                                                      Path(script).name if script else None, cpu), out, dry)


def clean_up(flags: Mapping[str, Any], config_file: Optional[str], request: clean.CleanRequest) -> Any:
    ctx = open_context(flags, config_file)
    return clean.clean(ctx.cfg, request, engine=None)
