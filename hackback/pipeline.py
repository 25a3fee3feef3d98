"""Which step needs which, like make: asking for a restore builds whatever is
missing (env, image, kernel, checkpoint) and reuses whatever is up to date.
Each step function decides for itself whether it is a no-op (by its manifest)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import log
from .artifacts import WouldBuild, dry_run
from .config import Config

# A builder takes the config and the results of the steps it needs.
Builder = Callable[[Config, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Step:
    name: str
    needs: tuple[str, ...]


STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step("m5", ()),
        Step("env", ()),  # builds m5 too
        Step("image", ("m5",)),
        Step("kernel", ()),
        Step("checkpoint", ("env", "image", "kernel")),
        Step("restore", ("env", "checkpoint")),
    )
}


def plan(target: str, steps: Mapping[str, Step] = STEPS) -> list[str]:
    """The steps to bring `target` up to date, dependencies first, each once."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise AssertionError(f"step cycle: {' -> '.join(path + (name,))}")
        if name in order:
            return
        for dep in steps[name].needs:
            visit(dep, path + (name,))
        order.append(name)

    visit(target, ())
    return order


def run(target: str, cfg: Config, builders: Mapping[str, Builder], steps: Mapping[str, Step] = STEPS) -> Any:
    order = plan(target, steps)
    results: dict[str, Any] = {}
    for name in order:
        results[name] = builders[name](cfg, {d: results[d] for d in steps[name].needs})
    return results[target]


def dry_run_report(target: str, cfg: Config, builders: Mapping[str, Builder],
                   steps: Mapping[str, Step] = STEPS) -> dict[str, Any]:
    """What `target` would build, and why, building nothing: each step is asked
    as a real run would ask it, and stops where it would start building. A step
    after one that would be built would be built (or rerun) too. The results of
    the steps that are up to date, by name."""
    results: dict[str, Any] = {}
    with dry_run():
        for name in plan(target, steps):
            behind = [d for d in steps[name].needs if d not in results]
            if behind:
                log.info(f"plan: {name:<10} would be made after {', '.join(behind)} (it needs what they make)")
                continue
            try:
                results[name] = builders[name](cfg, {d: results[d] for d in steps[name].needs})
                log.info(f"plan: {name:<10} up to date")
            except WouldBuild as e:
                log.info(f"plan: {name:<10} would build {e.what}: {e.why}")
    return results
