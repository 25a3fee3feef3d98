"""`hackback restore --script FILE`: restore the checkpoint, hand the script to
the guest through `m5 readfile`, collect what the run produced.

Each run gets <work>/runs/<run-id>/ (stats.txt, config.ini, config.json, the
guest's console.log, a copy of the script, hackback-result.json, gem5.log, a
manifest). The checkpoint, kernel and image are mounted read-only, and before
anything runs they are checked against what the checkpoint was taken with:
a different kernel or image, or a gem5 of another release or checkpoint
version tags, is refused; a gem5 rebuilt from a modified tree of the same
release (a researcher's own CPU model) is allowed with a warning and recorded.
Several scripts run in parallel (restore.jobs), each in its own container.
"""
from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..services import gem5run, stats
from ..base import log
from ..services import payload as payload_
from ..store.build import Target, build_unless_fresh, keep_failed
from ..store.hashes import HashCache, digest_of, file_record
from ..store.layout import Kind, Layout
from ..store.manifest import Manifest
from ..base.config import Config
from ..protocol.context import StepContext
from ..base.engine import Engine
from ..base.ownership import owner_label
from ..store.records import (GEM5_KERNEL, Board, CheckpointArtifact, CheckpointInfo, EnvArtifact, FileRef, Gem5Result,
                             MadeBy, Parent, Member, PayloadRef, RunInfo, RunRecord, RunResult, ScriptEnd, ScriptStatus,
                             Verdict)
from ..services.suite_def import SuiteDef
from ..base.errors import (ArtifactError, Gem5RunFailed, HackbackError, MismatchError, ResultsLost, ScriptFailed,
                           UsageError, VerificationFailed)

SCRIPT_EXIT = gem5run.SCRIPT_EXIT
# Endings with no script status that are normal: the script's own m5 exit, a sample's measured count.
ENDED_INSIDE = (gem5run.CONTRACT.causes["exit"], gem5run.CONTRACT.causes["measured"])
MAX_SCRIPT_BYTES = 1 << 20
READFILE = "readfile.bin"  # what the guest reads when a payload comes with the script


def scripts_from(paths: Sequence[str]) -> list[Path]:
    """--script values (files, or directories of *.rcS/*.sh), each checked to be a
    non-empty text script before anything runs."""
    out: list[Path] = []
    if not paths:
        raise UsageError("no script given", "name one with --script FILE (or a directory of scripts)")
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix in (".rcS", ".sh"))
            if not found:
                raise UsageError(f"directory {p} holds no *.rcS or *.sh scripts", "put scripts in it, or name files")
            out += found
        else:
            out.append(p)
    for p in out:
        check_script(p)
    if len({p.resolve() for p in out}) != len(out):
        raise UsageError("the same script is named twice", "name each script once")
    return out


def check_script(p: Path) -> None:
    if not p.is_file():
        raise UsageError(f"script {p} does not exist", "give the path of a shell script for the guest to run")
    data = p.read_bytes()
    if not data.strip():
        raise UsageError(f"script {p} is empty", "the guest would have nothing to run; write the commands to run in it")
    if len(data) > MAX_SCRIPT_BYTES:
        raise UsageError(f"script {p} is {len(data) / 2**20:.2f} MiB, over the {MAX_SCRIPT_BYTES >> 20} MiB limit for a restore script",
                         "keep the script small and put large files and data in the image (hackback image)")
    if b"\0" in data:
        raise UsageError(f"script {p} is not a text script (binary data)", "give a shell script; copy binaries into the image instead")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"script {p} is not a text script (not UTF-8)", "save it as UTF-8 text") from None
    if b"\r\n" in data:
        # The guest's shell would read "cmd\r" and fail with status 127 after a whole restore.
        raise UsageError(f"script {p} has Windows (CRLF) line endings", f"convert it: sed -i 's/\\r$//' {p}")


