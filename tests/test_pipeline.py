"""The make-like order of steps. The steps here are test doubles that only
record calls: this checks our own orchestration, not any step."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import pytest

from hackback import pipeline
from hackback.protocol.step import Request, Step


class DoubleStep(Step):
    """A test double of a step: the shipped step's name and needs, an ensure that
    only records its call (or the one given), and what the test hands over."""

    def __init__(self, name: str, needs: tuple[str, ...], ensure: Optional[Callable[..., Any]] = None,
                 handed: Any = None) -> None:
        self.name, self.needs = name, needs  # type: ignore[misc]
        self._ensure, self._handed = ensure, handed

    def given(self, ctx: Any, req: Request) -> Any:
        return self._handed

    def ensure(self, ctx: Any, req: Request, deps: Mapping[str, Any]) -> Any:
        assert self._ensure is not None, f"{self.name} has no ensure in this test"
        return self._ensure(ctx, req, deps)


ALL_BUILT = {name: DoubleStep(s.name, s.needs) for name, s in pipeline.STEPS.items()}


def recording_doubles(calls: list[str], given: Mapping[str, Any] = {}) -> dict[str, Step]:
    """The shipped table's order with test-double steps that only record their calls."""
    def make(name: str) -> Callable[..., str]:
        def double(ctx: Any, req: Request, deps: Mapping[str, Any]) -> str:
            calls.append(name)
            return f"{name}({','.join(sorted(deps.values()))})"

        return double

    return {name: DoubleStep(name, s.needs, make(name), given.get(name)) for name, s in ALL_BUILT.items()}


def test_restore_plans_every_step_it_needs_dependencies_first() -> None:
    order = pipeline.plan("restore", ALL_BUILT)
    assert order[-1] == "restore" and order[-2] == "checkpoint"
    assert set(order) == {"m5", "env", "image", "kernel", "checkpoint", "restore"}
    for name in order:
        for dep in ALL_BUILT[name].needs:
            assert order.index(dep) < order.index(name)


def test_each_step_runs_once_and_gets_its_dependencies_results() -> None:
    calls: list[str] = []
    result = pipeline.run(None, Request(target="checkpoint"), recording_doubles(calls))  # type: ignore[arg-type]
    assert sorted(calls) == sorted(set(calls))
    assert result == "checkpoint(env(),image(m5()),kernel())"


def test_a_handed_over_artifact_is_not_built_nor_what_only_it_needed() -> None:
    calls: list[str] = []
    result = pipeline.run(None, Request(target="restore"), recording_doubles(calls, {"checkpoint": "given-cpt"}))  # type: ignore[arg-type]
    assert result == "restore(env(),given-cpt)" and sorted(calls) == ["env", "restore"]
    calls.clear()
    assert pipeline.run(None, Request(target="image"), recording_doubles(calls, {"m5": "my-m5"})) == "image(my-m5)"  # type: ignore[arg-type]
    assert calls == ["image"]


def test_shipped_table_has_every_step_built_and_restore_needs_everything() -> None:
    assert pipeline.plan("env") == ["env"]
    assert pipeline.plan("image") == ["m5", "image"]
    assert pipeline.plan("restore") == ["env", "m5", "image", "kernel", "checkpoint", "restore"]


def test_every_task_is_a_step_of_the_one_table_and_every_step_implements_the_protocol() -> None:
    from hackback.tasks import TASKS

    assert {t.name for t in TASKS} | {"m5", "image-check"} == set(pipeline.STEPS)
    for s in pipeline.STEPS.values():
        assert type(s).ensure is not Step.ensure, f"{s.name} has no ensure"
        assert all(d in pipeline.STEPS for d in s.needs), s.name
    # The reading tasks have no dependencies and build nothing; every building one does.
    assert {s.name for s in pipeline.STEPS.values() if not s.builds} == {"clean", "checkpoints", "report", "image-check"}
    assert all(not s.needs for s in pipeline.STEPS.values() if not s.builds)


def test_cycles_are_caught() -> None:
    steps: dict[str, Step] = {"a": DoubleStep("a", ("b",)), "b": DoubleStep("b", ("a",))}
    with pytest.raises(AssertionError, match="cycle"):
        pipeline.plan("a", steps)


def test_a_dry_run_says_what_would_be_built_and_why_and_builds_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    from hackback.base import log
    from hackback.store.build import Target, build_unless_fresh
    from hackback.store.manifest import write_manifest

    printed = io.StringIO()
    monkeypatch.setattr(log, "_out", printed)
    from hackback.store.layout import Layout, WouldBuild
    from hackback.store.manifest import Manifest

    calls: list[str] = []
    doubles = recording_doubles(calls)

    def image_is_stale(ctx: Any, req: Request, deps: Mapping[str, Any]) -> str:
        # What a real step does: ask build_unless_fresh, which in a dry run says why instead of building.
        m = Manifest("images", "default")
        m.set_part("image", {"m5_sha256": "old"}, {}, {})
        d = ctx.layout.artifact_dir("images", "default")
        d.mkdir(parents=True)
        write_manifest(d, m)
        out = build_unless_fresh(ctx.layout, Target("images", "default", "image", "image 'default'"),
                                           {"m5_sha256": "new"}, False, lambda tmp, man: calls.append("BUILT"))
        return str(out)

    doubles["image"] = DoubleStep("image", ("m5",), image_is_stale)
    import types

    dry_ctx = types.SimpleNamespace(layout=Layout(tmp_path, dry_run=True))  # a test double of the task's context: its layout only
    done = pipeline.dry_run_report(dry_ctx, Request(target="checkpoint"), doubles)  # type: ignore[arg-type]
    out = printed.getvalue()
    assert "plan: image      would build image 'default': its inputs changed (m5_sha256)" in out
    assert "plan: checkpoint would be made after image" in out
    assert "plan: kernel     up to date" in out and "BUILT" not in calls and "checkpoint" not in calls
    assert set(done) == {"env", "m5", "kernel"}
    # The dry run is the context's, not the process's: another task's layout builds.
    with pytest.raises(WouldBuild):
        Layout(tmp_path, dry_run=True).would_build("x", "y")
    assert Layout(tmp_path).would_build("x", "y") is None
