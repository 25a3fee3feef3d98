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
import dataclasses
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from . import gem5run, log, stats
from . import payload as payload_
from .artifacts import (HashCache, Kind, Layout, Manifest, Target, build_unless_fresh, digest_of, dry_running, file_record, keep_failed,
                        would_build)
from .config import Config
from .context import StepContext
from .engine import Engine
from .ownership import owner_label
from .records import GEM5_KERNEL, CheckpointArtifact, EnvArtifact, RunResult
from .errors import ArtifactError, Gem5RunFailed, HackbackError, MismatchError, ResultsLost, ScriptFailed, UsageError

SCRIPT_EXIT = gem5run.SCRIPT_EXIT
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
    for what, path, took in (("kernel", kernel, info["kernel"]), ("disk image", disk, info["image"])):
        if not path.is_file():
            raise UsageError(f"{what} {path} does not exist", f"checkpoint '{cpt.name}' was taken with {took['path']}")
        got, want = hashes.sha256(path), took["sha256"]
        if got != want:
            raise MismatchError(
                f"the {what} {path} (sha256 {got[:12]}…) is not the one checkpoint '{cpt.name}' was taken with ({want[:12]}…)",
                f"the {what} was rebuilt or replaced since (a changed user layer, say): restore with the one it was "
                f"taken with, or take a new checkpoint with `hackback checkpoint`",
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


def run_inputs(cfg: Config, cpt: CheckpointArtifact, env: EnvArtifact, script_sha: str,
               payload_sha: Optional[str] = None) -> dict[str, Any]:
    run_cfg = cfg.restore
    g = env.gem5()
    return {
        **({"payload_sha256": payload_sha} if payload_sha else {}),
        "checkpoint": cpt.identity_digest(),
        "script_sha256": script_sha,
        "gem5_binary_sha256": g["binary_sha256"],
        "board": {"cpu": run_cfg.cpu, "caches": run_cfg.caches, **({"l1d": run_cfg.l1d, "l1i": run_cfg.l1i, "l2": run_cfg.l2} if run_cfg.caches != "none" else {}),
                  **({"switch_from": run_cfg.switch_from, "switch_after_insts": run_cfg.switch_after_insts,
                      "warmup_insts": run_cfg.warmup_insts} if run_cfg.switch_from else {})},
        "run_script_sha256": gem5run.run_script_sha256(run_cfg.gem5_config),
        **({"gem5_config": str(run_cfg.gem5_config)} if run_cfg.gem5_config else {}),
        **({"gem5_args": list(run_cfg.gem5_args)} if run_cfg.gem5_args else {}),
        "limits": {"max_sim_seconds": run_cfg.max_sim_seconds, "max_wall_seconds": run_cfg.max_wall_seconds},
    }


def run_id(cfg: Config, cpt: CheckpointArtifact, script: Path, inputs: dict[str, Any]) -> str:
    """Named by what it ran, with a digest of every input: the same inputs are the same run."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", script.stem)[:40] or "script"
    cache = f"-{cfg.restore.caches}" if cfg.restore.caches != "none" else ""
    cpu = f"{cfg.restore.switch_from}-to-{cfg.restore.cpu}" if cfg.restore.switch_from else cfg.restore.cpu
    return f"{cpt.name}-{stem}-{cpu}{cache}-{digest_of(inputs)[:8]}"


@dataclass(frozen=True)
class Restores:
    """What every run of one `hackback restore` shares."""

    ctx: StepContext
    env: EnvArtifact
    cpt: CheckpointArtifact
    kernel: Path
    disk: Path
    warnings: list[str]
    force: bool
    payload: Optional[payload_.Payload] = None


@dataclass(frozen=True)
class Plan:
    script: Path
    want: dict[str, Any]
    rid: str


def prepare(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact, scripts: Sequence[Path],
            kernel: Optional[Path] = None, disk: Optional[Path] = None, force: bool = False) -> tuple["Restores", list["Plan"]]:
    """Everything checked before a run starts (scripts, the checkpoint's kernel,
    image and gem5, the payload), and each script's run: its inputs and run id."""
    for s in scripts:
        check_script(s)
    kernel = kernel or Path(cpt.info["kernel"]["path"])
    disk = disk or Path(cpt.info["image"]["path"])
    warnings = verify(cpt, env, kernel, disk, ctx.hashes)
    for w in warnings:
        log.warn(w)
    brought = _payload(ctx.cfg, cpt)
    runs = Restores(ctx, env, cpt, kernel, disk, warnings, force, brought)
    payload_sha = brought.sha256(ctx.hashes) if brought else None
    plans = []
    for s in scripts:
        want = run_inputs(ctx.cfg, cpt, env, ctx.hashes.sha256(s), payload_sha)
        plans.append(Plan(s, want, run_id(ctx.cfg, cpt, s, want)))
    return runs, plans


def completed(ctx: StepContext, plan: "Plan") -> Optional[RunResult]:
    """The run's result if it is already in runs/ and up to date (None: it would run)."""
    directory = ctx.layout.artifact_dir("runs", plan.rid)
    manifest = Manifest.read(directory)
    if manifest is None or manifest.staleness("run", plan.want, directory, ctx.hashes) is not None:
        return None
    return _result(plan.rid, directory, manifest, reused=True)


def result_in(directory: Path, rid: str, reused: bool = False) -> RunResult:
    """The result a finished run's manifest records."""
    manifest = Manifest.read(directory)
    if manifest is None or "run" not in manifest.parts:
        raise ArtifactError(f"run {rid} has no manifest in {directory}", "its task did not finish; submit it again")
    return _result(rid, directory, manifest, reused=reused)


def restore(ctx: StepContext, env: EnvArtifact, cpt: CheckpointArtifact, scripts: Sequence[Path],
            kernel: Optional[Path] = None, disk: Optional[Path] = None, force: bool = False) -> list[RunResult]:
    runs, plans = prepare(ctx, env, cpt, scripts, kernel, disk, force)
    if dry_running():
        _plan_runs(ctx.layout, ctx.hashes, plans)
    child = ctx.cfg.restore.save_checkpoint
    if child:
        if len(plans) != 1:
            raise UsageError(f"--save-checkpoint {child} takes one script, not {len(plans)}", "name the set-up script alone")
        return [_save_child(runs, plans[0], child)]
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


def check_payload(cfg: Config) -> Optional[payload_.Payload]:
    """restore.payload (--payload) as it would be carried, or a one-line refusal;
    asked before anything is built."""
    if not cfg.restore.payload:
        return None
    return payload_.collect([Path(d).expanduser() for d in cfg.restore.payload], cfg.restore.payload_max_bytes)


def _payload(cfg: Config, cpt: CheckpointArtifact) -> Optional[payload_.Payload]:
    """The payload, and that the guest has room for it (its free disk, recorded with the checkpoint)."""
    brought = check_payload(cfg)
    if brought is None:
        return None
    free_kib = cpt.info.get("guest", {}).get("root_free_kib")
    if isinstance(free_kib, int) and free_kib >= 0 and brought.bytes > (free_kib - 64 * 1024) * 1024:
        raise UsageError(f"the payload is {brought.bytes / 2**20:.0f} MiB; the guest of checkpoint '{cpt.name}' has "
                         f"{free_kib / 1024:.0f} MiB free on its root filesystem (less 64 MiB kept free)",
                         "bring less, or build the image larger (image.size_mib) and take a new checkpoint")
    log.info(f"payload: {payload_.describe(brought)}")
    return brought


_Outcomes = tuple[list[Optional[RunResult]], list[HackbackError]]
# One run's failure: the others of a batch still run, and the batch fails after them.
RUN_FAILURES = (Gem5RunFailed, ScriptFailed, ResultsLost)


def _run_serially(runs: Restores, plans: Sequence[Plan]) -> _Outcomes:
    results: list[Optional[RunResult]] = []
    failures: list[HackbackError] = []
    for plan in plans:
        try:
            results.append(_one(runs, plan, "gem5:restore"))
        except RUN_FAILURES as e:
            failures.append(e)
    return results, failures


def _run_in_parallel(runs: Restores, plans: Sequence[Plan], jobs: int) -> _Outcomes:
    log.info(f"{len(plans)} restores, {jobs} at a time")
    results: list[Optional[RunResult]] = [None] * len(plans)
    failures: list[HackbackError] = []
    stop = threading.Event()

    def one(i: int) -> None:
        if not stop.is_set():
            results[i] = _one(dataclasses.replace(runs, ctx=runs.ctx.for_thread()), plans[i], f"gem5:{plans[i].script.stem}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool, \
            log.progress(f"{len(plans)} restores", len(plans), "runs") as bar:
        futures = [pool.submit(one, i) for i in range(len(plans))]
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
            _stop_our_containers(runs.ctx.engine)
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
        would_build(f"{len(todo)} of {len(plans)} run(s)", "listed above")


def _stop_our_containers(engine: Engine) -> None:
    me = owner_label()
    for cid, _name, owner in engine.containers(all_owners=True):
        if owner == me:
            engine.remove_container(cid)


def _board(cfg: Config, cpt: CheckpointArtifact) -> gem5run.Board:
    run_cfg = cfg.restore
    return gem5run.Board(memory=cpt.info["board"]["memory"], cores=int(cpt.info["board"]["cores"]), cpu=run_cfg.cpu,
                         caches=run_cfg.caches, l1d=run_cfg.l1d, l1i=run_cfg.l1i, l2=run_cfg.l2,
                         switch_from=run_cfg.switch_from, switch_after_insts=run_cfg.switch_after_insts,
                         warmup_insts=run_cfg.warmup_insts)


def _script_copy(plan: Plan) -> str:
    return f"script{plan.script.suffix or '.rcS'}"


def _run_gem5(runs: Restores, plan: Plan, tmp: Path, label: str, keep: tuple[Kind, str]) -> tuple[dict[str, Any], gem5run.Gem5Job]:
    """One restored run of plan.script in `tmp` (with its payload, saving a child
    checkpoint when the restore saves one); its result and job. A failed run's
    logs are kept as <work>/failed/<keep kind>-<keep name>."""
    ctx, cpt, run_cfg = runs.ctx, runs.cpt, runs.ctx.cfg.restore
    shutil.copy2(plan.script, tmp / _script_copy(plan))
    readfile = tmp / _script_copy(plan)
    if runs.payload is not None:
        readfile = tmp / READFILE  # header + script + index + files; removed after the run (the payload's digest is kept)
        payload_.write_stream(plan.script, runs.payload, readfile)
    g = runs.env.gem5()
    job = gem5run.Gem5Job(
        label=label, env_image=g["env_image"], binary=g["binary"], mode="restore", kernel=cpt.gem5_kernel(runs.kernel),
        disk=runs.disk, kernel_args=cpt.info["kernel_args"], board=_board(ctx.cfg, cpt), out=tmp, checkpoint=cpt.cpt,
        script=readfile, max_sim_seconds=run_cfg.max_sim_seconds, max_wall_seconds=run_cfg.max_wall_seconds,
        save_child=bool(run_cfg.save_checkpoint), config=run_cfg.gem5_config, gem5_args=run_cfg.gem5_args,
    )
    caches = f", {run_cfg.caches} caches" if run_cfg.caches != "none" else ""
    cpu = f"{run_cfg.switch_from} then {run_cfg.cpu}" if run_cfg.switch_from else run_cfg.cpu
    with log.step(f"restore {plan.rid}: {plan.script.name} on {cpu} CPU{caches}"):
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
        manifest.set_part("run", plan.want, outputs, _info(runs, plan, job, result, runs.env.gem5()))

    done = build_unless_fresh(ctx.layout, Target("runs", plan.rid, "run", f"run {plan.rid}"), plan.want, runs.force, build)
    return _finish(_result(plan.rid, done.directory, done.manifest, reused=not done.built), plan.script)


INHERITED = ("gem5", "kernel", "image", "board", "boot", "kernel_args", "timing")  # a child is its parent's system


def _save_child(runs: Restores, plan: Plan, name: str) -> RunResult:
    """The restore that ends in the guest's hackback-checkpoint: the checkpoint it
    saves becomes checkpoints/<name>, a child of the one restored, its manifest
    recording the parent, the script and payload that led to it, the CPU, the tick."""
    ctx, parent = runs.ctx, runs.cpt
    want = {**plan.want, "child": True}

    def build(tmp: Path, manifest: Manifest) -> None:
        result, job = _run_gem5(runs, plan, tmp, "gem5:child", ("checkpoints", name))
        cpt = tmp / str(result["checkpoint"])
        if not (cpt / "m5.cpt").is_file():
            raise ArtifactError(f"gem5 reported a child checkpoint but {cpt.name}/m5.cpt is missing", f"see {tmp / 'gem5.log'}")
        files = sorted(p for p in cpt.rglob("*") if p.is_file())
        if parent.info.get("gem5_kernel"):  # the stripped kernel it was booted with, beside it as beside its parent
            os.link(parent.directory / GEM5_KERNEL, tmp / GEM5_KERNEL)
            ctx.hashes.linked(parent.directory / GEM5_KERNEL, tmp / GEM5_KERNEL)
            files.append(tmp / GEM5_KERNEL)
        info = {k: parent.info[k] for k in (*INHERITED, "gem5_kernel") if k in parent.info}
        info.update(_stats(tmp / "stats.txt", result), cpt=cpt.name, tick=int(result["final_tick"]),
                    sim_seconds=result["sim_seconds"], host_seconds=result["host_seconds"],
                    console_last_line=result.get("console_last_line", ""),
                    parent={"name": parent.name, "directory": str(parent.directory), "cpt": parent.cpt.name,
                            "identity": parent.identity_digest()},
                    made_by={"script": {"path": str(plan.script.resolve()), "sha256": plan.want["script_sha256"]},
                             "payload_sha256": plan.want.get("payload_sha256"), **job.board.__dict__})
        if room := gem5run.guest_room(tmp / gem5run.CONSOLE_COPY):
            info["guest"] = room
        manifest.set_part("checkpoint", want, {str(p.relative_to(tmp)): file_record(p, ctx.hashes) for p in files}, info)

    done = build_unless_fresh(ctx.layout, Target("checkpoints", name, "checkpoint", f"checkpoint '{name}'"), want,
                              runs.force, build)
    info = done.manifest.parts["checkpoint"]["info"]
    log.info(f"child checkpoint '{name}': {info['cpt']} at tick {info['tick']}, a child of '{parent.name}' "
             f"({done.directory}); restore it with --checkpoint {done.directory}")
    return RunResult(name, done.directory, "checkpoint", None, float(info["sim_seconds"]), float(info["host_seconds"]),
                     dict(info.get("stats", {})), not done.built, dict(info.get("roi", {})))


def _stats(path: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The whole run's figures (all its stats dumps) and, when the script marked
    one with m5 workbegin/workend, the region of interest's apart."""
    every = stats.dumps(path)
    out: dict[str, Any] = {"stats": stats.whole_run(every), "stats_dumps": len(every)}
    roi = stats.roi_dump(result)
    if roi is not None and roi < len(every):
        out["roi"] = {**stats.region(every[roi]), "dump": roi + 1}
    if len(every) > 1:
        out["parts"] = stats.parts(every, result)
    if result.get("switch"):
        out["switch"] = result["switch"]
    return out


def _console(out: Path) -> str:
    path = out / gem5run.CONSOLE_COPY
    return path.read_text(errors="replace") if path.is_file() else ""


def _script_status(console: str) -> Optional[str]:
    """The guest's last word on the script; a payload that could not be unpacked
    (said by hackback-guest, or by the payload's own header on older images,
    whose rcS then prints the header's exit status) wins."""
    statuses = SCRIPT_EXIT.findall(console)
    return "payload" if "payload" in statuses else statuses[-1] if statuses else None


def _info(runs: Restores, plan: Plan, job: gem5run.Gem5Job, result: dict[str, Any], g: dict[str, Any]) -> dict[str, Any]:
    cpt = runs.cpt
    return {
        "checkpoint": {"name": cpt.name, "directory": str(cpt.directory), "cpt": cpt.cpt.name},
        "script": {"path": str(plan.script.resolve()), "sha256": plan.want["script_sha256"]},
        "gem5": g,
        "gem5_warnings": runs.warnings,
        "board": {**plan.want["board"], "memory": job.board.memory, "cores": job.board.cores},
        "cause": result["cause"],
        "script_status": _script_status(_console(job.out)),
        "sim_seconds": result["sim_seconds"],
        "host_seconds": result["host_seconds"],
        # Where the host time went: gem5's start-up and board, loading the
        # checkpoint, simulating; the container's whole life around them.
        "phases": result.get("phases", {}),
        "container_wall_seconds": result.get("container_wall_seconds"),
        **_stats(job.out / "stats.txt", result),
        **({"payload": {"dirs": [str(d) for d in runs.payload.dirs], "files": len(runs.payload.files),
                        "bytes": runs.payload.bytes, "sha256": plan.want["payload_sha256"]}} if runs.payload else {}),
    }


def _result(rid: str, directory: Path, manifest: Manifest, reused: bool = False) -> RunResult:
    info = manifest.parts["run"]["info"]
    return RunResult(rid, directory, info["cause"], info["script_status"], float(info["sim_seconds"]),
                     float(info["host_seconds"]), dict(info["stats"]), reused, dict(info.get("roi", {})))


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
        what = {"payload": "did not run: its payload could not be unpacked", "empty": "reached the guest empty"}.get(
            status or "", f"exited {status}" if status and status.isdigit() else "reported no exit status")
        raise ScriptFailed(f"script {script.name} {what} in the guest", f"its output is in {result.directory / 'console.log'}",
                           exit_status=code, result=result)
    return result
