"""`hackback suite npb` (or gapbs): a benchmark suite, or the members asked
for, from one checkpoint. Each member is built (hackback.steps.bench: static, for
gem5 and natively, verified natively) and run as its own restore, its binary
(and any --payload) in the guest's working directory: a batch of restores
that every restore option applies to (CPU, caches, --switch-from to measure
only the ROI on the detailed CPU, -j N, --on slurm). A member's run passes on
its own verdict only (both suites exit 0 when they fail) and on gem5's work
items (its ROI began and ended); a failing one fails the batch in one line
naming the benchmark, with its run kept.

With --save-checkpoint NAME (one member), the checkpoint is saved at the
member's own m5 workbegin: a restore of it resumes inside the benchmark, at
its region of interest, and reads no new script (`hackback suite --checkpoint
NAME`, or `hackback restore --checkpoint NAME`).

`hackback build npb` builds the members alone (each verified natively, the
same artifacts `hackback suite` runs): no image, kernel or checkpoint needed,
so a larger class can be proven to build and verify before hours in gem5."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from . import bench, cluster
from ..base import log
from ..services import payload as payload_
from . import restore
from ..store.layout import Layout, make_dir
from ..base.config import Config
from ..base.config import SuiteSource as SourceConfig
from ..protocol.context import StepContext
from ..base.errors import UsageError
from ..store.records import CheckpointArtifact, EnvArtifact, Member, RunResult
from ..protocol.step import Request, Step, check_files
from ..services.suite_def import SuiteDef


@dataclass(frozen=True)
class Asked:
    """What the task hands over beyond the config: the suite's source, and the restore's kernel and image."""

    source: Optional[str] = None
    sha256: Optional[str] = None
    kernel: Optional[Path] = None
    disk: Optional[Path] = None
    force: bool = False


def chosen(cfg: Config, asked: Asked) -> tuple[SuiteDef, tuple[str, ...], str, SourceConfig]:
    """The suite, members, input and source asked for, each checked (before anything builds)."""
    s = cfg.suite
    if not s.name:
        raise UsageError("no suite named", "name one, npb or gapbs, after the task (hackback suite npb), or set suite.name")
    defn = SuiteDef.load(s.name)
    configured: SourceConfig = getattr(s, defn.name)
    given = SourceConfig(asked.source or configured.source, asked.sha256 or configured.sha256)
    if "://" in given.source and not given.sha256:
        raise UsageError(f"the {defn.name} source is a URL ({given.source}) without its sha256",
                         f"give --sha256 (or suite.{defn.name}.sha256): a download is checked against it")
    return defn, defn.chosen(s.members), defn.input_of(s.input), given


def check(ctx: StepContext, asked: Asked) -> None:
    """Everything that can be refused before the steps before this one build:
    the suite and its members and input, its source (there, the suite, the
    tarball its sha256 names), one member for --save-checkpoint."""
    defn, members, _input, given = chosen(ctx.cfg, asked)
    if ctx.cfg.restore.save_checkpoint and len(members) != 1:
        raise UsageError(f"--save-checkpoint saves one member at its region of interest, not {len(members)}",
                         "name the member alone: --members NAME")
    check_source(ctx, defn, given)


def check_source(ctx: StepContext, defn: SuiteDef, given: SourceConfig) -> None:
    """A source is given, and a local one is there and is the suite (and the tarball its sha256 names)."""
    if not given.source:
        raise UsageError(f"no source for {defn.name}: give --source PATH|URL (or suite.{defn.name}.source)",
                         f"a tarball or tree of {defn.title}; its home: {defn.home}")
    if "://" not in given.source:
        bench.check_local(ctx, defn, given)


def run(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact, asked: Asked) -> list[RunResult]:
    if cpt.info.resumes_inside:  # inside a member's region of interest already: its one run, nothing to build
        return _restores(ctx, env, cpt, [], asked)
    defn, members, input, given = chosen(ctx.cfg, asked)
    threads = ctx.cfg.suite.threads or cpt.info.board.cores
    src = bench.source(ctx, defn, given)
    extra = [Path(d).expanduser() for d in ctx.cfg.restore.payload]  # the user's own (an mg.input, say)
    works = []
    for name in members:
        member = Member(defn.name, name, input, threads, ctx.cfg.suite.trials)
        built = bench.ensure(ctx, defn, src, member)
        brought = payload_.collect([built.payload_dir, *extra], ctx.cfg.restore.payload_max_bytes)
        works.append(restore.Work(script_of(ctx.layout, defn, member), brought, member))
    if ctx.cfg.restore.save_checkpoint:  # at the member's own ROI: benchmarks call no hackback-checkpoint
        ctx = ctx.with_config(dataclasses.replace(ctx.cfg, restore=dataclasses.replace(ctx.cfg.restore, save_at="workbegin")))
    results = _restores(ctx, env, cpt, works, asked)
    _compare(results, ctx.layout, defn)
    return results


def build_only(ctx: StepContext, asked: Asked) -> list[bench.BenchArtifact]:
    """The members asked for, built and verified natively, nothing run in gem5: one
    thread unless --threads (no checkpoint says how many cores there are)."""
    defn, members, input, given = chosen(ctx.cfg, asked)
    threads = ctx.cfg.suite.threads or 1
    src = bench.source(ctx, defn, given)
    built = []
    for name in members:
        b = bench.ensure(ctx, defn, src, Member(defn.name, name, input, threads, ctx.cfg.suite.trials), force=asked.force)
        count = (f"native ROI {b.native_roi_insts:,} instructions (callgrind)" if b.native_roi_insts is not None
                 else "ROI not counted (suite.native_counts = false)")
        log.info(f"{b.member.label}: natively \"{b.verdict.said.strip()}\"; {count}; {b.binary}")
        built.append(b)
    return built


def _restores(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact, works: Sequence[restore.Work],
              asked: Asked) -> list[RunResult]:
    return cluster.restore_runs(ctx, env, cpt, works, asked.kernel, asked.disk, force=asked.force)


def script_of(layout: Layout, defn: SuiteDef, m: Member) -> Path:
    """The member's restore script, under <work_dir>/suites/scripts/ (written when its text changes)."""
    path = layout.work_dir / "suites" / "scripts" / f"{bench.name_of(m)}.sh"
    text = defn.script(m)
    if layout.dry_run:
        return path if path.is_file() else _written(path, text, dry=True)
    return path if path.is_file() and path.read_text() == text else _written(path, text)


