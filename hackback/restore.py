"""`invoke restore --script FILE`: restore the checkpoint, hand the script to
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
import dataclasses
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from . import gem5run, log
from .artifacts import (HashCache, Layout, Manifest, Target, build_unless_fresh, digest_of, dry_running, file_record, keep_failed,
                        would_build)
from .config import Config
from .context import StepContext
from .engine import Engine
from .ownership import owner_label
from .records import CheckpointArtifact, EnvArtifact, RunResult
from .errors import Gem5RunFailed, HackbackError, MismatchError, ScriptFailed, UsageError

SCRIPT_EXIT = gem5run.SCRIPT_EXIT
KEY_STATS = ("simSeconds", "simInsts", "simOps", "hostSeconds", "hostInstRate",
             "board.processor.cores.core.ipc", "board.processor.cores.core.numCycles")
MAX_SCRIPT_BYTES = 1 << 20


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
                         "keep the script small and put large files and data in the image (invoke image)")
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
    for what, path, took in (("kernel", kernel, info["kernel"]), ("disk image", disk, info["image"])):
        if not path.is_file():
            raise UsageError(f"{what} {path} does not exist", f"checkpoint '{cpt.name}' was taken with {took['path']}")
        got, want = hashes.sha256(path), took["sha256"]
        if got != want:
            raise MismatchError(
                f"the {what} {path} (sha256 {got[:12]}…) is not the one checkpoint '{cpt.name}' was taken with ({want[:12]}…)",
                f"restore with that {what}, or take a new checkpoint with `invoke checkpoint --force`",
            )
    have, took = env.gem5(), info["gem5"]
    if have["release"] != took["release"]:
        raise MismatchError(
            f"env gem5 is release {have['release']}, checkpoint '{cpt.name}' was taken with {took['release']}",
            "checkpoints do not carry across gem5 releases; take a new one with this gem5",
        )
    if have["version_tags"] != took["version_tags"]:
        extra = sorted(set(have["version_tags"]) ^ set(took["version_tags"]))
        raise MismatchError(
            f"env gem5's checkpoint version tags differ from checkpoint '{cpt.name}' ({', '.join(extra[:3])})",
            "take a new checkpoint with this gem5",
        )
    warnings = []
    if have["tree_sha256"] != took["tree_sha256"] or have["binary_sha256"] != took["binary_sha256"]:
        warnings.append(
            f"env gem5 was built from a different {took['release']} tree than the one that took checkpoint "
            f"'{cpt.name}' (a modified gem5, same release and version tags): allowed, and recorded in the run's manifest"
        )
    return warnings


def run_inputs(cfg: Config, cpt: CheckpointArtifact, env: EnvArtifact, script_sha: str) -> dict[str, Any]:
    run_cfg = cfg.restore
    g = env.gem5()
    return {
        "checkpoint": cpt.identity_digest(),
        "script_sha256": script_sha,
        "gem5_binary_sha256": g["binary_sha256"],
        "board": {"cpu": run_cfg.cpu, "caches": run_cfg.caches, **({"l1d": run_cfg.l1d, "l1i": run_cfg.l1i, "l2": run_cfg.l2} if run_cfg.caches != "none" else {})},
        "run_script_sha256": gem5run.run_script_sha256(),
        "limits": {"max_sim_seconds": run_cfg.max_sim_seconds, "max_wall_seconds": run_cfg.max_wall_seconds},
    }


def run_id(cfg: Config, cpt: CheckpointArtifact, script: Path, inputs: dict[str, Any]) -> str:
    """Named by what it ran, with a digest of every input: the same inputs are the same run."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", script.stem)[:40] or "script"
    cache = f"-{cfg.restore.caches}" if cfg.restore.caches != "none" else ""
    return f"{cpt.name}-{stem}-{cfg.restore.cpu}{cache}-{digest_of(inputs)[:8]}"


@dataclass(frozen=True)
class _Restores:
    """What every run of one `invoke restore` shares."""

    ctx: StepContext
    env: EnvArtifact
    cpt: CheckpointArtifact
    kernel: Path
    disk: Path
    warnings: list[str]
    force: bool