def verify(cpt: CheckpointArtifact, env: EnvArtifact, kernel: Path, disk: Path, hashes: HashCache) -> list[str]:
    """Refuse inputs that differ from the checkpoint's; return warnings for allowed differences."""
    info = cpt.info
    for what, path, took in (("kernel", kernel, info.kernel), ("disk image", disk, info.image)):
        if not path.is_file():
            raise UsageError(f"{what} {path} does not exist", f"checkpoint '{cpt.name}' was taken with {took.path}")
        got = hashes.sha256(path)
        if got != took.sha256:
            raise MismatchError(
                f"the {what} {path} (sha256 {got[:12]}…) is not the one checkpoint '{cpt.name}' was taken with ({took.sha256[:12]}…)",
                f"the {what} was rebuilt or replaced since (a changed user layer, say): restore with the one it was "
                f"taken with, or take a new checkpoint with `hackback checkpoint`",
            )
    have, took_gem5 = env.gem5(), info.gem5
    if have.release != took_gem5.release:
        raise MismatchError(
            f"env gem5 is release {have.release}, checkpoint '{cpt.name}' was taken with {took_gem5.release}",
            "checkpoints do not carry across gem5 releases; take a new one with this gem5",
        )
    if have.version_tags != took_gem5.version_tags:
        extra = sorted(set(have.version_tags) ^ set(took_gem5.version_tags))
        raise MismatchError(
            f"env gem5's checkpoint version tags differ from checkpoint '{cpt.name}' ({', '.join(extra[:3])})",
            "take a new checkpoint with this gem5",
        )
    warnings = []
    if have.differs_from(took_gem5):
        warnings.append(
            f"env gem5 was built from a different {took_gem5.release} tree than the one that took checkpoint "
            f"'{cpt.name}' (a modified gem5, same release and version tags): allowed, and recorded in the run's manifest"
        )
    return warnings


def board_of(cfg: Config, cpt: CheckpointArtifact) -> Board:
    """The board a restore of `cpt` simulates: the checkpoint's memory and cores, the config's CPU and caches
    (measured from the first instruction when the checkpoint was saved at a region of interest)."""
    r = cfg.restore
    sample = cpt.info.sample
    if sample is not None:  # atomic with the caches (functional warm-up), the detailed CPU's warm-up, the interval
        return Board(memory=cpt.info.board.memory, cores=cpt.info.board.cores, cpu=r.cpu, caches=r.caches, l1d=r.l1d,
                     l1i=r.l1i, l2=r.l2, switch_from="atomic", switch_after_insts=max(1, sample.functional_warmup),
                     warmup_insts=sample.detailed_warmup, measure_insts=sample.length)
    if cpt.info.in_roi and r.switch_from:
        raise UsageError(f"checkpoint '{cpt.name}' starts inside its region of interest: there is nothing to switch from",
                         "leave --switch-from off: the run is on --cpu from its first instruction")
    return Board(memory=cpt.info.board.memory, cores=cpt.info.board.cores, cpu=r.cpu, caches=r.caches, l1d=r.l1d, l1i=r.l1i,
                 l2=r.l2, switch_from=r.switch_from, switch_after_insts=r.switch_after_insts, warmup_insts=r.warmup_insts,
                 in_roi=cpt.info.in_roi)


def run_inputs(cfg: Config, cpt: CheckpointArtifact, env: EnvArtifact, board: Board, script_sha: str,
               payload_sha: Optional[str] = None) -> dict[str, Any]:
    run_cfg = cfg.restore
    return {
        **({"payload_sha256": payload_sha} if payload_sha else {}),
        "checkpoint": cpt.identity_digest(),
        "script_sha256": script_sha,
        "gem5_binary_sha256": env.gem5().binary_sha256,
        "board": board.inputs(),
        "run_script_sha256": gem5run.run_script_sha256(run_cfg.gem5_config),
        **({"gem5_config": str(run_cfg.gem5_config)} if run_cfg.gem5_config else {}),
        **({"gem5_args": list(run_cfg.gem5_args)} if run_cfg.gem5_args else {}),
        "limits": {"max_sim_seconds": run_cfg.max_sim_seconds, "max_wall_seconds": run_cfg.max_wall_seconds},
    }