def _written(path: Path, text: str, dry: bool = False) -> Path:
    if dry:  # a dry run writes nothing: the script is shown instead
        log.info(f"plan:   {path.name} would hold: {text.splitlines()[-1]}")
        return path
    make_dir(path.parent, "the suites' restore scripts")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def _compare(results: Sequence[RunResult], layout: Layout, defn: SuiteDef) -> None:
    """Each member's ROI instructions in gem5 beside the native count of the same binary: the sanity figure."""
    for r in results:
        if r.member is None or r.roi is None:
            continue
        directory = layout.artifact_dir("benchmarks", bench.name_of(r.member))
        native = bench.read(directory, defn).native_roi_insts if directory.is_dir() else None
        gem5 = r.roi.figures.get("insts")
        if native and gem5:
            # With threads, OpenMP's waiting threads spin for as long as the others take: a count of timing, not work.
            why = ("the kernel's share: interrupts, page faults, the console" if r.member.threads == 1 else
                   f"{r.member.threads} threads spin-wait for each other, natively and in gem5 alike: not comparable")
            log.info(f"{r.member.label}: ROI {gem5:,.0f} instructions in gem5, {native:,} natively (callgrind): "
                     f"{(gem5 - native) / native:+.2%} ({why})")


class SuiteStep(Step):
    name = "suite"
    needs = ("env", "checkpoint")

    def check(self, ctx: StepContext, req: Request) -> None:
        check(ctx, asked_of(req))
        restore.check_payload(ctx.cfg)
        check_files(req)
        cluster.check_executor(ctx.cfg)

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> list[RunResult]:
        return run(ctx, deps["env"], deps["checkpoint"], asked_of(req))


def asked_of(req: Request) -> Asked:
    return Asked(req.source, req.sha256, req.kernel, req.disk, req.forced("suite"))


class BuildStep(Step):
    """`hackback build`: the suite's members built and verified natively, run nowhere else."""

    name = "build"
    needs = ()

    def check(self, ctx: StepContext, req: Request) -> None:
        defn, _members, _input, given = chosen(ctx.cfg, asked_of(req))
        check_source(ctx, defn, given)

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> list[bench.BenchArtifact]:
        return build_only(ctx, Asked(req.source, req.sha256, force=req.forced("build")))


SUITE = SuiteStep()
BUILD = BuildStep()