@dataclass(frozen=True)
class _Plan:
    script: Path
    want: dict[str, Any]
    rid: str


def restore(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact, scripts: Sequence[Path],
            kernel: Optional[Path] = None, disk: Optional[Path] = None, force: bool = False) -> list[RunResult]:
    for s in scripts:
        check_script(s)
    kernel = kernel or Path(cpt.info["kernel"]["path"])
    disk = disk or Path(cpt.info["image"]["path"])
    warnings = verify(cpt, env, kernel, disk, ctx.hashes)
    for w in warnings:
        log.warn(w)
    runs = _Restores(ctx, env, cpt, kernel, disk, warnings, force)
    plans = []
    for s in scripts:
        want = run_inputs(ctx.cfg, cpt, env, ctx.hashes.sha256(s))
        plans.append(_Plan(s, want, run_id(ctx.cfg, cpt, s, want)))
    if dry_running():
        _plan_runs(ctx.layout, ctx.hashes, plans)
    jobs = max(1, min(ctx.cfg.restore.jobs, len(plans)))
    results, failures = _run_serially(runs, plans) if jobs == 1 else _run_in_parallel(runs, plans, jobs)
    done = [r for r in results if r is not None]
    if len(done) > 1:
        log.info(f"{len(done)} runs:")
    for r in done:
        log.info(r.summary())
    if failures:
        if len(failures) == 1:
            raise failures[0]
        first = failures[0]
        raise type(first)(f"{len(failures)} of {len(plans)} runs failed; first: {first.message}", first.hint)
    return done


_Outcomes = tuple[list[Optional[RunResult]], list[HackbackError]]


def _run_serially(runs: _Restores, plans: Sequence[_Plan]) -> _Outcomes:
    results: list[Optional[RunResult]] = []
    failures: list[HackbackError] = []
    for plan in plans:
        try:
            results.append(_one(runs, plan, "gem5:restore"))
        except (Gem5RunFailed, ScriptFailed) as e:
            failures.append(e)
    return results, failures