def run_id(cpt: CheckpointArtifact, script: Path, board: Board, inputs: dict[str, Any]) -> str:
    """Named by what it ran, with a digest of every input: the same inputs are the same run."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", script.stem)[:40] or "script"
    return f"{cpt.name}-{stem}-{board.id_part()}-{digest_of(inputs)[:8]}"


@dataclass(frozen=True)
class Restores:
    """What every run of one `hackback restore` shares."""

    ctx: StepContext
    env: EnvArtifact
    cpt: CheckpointArtifact
    kernel: Path
    disk: Path
    board: Board
    warnings: list[str]
    force: bool


@dataclass(frozen=True)
class Plan:
    """One run: its script and payload, its inputs and its id."""

    script: Path
    want: dict[str, Any]
    rid: str
    payload: Optional[payload_.Payload] = None
    member: Optional[Member] = None  # a suite member: judged by its own verdict
    resumed: bool = False  # restored inside the script that made the checkpoint: the guest reads no new one


@dataclass(frozen=True)
class Work:
    """A script to run with what it brings instead of restore.payload: a suite
    member's binary (and the user's payload), and the member it runs."""

    script: Path
    payload: Optional[payload_.Payload]
    member: Optional[Member] = None


Scripts = Union[Sequence[Path], Sequence[Work]]


def prepare(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact, scripts: Scripts,
            kernel: Optional[Path] = None, disk: Optional[Path] = None, force: bool = False) -> tuple["Restores", list["Plan"]]:
    """Everything checked before a run starts (scripts, the checkpoint's kernel,
    image and gem5, the payloads), and each script's run: its inputs and run id.
    A plain script gets the config's payload (restore.payload). A checkpoint
    saved at a region of interest resumes inside the script that made it: its
    one run reads no script."""
    if cpt.info.resumes_inside and scripts:
        raise UsageError(f"checkpoint '{cpt.name}' was saved inside its script (at its region of interest): a restore "
                         "of it resumes there and reads no new script", "leave --script off")
    works = [s if isinstance(s, Work) else Work(s, None) for s in scripts]
    own = [isinstance(s, Work) for s in scripts]
    for w in works:
        check_script(w.script)
    kernel = kernel or cpt.info.kernel.path
    disk = disk or cpt.info.image.path
    warnings = verify(cpt, env, kernel, disk, ctx.hashes)
    for warning in warnings:
        log.warn(warning)
    board = board_of(ctx.cfg, cpt)
    runs = Restores(ctx, env, cpt, kernel, disk, board, warnings, force)
    if cpt.info.resumes_inside:
        return runs, [_resumed(ctx.cfg, cpt, env, board)]
    shared = check_payload(ctx.cfg) if not all(own) else None
    plans = []
    for w, is_own in zip(works, own):
        brought = w.payload if is_own else shared
        if brought is not None:
            _fits(brought, cpt)
        want = run_inputs(ctx.cfg, cpt, env, board, ctx.hashes.sha256(w.script), brought.sha256(ctx.hashes) if brought else None)
        if w.member is not None:
            want["member"] = {**w.member.to_json(), "judge": SuiteDef.load(w.member.suite).digest()}
        plans.append(Plan(w.script, want, run_id(cpt, w.script, board, want), brought, w.member))
    return runs, plans


def _resumed(cfg: Config, cpt: CheckpointArtifact, env: EnvArtifact, board: Board) -> Plan:
    """The one run of a checkpoint saved inside a script's region of interest: the script that made it, measured from the start."""
    made = cpt.info.made_by
    if made is None:
        raise ArtifactError(f"checkpoint '{cpt.name}' says it was saved at a region of interest but not by which script",
                            "take it again with --save-checkpoint")
    want = run_inputs(cfg, cpt, env, board, made.script.sha256, None)
    member = made.member if cpt.info.sample is None else None  # a sample ends before any verdict
    if member is not None:
        want["member"] = {**member.to_json(), "judge": SuiteDef.load(member.suite).digest()}
    return Plan(made.script.path, want, run_id(cpt, made.script.path, board, want), None, member, resumed=True)


def completed(ctx: StepContext, plan: "Plan") -> Optional[RunResult]:
    """The run's result if it is already in runs/ and up to date (None: it would run)."""
    directory = ctx.layout.artifact_dir("runs", plan.rid)
    manifest = Manifest.read(directory)
    if manifest is None or manifest.staleness("run", plan.want, directory, ctx.hashes) is not None:
        return None
    return result_in(directory, plan.rid, reused=True)


