"""Which step needs which, like make: asking for a restore builds whatever is
missing (env, image, kernel, checkpoint) and reuses whatever is up to date.
Each step decides for itself whether it is a no-op (by its manifest), what it
refuses and what can be handed over for it (hackback.protocol.step's protocol); this is
the only module that knows the order, and it knows no step's rules. A step
whose artifact was handed over (--m5, --checkpoint) is not built, and neither
is what only it needed. Every task is one Request through perform().
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from .steps import checkpoint, clean, cluster, env, export, image, kernel, report, sample, suite
from .base import config, log
from .store.layout import WouldBuild
from .protocol.context import StepContext
from .protocol.step import Request as Request
from .protocol.step import Step

STEPS: dict[str, Step] = {
    s.name: s
    for s in (env.M5, env.ENV, image.IMAGE, image.IMAGE_CHECK, kernel.KERNEL, checkpoint.CHECKPOINT, cluster.RESTORE,
              suite.SUITE, suite.BUILD, sample.SAMPLE, export.EXPORT, checkpoint.CHECKPOINTS, report.REPORT, clean.CLEAN)
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
    for name in plan(req.target, steps):
        value = steps[name].given(ctx, req)
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
        results[name] = steps[name].ensure(ctx, req, {d: results[d] for d in steps[name].needs})
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
            results[name] = steps[name].ensure(ctx, req, {d: results[d] for d in steps[name].needs})
            log.info(f"plan: {name:<10} up to date")
        except WouldBuild as e:
            log.info(f"plan: {name:<10} would {steps[name].verb} {e.what}: {e.why}")
    return results


def open_context(flags: Mapping[str, Any], config_file: Optional[str] = None, dry_run: bool = False) -> StepContext:
    """The task's context: its config, and its engine labelling every container with its work dir."""
    cfg = config.load(flags=flags, user_file=Path(config_file) if config_file else None)
    return StepContext.open(cfg, dry_run=dry_run)


def perform(req: Request, steps: Mapping[str, Step] = STEPS) -> Any:
    """Carry out one task's request: check what can be checked without building,
    reap this work dir's leftovers, then run (or plan) the steps. A dry run is dry
    from the start: its checks read, and nothing is written or started."""
    step = steps[req.target]
    step.refuse(req)
    ctx = open_context(req.flags, req.config_file, req.dry_run)
    step.check(ctx, req)
    if not step.builds:  # it reads (or removes what it is asked to): alone, and its own dry run
        return step.ensure(ctx, req, {})
    if req.dry_run:
        return dry_run_report(ctx, req, steps)
    clean.reap_orphans(ctx.engine, ctx.layout)
    return run(ctx, req, steps)