def _run_in_parallel(runs: _Restores, plans: Sequence[_Plan], jobs: int) -> _Outcomes:
    log.info(f"{len(plans)} restores, {jobs} at a time")
    results: list[Optional[RunResult]] = [None] * len(plans)
    failures: list[HackbackError] = []
    stop = threading.Event()

    def one(i: int) -> None:
        if not stop.is_set():
            results[i] = _one(dataclasses.replace(runs, ctx=runs.ctx.for_thread()), plans[i], f"gem5:{plans[i].script.stem}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, i) for i in range(len(plans))]
        try:
            for f in concurrent.futures.as_completed(futures):
                try:
                    f.result()
                except (Gem5RunFailed, ScriptFailed) as e:
                    failures.append(e)
        except BaseException:
            # Ctrl-C or a hard error: start nothing new, stop what runs (our containers).
            stop.set()
            for f in futures:
                f.cancel()
            _stop_our_containers(runs.ctx.engine)
            raise
    return results, failures


def _plan_runs(layout: Layout, hashes: HashCache, plans: Sequence[_Plan]) -> None:
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
        would_build(f"{len(todo)} of {len(plans)} run(s)", "listed above")


def _stop_our_containers(engine: Engine) -> None:
    me = owner_label()
    for cid, _name, owner in engine.containers(all_owners=True):
        if owner == me:
            engine.remove_container(cid)


def _board(cfg: Config, cpt: CheckpointArtifact) -> gem5run.Board:
    run_cfg = cfg.restore
    return gem5run.Board(memory=cpt.info["board"]["memory"], cores=int(cpt.info["board"]["cores"]), cpu=run_cfg.cpu,
                         caches=run_cfg.caches, l1d=run_cfg.l1d, l1i=run_cfg.l1i, l2=run_cfg.l2)


def _one(runs: _Restores, plan: _Plan, label: str) -> RunResult:
    ctx, cpt, run_cfg = runs.ctx, runs.cpt, runs.ctx.cfg.restore
    copy_name = f"script{plan.script.suffix or '.rcS'}"

    def build(tmp: Path, manifest: Manifest) -> None:
        shutil.copy2(plan.script, tmp / copy_name)
        g = runs.env.gem5()
        job = gem5run.Gem5Job(
            label=label, env_image=g["env_image"], binary=g["binary"], mode="restore", kernel=cpt.gem5_kernel(runs.kernel),
            disk=runs.disk, kernel_args=cpt.info["kernel_args"], board=_board(ctx.cfg, cpt), out=tmp, checkpoint=cpt.cpt,
            script=tmp / copy_name, max_sim_seconds=run_cfg.max_sim_seconds, max_wall_seconds=run_cfg.max_wall_seconds,
        )
        with log.step(f"restore {plan.rid}: {plan.script.name} on {run_cfg.cpu} CPU" + (f", {run_cfg.caches} caches" if run_cfg.caches != "none" else "")):
            # runs/ only ever holds complete runs; what a failed one printed is kept aside.
            result = gem5run.run(ctx.engine, job, keep_failed=lambda: keep_failed(ctx.layout, "runs", plan.rid, tmp),
                                 prefix=f"{plan.rid}: ")
        (tmp / gem5run.CONSOLE).unlink(missing_ok=True)
        outputs = {name: file_record(tmp / name, ctx.hashes)
                   for name in ("stats.txt", "config.ini", "config.json", "console.log", copy_name) if (tmp / name).is_file()}
        manifest.set_part("run", plan.want, outputs, _info(runs, plan, job, result, g))

    done = build_unless_fresh(ctx.layout, Target("runs", plan.rid, "run", f"run {plan.rid}"), plan.want, runs.force, build)
    return _finish(_result(plan.rid, done.directory, done.manifest, reused=not done.built), plan.script)


def _info(runs: _Restores, plan: _Plan, job: gem5run.Gem5Job, result: dict[str, Any], g: dict[str, Any]) -> dict[str, Any]:
    console = (job.out / "console.log").read_text(errors="replace") if (job.out / "console.log").is_file() else ""
    statuses = SCRIPT_EXIT.findall(console)
    cpt = runs.cpt
    return {
        "checkpoint": {"name": cpt.name, "directory": str(cpt.directory), "cpt": cpt.cpt.name},
        "script": {"path": str(plan.script.resolve()), "sha256": plan.want["script_sha256"]},
        "gem5": g,
        "gem5_warnings": runs.warnings,
        "board": {**plan.want["board"], "memory": job.board.memory, "cores": job.board.cores},
        "cause": result["cause"],
        "script_status": statuses[-1] if statuses else None,
        "sim_seconds": result["sim_seconds"],
        "host_seconds": result["host_seconds"],
        # Where the host time went: gem5's start-up and board, loading the
        # checkpoint, simulating; the container's whole life around them.
        "phases": result.get("phases", {}),
        "container_wall_seconds": result.get("container_wall_seconds"),
        "stats": key_stats(job.out / "stats.txt"),
    }


def _result(rid: str, directory: Path, manifest: Manifest, reused: bool = False) -> RunResult:
    info = manifest.parts["run"]["info"]
    return RunResult(rid, directory, info["cause"], info["script_status"], float(info["sim_seconds"]),
                     float(info["host_seconds"]), dict(info["stats"]), reused)


def _finish(result: RunResult, script: Path) -> RunResult:
    status = result.script_status
    if status is None and result.cause == "exit":
        # The script called m5 exit itself (the seed method's convention and
        # gem5-resources' run scripts): a normal ending, before the rcS could
        # print the status line.
        return result
    if status is None or status == "empty" or status != "0":
        log.info(result.summary())
        code = int(status) if status and status.isdigit() else 1
        raise ScriptFailed(
            f"script {script.name} {'exited ' + status if status and status.isdigit() else 'reported no exit status'} in the guest",
            f"its output is in {result.directory / 'console.log'}", exit_status=code, result=result,
        )
    return result


def key_stats(path: Path) -> dict[str, str]:
    """A few figures from the first stats dump (stats.txt holds one per dump)."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("---------- End Simulation Statistics"):
            break
        parts = line.split()
        if len(parts) >= 2 and parts[0] in KEY_STATS:
            out[parts[0]] = parts[1]
    return out