def result_in(directory: Path, rid: str, reused: bool = False) -> RunResult:
    """The result a finished run's manifest records."""
    run = RunRecord.read(directory)
    if run is None:
        raise ArtifactError(f"run {rid} has no manifest in {directory}", "its task did not finish; submit it again")
    return RunResult.of(rid, run, reused)


def restore(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact, scripts: Scripts,
            kernel: Optional[Path] = None, disk: Optional[Path] = None, force: bool = False) -> list[RunResult]:
    """The runs of these scripts, planned and run here (a cluster node's one task runs this too)."""
    return execute(*prepare(ctx, env, cpt, scripts, kernel, disk, force))


def execute(runs: Restores, plans: Sequence[Plan]) -> list[RunResult]:
    """The local executor of a restore's plan: its runs here, -j at a time, then the one ending."""
    ctx = runs.ctx
    if ctx.layout.dry_run:
        _plan_runs(ctx.layout, ctx.hashes, plans)
    child = ctx.cfg.restore.save_checkpoint
    if child:
        if len(plans) != 1:
            raise UsageError(f"--save-checkpoint {child} takes one script, not {len(plans)}", "name the set-up script alone")
        return [_save_child(runs, plans[0], child)]
    return run_batch([(runs, p) for p in plans], ctx.cfg.restore.jobs)


Batch = Sequence[tuple["Restores", Plan]]  # runs of one or several checkpoints (a sampling's samples)


def run_batch(batch: Batch, jobs: int) -> list[RunResult]:
    """Run every plan (jobs at a time), then the one ending: summaries, then the failures."""
    jobs = max(1, min(jobs, len(batch)))
    results, failures = _run_serially(batch) if jobs == 1 else _run_in_parallel(batch, jobs)
    return finish([r for r in results if r is not None], failures, len(batch))


def finish(done: Sequence[RunResult], failures: Sequence[HackbackError], total: int) -> list[RunResult]:
    """The one ending of a batch of runs, however they ran (here, or as a Slurm
    array): every run's summary, then the failure (one), or how many failed and
    the first (its kind, hint and exit status)."""
    if len(done) > 1:
        log.info(f"{len(done)} runs:")
    for r in done:
        log.info(r.summary())
    if failures:
        if len(failures) == 1:
            raise failures[0]
        combined = copy.copy(failures[0])
        combined.message = f"{len(failures)} of {total} runs failed; first: {failures[0].message}"
        combined.args = (combined.message,)
        raise combined
    return list(done)


def check_payload(cfg: Config) -> Optional[payload_.Payload]:
    """restore.payload (--payload) as it would be carried, or a one-line refusal;
    asked before anything is built."""
    if not cfg.restore.payload:
        return None
    return payload_.collect([Path(d).expanduser() for d in cfg.restore.payload], cfg.restore.payload_max_bytes)


def _fits(brought: payload_.Payload, cpt: CheckpointArtifact) -> None:
    """The guest has room for the payload (its free disk, recorded with the checkpoint)."""
    room = cpt.info.guest
    free_kib = room.root_free_kib if room is not None else -1
    if free_kib >= 0 and brought.bytes > (free_kib - 64 * 1024) * 1024:
        raise UsageError(f"the payload is {brought.bytes / 2**20:.0f} MiB; the guest of checkpoint '{cpt.name}' has "
                         f"{free_kib / 1024:.0f} MiB free on its root filesystem (less 64 MiB kept free)",
                         "bring less, or build the image larger (image.size_mib) and take a new checkpoint")
    log.info(f"payload: {payload_.describe(brought)}")


_Outcomes = tuple[list[Optional[RunResult]], list[HackbackError]]
# One run's failure: the others of a batch still run, and the batch fails after them.
RUN_FAILURES = (Gem5RunFailed, ScriptFailed, ResultsLost, VerificationFailed)


