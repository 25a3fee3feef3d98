"""The restore step, and the two executors of its one plan (restore.prepare):
here, -j at a time (restore.execute), or with `--on slurm` as one Slurm job
array over the one checkpoint (this module); both end in restore.finish.

The submitting side does every check a local restore does (scripts, payload,
the checkpoint's kernel, image and gem5) and everything the steps before need,
then writes a batch directory under <work>/slurm/: the task list (tasks.json:
the whole config as resolved here, the checkpoint, each task's script and run
id) and the sbatch script (hackback/sbatch/array.sbatch). Nothing per task is
done here beyond writing the list. Each task (hackback.node on the node) reads
its line and runs that one restore with hackback's own restore step, so it
makes the same container, checks, run directory and manifest as a local one.
A node never builds: the env image, when missing there, is loaded from a copy
saved in the work dir; anything else missing fails the task in one line.

Runs already in runs/ (and up to date) are not submitted, nor are runs that a
live job of an earlier submission still has pending or running. Each task
writes status/task-<i>.json when it ends; `--wait` follows the array with
squeue and those files."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from . import checkpoint, restore
from ..base import config, log
from ..services import slurm
from ..services import payload as payload_
from ..store.hashes import digest_of
from ..store.layout import Layout, make_dir
from ..store.manifest import Manifest, write_atomically
from ..protocol.context import StepContext
from ..base.engine import Engine
from ..base.errors import ArtifactError, HackbackError, TaskFailed, UsageError, VerificationFailed
from ..store.records import CheckpointArtifact, EnvArtifact, Member, RunResult, SampleRef
from ..base.resources import package_file
from ..protocol.step import Request, Step, check_files

TASKS = "tasks.json"
# A task's status file written on a node may take a while to show on the
# submitting side of a network filesystem: wait this long before calling it lost.
LOST_GRACE = 30.0
JOB = "job.json"
SCRIPT = "array.sbatch"


@dataclass(frozen=True)
class Batch:
    """One submission: its directory, Slurm job id and runs (task i runs rids[i])."""

    directory: Path
    job_id: str
    rids: tuple[str, ...]

    def status(self, index: int) -> Optional[dict[str, Any]]:
        try:
            data: dict[str, Any] = json.loads((self.directory / "status" / f"task-{index}.json").read_text())
            return data
        except (FileNotFoundError, ValueError):
            return None

    def log_of(self, index: int) -> Path:
        return self.directory / "logs" / f"task-{index}.log"


# ---------------------------------------------------------------- the step and its executors


class RestoreStep(Step):
    name = "restore"
    needs = ("env", "checkpoint")
    verb = "run"

    def refuse(self, req: Request) -> None:
        if req.scripts:
            restore.scripts_from(req.scripts)  # a bad script is refused before the config is even read

    def check(self, ctx: StepContext, req: Request) -> None:
        if not req.scripts:  # only a checkpoint saved inside its script's ROI resumes without one
            cpt = checkpoint.asked_for(ctx, req)
            if cpt is None or not cpt.info.resumes_inside:
                restore.scripts_from(())  # says: no script given
        restore.check_payload(ctx.cfg)
        check_files(req)
        check_executor(ctx.cfg)

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> list[RunResult]:
        cpt = deps["checkpoint"]
        scripts = restore.scripts_from(req.scripts) if req.scripts or not cpt.info.resumes_inside else []
        return restore_runs(ctx, deps["env"], cpt, scripts, req.kernel, req.disk, force=req.forced(self.name))


RESTORE = RestoreStep()


def restore_runs(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact, scripts: restore.Scripts,
                 kernel: Optional[Path] = None, disk: Optional[Path] = None, force: bool = False) -> list[RunResult]:
    """The runs of these scripts: one plan (every check a run needs, each run's id),
    then one of two executors, by restore.on."""
    runs, plans = restore.prepare(ctx, env, cpt, scripts, kernel, disk, force)
    if ctx.cfg.restore.on == "slurm":
        return submit(ctx, runs, plans)
    return restore.execute(runs, plans)


def check_executor(cfg: config.Config) -> None:
    """What --on slurm refuses before anything builds."""
    if cfg.restore.on != "slurm":
        return
    slurm.require()
    if cfg.restore.save_checkpoint:
        raise UsageError("--save-checkpoint is one restore, not a job array", "run it locally (without --on slurm)")


# ---------------------------------------------------------------- submitting side


def submit(ctx: StepContext, runs: restore.Restores, plans: Sequence[restore.Plan],
           samples: Optional[Mapping[str, SampleRef]] = None) -> list[RunResult]:
    """Submit the runs not done yet as one job array; with slurm.wait, follow it to
    the end. The results of the runs that are done (all of them after a wait).
    `samples`: run id -> where its sample checkpoint is (parent, sampling, index),
    for runs each from their own sample checkpoint; the others share runs.cpt."""
    check_executor(ctx.cfg)
    live = _live_batches(ctx.layout)  # first: a task that ends between the two is then done, not submitted again
    done, todo, again = _split(ctx, plans, runs.force)
    in_flight = {rid for b in live for rid in b.rids}
    waiting_on = [b for b in live if set(b.rids) & {p.rid for p in todo}]
    todo = [p for p in todo if p.rid not in in_flight]
    log.info(f"{len(plans)} run(s): {len(done)} done already, {len(plans) - len(done) - len(todo)} pending or running in "
             f"an earlier job, {len(todo)} to submit")
    if ctx.layout.dry_run:
        for p in todo:
            log.info(f"plan:   {p.script.name} -> {p.rid}: would be a task of the array")
        if todo:
            ctx.layout.would_build(f"a Slurm job array of {len(todo)} task(s)", "listed above")
        return done
    if todo:
        waiting_on.append(_submit(ctx, runs, todo, again, samples or {}))
    if ctx.cfg.slurm.wait and waiting_on:
        return wait(ctx, waiting_on, done)
    return _finish(ctx, [], done) if not waiting_on else done


def _split(ctx: StepContext, plans: Sequence[restore.Plan], force: bool) -> tuple[list[RunResult], list[restore.Plan], set[str]]:
    """Done runs, runs to submit, and which of those rerun a finished one (its script failed: --rerun-failed)."""
    done: list[RunResult] = []
    todo: list[restore.Plan] = []
    again: set[str] = set()
    for plan in plans:
        result = None if force else restore.completed(ctx, plan)
        if result is not None and ctx.cfg.slurm.rerun_failed and not result.ok:
            again.add(plan.rid)
            result = None
        if result is None:
            todo.append(plan)
        else:
            done.append(result)
    return done, todo, again


def _submit(ctx: StepContext, runs: restore.Restores, todo: Sequence[restore.Plan], again: set[str],
            samples: Mapping[str, SampleRef]) -> Batch:
    saved = _saved_env_image(ctx, runs.env)
    rids = tuple(p.rid for p in todo)
    directory = ctx.layout.work_dir / "slurm" / f"{time.strftime('%Y%m%d-%H%M%S')}-{digest_of(list(rids))[:8]}"
    for sub in ("logs", "status"):
        make_dir(directory / sub, "the Slurm batch")
    flags = {**config.as_flags(ctx.cfg), "restore.on": "local", "slurm.wait": False}
    tasks = {
        "config": flags,
        "env": runs.env.to_json(saved),
        "checkpoint": str(runs.cpt.directory),
        "kernel": str(runs.kernel),
        "disk": str(runs.disk),
        "force": runs.force,
        "tasks": [{**_task(p, p.rid in again), **({"sample": samples[p.rid].to_json()} if p.rid in samples else {})} for p in todo],
    }
    _write_json(directory / TASKS, tasks)
    (directory / SCRIPT).write_text(_sbatch_script(ctx.cfg, directory, len(todo)))
    # Submitted held, recorded, then released: a submitter stopped at any point
    # leaves either no job or a job this work dir knows about.
    try:
        job_id = slurm.submit(directory / SCRIPT, hold=True)
    except slurm.NotSubmitted:
        shutil.rmtree(directory, ignore_errors=True)  # sbatch said no: nothing to keep
        raise
    _write_json(directory / JOB, {"job_id": job_id, "rids": list(rids), "submitted_at": time.time()})
    slurm.release(job_id)
    log.info(f"submitted Slurm job {job_id}: {len(todo)} task(s), one per run; batch {directory}")
    log.info(f"    follow it: squeue -j {job_id}, or rerun this command with --wait (nothing is submitted twice)")
    return Batch(directory, job_id, rids)


def _task(plan: restore.Plan, again: bool) -> dict[str, Any]:
    """One task's line: its run's script, and what it brings (a suite member's binary and member) when not the config's."""
    return {"script": str(plan.script.resolve()), "rid": plan.rid, "force": again, "resumed": plan.resumed,
            **({"payload": [str(d) for d in plan.payload.dirs]} if plan.member and plan.payload else {}),
            **({"member": plan.member.to_json()} if plan.member else {})}


def _work(cfg: config.Config, task: dict[str, Any]) -> restore.Scripts:
    """The scripts a node's restore runs for a task, as the submitting side planned it."""
    if task.get("resumed"):
        return []
    if "member" not in task:
        return [Path(task["script"])]
    brought = payload_.collect([Path(d) for d in task.get("payload", [])], cfg.restore.payload_max_bytes) \
        if task.get("payload") else None
    return [restore.Work(Path(task["script"]), brought, Member.from_json(task["member"]))]


def _sbatch_script(cfg: config.Config, directory: Path, count: int) -> str:
    sl = cfg.slurm
    options = [f"--partition={sl.partition}"] if sl.partition else []
    options += [f"--mem={sl.mem}"] if sl.mem else []
    options += list(sl.extra_args)
    return package_file("sbatch/array.sbatch").read_text().format(
        job_name=f"hackback-{cfg.name}", last=count - 1, throttle=f"%{sl.array_throttle}" if sl.array_throttle else "",
        batch_dir=directory, time=sl.time, cpus=sl.cpus_per_task, grace=sl.stop_grace_seconds,
        options="\n".join(f"#SBATCH {o}" for o in options), python=sl.python or sys.executable,
    )


def _saved_env_image(ctx: StepContext, env: EnvArtifact) -> Path:
    """A copy of the env image in the work dir, for nodes that lack it (saved once per image)."""
    image_id = ctx.engine.image_id(str(env.image))
    if image_id is None:
        raise ArtifactError(f"env image {env.image} is missing from this engine", "rebuild it with `hackback env`")
    dest = ctx.layout.cache_dir("env-images") / f"{image_id.split(':')[-1][:16]}.tar"
    if not dest.is_file():
        make_dir(dest.parent, "saved env images")
        with log.step(f"saving env image {env.image} for the nodes ({dest})"):
            ctx.engine.save_image(str(env.image), dest)
    return dest


def _live_batches(layout: Layout) -> list[Batch]:
    """Earlier submissions whose job Slurm still lists."""
    out = []
    for job_file in sorted((layout.work_dir / "slurm").glob(f"*/{JOB}")):
        try:
            job = json.loads(job_file.read_text())
        except ValueError:
            continue
        batch = Batch(job_file.parent, str(job["job_id"]), tuple(job["rids"]))
        if any(batch.status(i) is None for i in range(len(batch.rids))) and slurm.task_states(batch.job_id):
            out.append(batch)
    return out


def wait(ctx: StepContext, batches: Sequence[Batch], done: Sequence[RunResult]) -> list[RunResult]:
    """Follow the arrays until no task is pending or running, showing the counts;
    then every run's summary. A failed task fails the whole, as locally."""
    shown = ""
    lost_since = time.monotonic()
    jobs = " ".join(b.job_id for b in batches)
    with log.progress(f"slurm job {jobs}", sum(len(b.rids) for b in batches), "tasks") as bar:
        while True:
            counts, live = _counts(batches)
            line = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
            if bar.shown:
                bar.update(counts["done"] + counts["failed"] + counts["lost"], line)
            elif line != shown:
                log.info(f"slurm job {jobs}: {line}")
            shown = line
            if not live and (not counts["lost"] or time.monotonic() > lost_since + LOST_GRACE):
                break
            if live or not counts["lost"]:
                lost_since = time.monotonic()
            time.sleep(ctx.cfg.slurm.poll_seconds)
    return _finish(ctx, batches, done)


def _counts(batches: Sequence[Batch]) -> tuple[dict[str, int], bool]:
    counts = {"pending": 0, "running": 0, "done": 0, "failed": 0, "lost": 0}
    live = False
    for b in batches:
        states = slurm.task_states(b.job_id)
        for i in range(len(b.rids)):
            status = b.status(i)
            if status is not None:
                counts["done" if status["ok"] else "failed"] += 1
            elif states.get(i) in slurm.RUNNING or states.get(i) in slurm.WAITING:
                live = True
                counts["running" if states[i] in slurm.RUNNING else "pending"] += 1
            else:
                counts["lost"] += 1  # ended without a word (so far: see _finish)
    return counts, live


def _finish(ctx: StepContext, batches: Sequence[Batch], done: Sequence[RunResult]) -> list[RunResult]:
    """Every run's summary; a failure (a task's, or a done run's script) raised as a local restore raises it."""
    in_batches = {rid for b in batches for rid in b.rids}
    results = [r for r in done if r.run_id not in in_batches]  # a run of a batch: its task's status says how it ended
    failures: list[HackbackError] = [f for f in map(_failure_of, results) if f is not None]
    for b in batches:
        for i, rid in enumerate(b.rids):
            status = b.status(i) or {"ok": False, "exit_code": 1,
                                      "message": f"task {i} of job {b.job_id} ({rid}) ended without reporting"}
            if status.get("result"):
                results.append(restore.result_in(ctx.layout.artifact_dir("runs", rid), rid))
            if not status["ok"]:
                failures.append(TaskFailed(str(status.get("message", f"task {i} failed")), f"its log is {b.log_of(i)}",
                                           int(status.get("exit_code", 1))))
    return restore.finish(results, failures, len(in_batches | {r.run_id for r in done}))


def _failure_of(r: RunResult) -> Optional[HackbackError]:
    """How a run found done failed, as the local restore would have said: its script, or its benchmark's verdict."""
    if not r.ok:
        return TaskFailed(f"{r.run_id}: its script exited {r.status} in the guest",
                          f"its output is in {r.directory / 'console.log'}", r.status.exit_code)
    if r.verdict is not None and not r.verdict.passed:
        return VerificationFailed(f"{r.run_id}: {r.verdict.why}", f"the run is kept; its output is in "
                                  f"{r.directory / 'console.log'}", result=r)
    return None


def _write_json(path: Path, data: Any) -> None:
    write_atomically(path, json.dumps(data, indent=1, sort_keys=True))


# ---------------------------------------------------------------- on the node


def run_task(batch_dir: Path, index: int) -> None:
    """Task `index` of the batch: one restore, as `hackback restore` runs it, never
    building anything; its status file says how it ended."""
    batch = json.loads((batch_dir / TASKS).read_text())
    task = batch["tasks"][index]
    status_file = batch_dir / "status" / f"task-{index}.json"
    status: dict[str, Any] = {"rid": task["rid"], "ok": False, "exit_code": 1, "result": False,
                              "message": f"{task['rid']}: the task failed (see its log)",
                              "host": os.uname().nodename, "started_at": time.time()}
    try:
        # Not this node's environment: the config as it was resolved where it was submitted.
        cfg = config.load(flags=batch["config"], environ={}, cwd=batch_dir)
        ctx = StepContext(cfg, Layout(cfg.work_dir, node_hash_db=_node_hash_db()), Engine.connect(cfg.work_dir))
        env = _env_here(ctx.engine, batch["env"])
        status["gem5_start"] = time.time()
        # The batch's checkpoint, or the task's own sample checkpoint (hackback sample --on slurm).
        cpt = SampleRef.from_json(task["sample"]).checkpoint() if "sample" in task \
            else CheckpointArtifact.read(Path(batch["checkpoint"]))
        results = restore.restore(ctx, env, cpt, _work(cfg, task),
                                  Path(batch["kernel"]), Path(batch["disk"]), force=bool(batch["force"] or task.get("force")))
        status.update(ok=True, exit_code=0, result=True, summary=results[0].summary())
    except HackbackError as e:
        status.update(exit_code=e.exit_code, message=f"{task['rid']}: {e.message}",
                      result=(Path(batch["config"]["work_dir"]) / "runs" / task["rid"] / "manifest.json").is_file())
        raise
    except Exception as e:  # not ours to explain, but the submitting side must hear of it
        status.update(message=f"{task['rid']}: {type(e).__name__}: {e}")
        raise
    except KeyboardInterrupt:
        status.update(exit_code=130, message=f"{task['rid']}: stopped by Slurm (scancel, or the time limit was near: "
                                             f"slurm.time = {batch['config']['slurm.time']}); its container was removed")
        raise
    finally:
        status["ended_at"] = time.time()
        _write_json(status_file, status)


def _node_hash_db() -> Path:
    root = Path(os.environ.get("HACKBACK_NODE_CACHE") or f"/var/tmp/hackback-node-{os.getuid()}")
    make_dir(root, "this node's hash cache (HACKBACK_NODE_CACHE)")
    return root / "hashes.sqlite"


def _env_here(engine: Engine, rec: dict[str, Any]) -> EnvArtifact:
    """The env as submitted, its image on this node's engine (loaded from the saved copy if missing)."""
    if engine.image_id(rec["image"]) is None:
        saved = Path(rec["saved_image"])
        if not saved.is_file():
            raise ArtifactError(f"env image {rec['image']} is not on this node and its saved copy {saved} is missing",
                                "submit again from a machine that has the image (it saves the copy), or docker load it here")
        with log.step(f"loading env image {rec['image']} on this node from {saved}"):
            engine.load_image(saved)
        if engine.image_id(rec["image"]) is None:
            raise ArtifactError(f"{saved} did not hold env image {rec['image']}", "delete it; the next submission saves it again")
    manifest = Manifest.read(Path(rec["directory"]))
    if manifest is None:
        raise ArtifactError(f"env {rec['directory']} has no manifest on this node", "is the work dir shared at the same path?")
    return EnvArtifact.from_json(rec, manifest)