def _run_serially(batch: Batch) -> _Outcomes:
    results: list[Optional[RunResult]] = []
    failures: list[HackbackError] = []
    for runs, plan in batch:
        try:
            results.append(_one(runs, plan, "gem5:restore"))
        except RUN_FAILURES as e:
            failures.append(e)
    return results, failures


def _run_in_parallel(batch: Batch, jobs: int) -> _Outcomes:
    log.info(f"{len(batch)} restores, {jobs} at a time")
    results: list[Optional[RunResult]] = [None] * len(batch)
    failures: list[HackbackError] = []
    stop = threading.Event()

    def one(i: int) -> None:
        runs, plan = batch[i]
        if not stop.is_set():
            results[i] = _one(dataclasses.replace(runs, ctx=runs.ctx.for_thread()), plan, f"gem5:{runs.cpt.name}:{plan.script.stem}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool, \
            log.progress(f"{len(batch)} restores", len(batch), "runs") as bar:
        futures = [pool.submit(one, i) for i in range(len(batch))]
        try:
            for n, f in enumerate(concurrent.futures.as_completed(futures), 1):
                try:
                    f.result()
                except RUN_FAILURES as e:
                    failures.append(e)
                bar.update(n, f"{len(failures)} failed" if failures else "")
        except BaseException:
            # Ctrl-C or a hard error: start nothing new, stop what runs (our containers).
            stop.set()
            for f in futures:
                f.cancel()
            _stop_our_containers(batch[0][0].ctx.engine)
            raise
    return results, failures


def _plan_runs(layout: Layout, hashes: HashCache, plans: Sequence[Plan]) -> None:
    """A dry run: which of these runs would run, and why (WouldBuild), or none."""
    todo = []
    for plan in plans:
        directory = layout.artifact_dir("runs", plan.rid)
        manifest = Manifest.read(directory)
        why = manifest.staleness("run", plan.want, directory, hashes) if manifest else "not run yet"
        log.info(f"plan:   {plan.script.name} -> {plan.rid}: {why or 'done already (a rerun prints its summary)'}")
        if why:
            todo.append(plan.rid)
    if todo:
        layout.would_build(f"{len(todo)} of {len(plans)} run(s)", "listed above")


def _stop_our_containers(engine: Engine) -> None:
    me = owner_label()
    for cid, _name, owner in engine.containers(all_owners=True):
        if owner == me:
            engine.remove_container(cid)


def _script_copy(plan: Plan) -> str:
    return f"script{plan.script.suffix or '.rcS'}"


def _run_gem5(runs: Restores, plan: Plan, tmp: Path, label: str, keep: tuple[Kind, str]) -> tuple[Gem5Result, gem5run.Gem5Job]:
    """One restored run of plan.script in `tmp` (with its payload, saving a child
    checkpoint when the restore saves one); its result and job. A failed run's
    logs are kept as <work>/failed/<keep kind>-<keep name>."""
    ctx, cpt, run_cfg = runs.ctx, runs.cpt, runs.ctx.cfg.restore
    readfile = tmp / _script_copy(plan)
    if plan.resumed:  # the guest is inside its script already and reads none: an empty readfile
        if plan.script.is_file() and ctx.hashes.sha256(plan.script) == plan.want["script_sha256"]:
            shutil.copy2(plan.script, tmp / _script_copy(plan))
        readfile = tmp / READFILE
        readfile.write_bytes(b"")
    else:
        shutil.copy2(plan.script, readfile)
    if plan.payload is not None:
        readfile = tmp / READFILE  # header + script + index + files; removed after the run (the payload's digest is kept)
        payload_.write_stream(plan.script, plan.payload, readfile)
    g = runs.env.gem5()
    job = gem5run.Gem5Job(
        label=label, env_image=g.env_image, binary=g.binary, mode="restore", kernel=cpt.gem5_kernel(runs.kernel),
        disk=runs.disk, kernel_args=cpt.info.kernel_args, board=runs.board, out=tmp, checkpoint=cpt.cpt,
        script=readfile, max_sim_seconds=run_cfg.max_sim_seconds, max_wall_seconds=run_cfg.max_wall_seconds,
        save_child=bool(run_cfg.save_checkpoint), save_at=run_cfg.save_at, config=run_cfg.gem5_config,
        gem5_args=run_cfg.gem5_args,
    )
    with log.step(f"restore {plan.rid}: {plan.script.name} on {runs.board.label()}"):
        # Artifact directories only ever hold complete ones; what a failed run printed is kept aside.
        result = gem5run.run(ctx.engine, job, keep_failed=lambda: keep_failed(ctx.layout, keep[0], keep[1], tmp),
                             prefix=f"{plan.rid}: ")
    (tmp / gem5run.CONSOLE).unlink(missing_ok=True)
    (tmp / READFILE).unlink(missing_ok=True)
    return result, job


def _one(runs: Restores, plan: Plan, label: str) -> RunResult:
    ctx = runs.ctx

    def build(tmp: Path, manifest: Manifest) -> None:
        result, job = _run_gem5(runs, plan, tmp, label, ("runs", plan.rid))
        try:
            results = payload_.unpack_results(tmp, _console(tmp))
        except ResultsLost as e:
            raise ResultsLost(f"{plan.rid}: {e.message}",
                              f"its console and gem5 log are in {keep_failed(ctx.layout, 'runs', plan.rid, tmp)}") from None
        traces = [a.split("=", 1)[1] for a in ctx.cfg.restore.gem5_args if a.startswith("--debug-file=")]
        outputs = {name: file_record(tmp / name, ctx.hashes)
                   for name in ("stats.txt", "config.ini", "config.json", "console.log", _script_copy(plan), *traces)
                   if (tmp / name).is_file()}
        outputs.update({str(p.relative_to(tmp)): file_record(p, ctx.hashes) for p in results})
        manifest.set_part("run", plan.want, outputs, _info(runs, plan, job, result).to_json())

    done = build_unless_fresh(ctx.layout, Target("runs", plan.rid, "run", f"run {plan.rid}"), plan.want, runs.force, build)
    return _finish(result_in(done.directory, plan.rid, reused=not done.built), plan.script)


def _save_child(runs: Restores, plan: Plan, name: str) -> RunResult:
    """The restore that ends in the guest's hackback-checkpoint: the checkpoint it
    saves becomes checkpoints/<name>, a child of the one restored, its manifest
    recording the parent, the script and payload that led to it, the CPU, the tick."""
    ctx, parent = runs.ctx, runs.cpt
    want = {**plan.want, "child": True, **({"save_at": ctx.cfg.restore.save_at} if ctx.cfg.restore.save_at != "guest" else {})}

    def build(tmp: Path, manifest: Manifest) -> None:
        result, job = _run_gem5(runs, plan, tmp, "gem5:child", ("checkpoints", name))
        cpt = tmp / str(result.checkpoint)
        if not result.checkpoint or not (cpt / "m5.cpt").is_file():
            raise ArtifactError(f"gem5 reported a child checkpoint but {cpt.name}/m5.cpt is missing", f"see {tmp / 'gem5.log'}")
        files = sorted(p for p in cpt.rglob("*") if p.is_file())
        if parent.info.gem5_kernel:  # the stripped kernel it was booted with, beside it as beside its parent
            os.link(parent.directory / GEM5_KERNEL, tmp / GEM5_KERNEL)
            ctx.hashes.linked(parent.directory / GEM5_KERNEL, tmp / GEM5_KERNEL)
            files.append(tmp / GEM5_KERNEL)
        info = child_info(parent, cpt.name, result, tmp,
                          MadeBy(FileRef(plan.script.resolve(), plan.want["script_sha256"]), job.board,
                                 plan.want.get("payload_sha256"), plan.member), ctx.cfg.restore.save_at)
        manifest.set_part("checkpoint", want, {str(p.relative_to(tmp)): file_record(p, ctx.hashes) for p in files},
                          info.to_json())

    done = build_unless_fresh(ctx.layout, Target("checkpoints", name, "checkpoint", f"checkpoint '{name}'"), want,
                              runs.force, build)
    child = CheckpointArtifact.read(done.directory)
    info = child.info
    log.info(f"child checkpoint '{name}': {info.cpt} at tick {info.tick}, a child of '{parent.name}' "
             f"({done.directory}); restore it with --checkpoint {name}")
    measured = info.measured
    return RunResult(name, done.directory, "checkpoint", ScriptStatus.parse(None), info.sim_seconds, info.host_seconds,
                     measured.stats if measured else {}, not done.built, measured.roi if measured else None)


def child_info(parent: CheckpointArtifact, cpt: str, result: Gem5Result, out: Path, made_by: MadeBy,
               saved_at: str = "guest") -> CheckpointInfo:
    """A child checkpoint's info: its parent's system (gem5, kernel, image, board,
    boot, kernel arguments, timing), where and how it was saved, what ran up to it."""
    return dataclasses.replace(
        parent.info, cpt=cpt, tick=result.final_tick, sim_seconds=result.sim_seconds, host_seconds=result.host_seconds,
        phases=result.phases, console_last_line=result.console_last_line,
        guest=gem5run.guest_room(out / gem5run.CONSOLE_COPY), measured=stats.measured(out / "stats.txt", result),
        parent=Parent(parent.name, parent.directory, parent.cpt.name, parent.identity_digest()), made_by=made_by,
        saved_at=saved_at)


def _console(out: Path) -> str:
    path = out / gem5run.CONSOLE_COPY
    return path.read_text(errors="replace") if path.is_file() else ""


def _script_status(console: str) -> Optional[str]:
    """The guest's last word on the script; a payload that could not be unpacked
    (said by hackback-guest, or by the payload's own header on older images,
    whose rcS then prints the header's exit status) wins."""
    statuses = SCRIPT_EXIT.findall(console)
    return "payload" if "payload" in statuses else statuses[-1] if statuses else None


def _verdict(plan: Plan, console: str, result: Gem5Result, board: Board) -> Optional[Verdict]:
    """A suite member's own verdict on its run, and gem5's word that its ROI ran."""
    if plan.member is None:
        return None
    return SuiteDef.load(plan.member.suite).judge(plan.member, console, result.work_items, began_before=board.in_roi)


def _info(runs: Restores, plan: Plan, job: gem5run.Gem5Job, result: Gem5Result) -> RunInfo:
    brought = plan.payload
    console = _console(job.out)
    return RunInfo(
        checkpoint=runs.cpt.ref(), script=FileRef(plan.script.resolve(), plan.want["script_sha256"]), gem5=runs.env.gem5(),
        gem5_warnings=tuple(runs.warnings), board=job.board, cause=result.cause, script_status=_script_status(console),
        sim_seconds=result.sim_seconds, host_seconds=result.host_seconds,
        # Where the host time went: gem5's start-up and board, loading the
        # checkpoint, simulating; the container's whole life around them.
        phases=result.phases, container_wall_seconds=result.container_wall_seconds,
        measured=stats.measured(job.out / "stats.txt", result),
        payload=PayloadRef(brought.dirs, len(brought.files), brought.bytes, plan.want["payload_sha256"]) if brought else None,
        work_items=result.work_items, member=plan.member, verdict=_verdict(plan, console, result, job.board))


def _finish(result: RunResult, script: Path) -> RunResult:
    status = result.status
    if status.end is ScriptEnd.UNREPORTED and result.cause in ENDED_INSIDE:
        # The script called m5 exit itself (the seed method's convention and
        # gem5-resources' run scripts), or the run ended by design inside it (a
        # sample's instruction count): a normal ending, before the guest could
        # print the status line.
        return result
    if status.end is not ScriptEnd.EXITED or status.code != 0:
        log.info(result.summary())
        what = {ScriptEnd.PAYLOAD: "did not run: its payload could not be unpacked",
                ScriptEnd.EMPTY: "reached the guest empty", ScriptEnd.EXITED: f"exited {status}"}.get(
            status.end, "reported no exit status")
        raise ScriptFailed(f"script {script.name} {what} in the guest", f"its output is in {result.directory / 'console.log'}",
                           exit_status=status.exit_code, result=result)
    if result.verdict is not None and not result.verdict.passed:
        log.info(result.summary())
        raise VerificationFailed(f"{result.run_id}: {result.verdict.why}", f"the run is kept; its output is in "
                                 f"{result.directory / 'console.log'}", result=result)
    return result
