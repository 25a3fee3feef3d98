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
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from . import gem5run, log
from .artifacts import (HashCache, Layout, Manifest, build_unless_fresh, digest_of, dry_running, file_record, keep_failed,
                        would_build)
from .checkpoint import CheckpointArtifact, gem5_identity, identity_digest
from .config import Config
from .engine import Engine
from .ownership import owner_label
from .env import EnvArtifact
from .errors import Gem5RunFailed, HackbackError, MismatchError, ScriptFailed, UsageError

SCRIPT_EXIT = re.compile(r"HACKBACK-SCRIPT-EXIT (\S+)")
KEY_STATS = ("simSeconds", "simInsts", "simOps", "hostSeconds", "hostInstRate",
             "board.processor.cores.core.ipc", "board.processor.cores.core.numCycles")
MAX_SCRIPT_BYTES = 1 << 20
_CAUSES = {"exit": "the guest's m5 exit"}


@dataclass(frozen=True)
class RunResult:
    run_id: str
    directory: Path
    cause: str
    script_status: Optional[str]  # as the rcS printed it: a number, or "empty"; None if never printed
    sim_seconds: float
    host_seconds: float
    stats: dict[str, str]
    reused: bool = False

    def summary(self) -> str:
        stats = ", ".join(f"{k}={v}" for k, v in self.stats.items() if k in ("simInsts", "board.processor.cores.core.ipc"))
        return (f"run {self.run_id}{' (up to date, not rerun)' if self.reused else ''}: "
                + (f"script exit status {self.script_status}; " if self.script_status is not None else
                   "the script ended the simulation itself (m5 exit); " if self.cause == "exit" else
                   "script exit status not reported; ")
                + f"ended by {_CAUSES.get(self.cause, self.cause)}; {self.sim_seconds:.4f} simulated s, {self.host_seconds:.1f} host s"
                + (f"; {stats}" if stats else "") + f"\n    {self.directory}")


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
    have, took = gem5_identity(env), info["gem5"]
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
    r = cfg.restore
    g = gem5_identity(env)
    return {
        "checkpoint": identity_digest(cpt),
        "script_sha256": script_sha,
        "gem5_binary_sha256": g["binary_sha256"],
        "board": {"cpu": r.cpu, "caches": r.caches, **({"l1d": r.l1d, "l1i": r.l1i, "l2": r.l2} if r.caches != "none" else {})},
        "run_script_sha256": HashCache.quick_sha256(gem5run.config_script()),
        "limits": {"max_sim_seconds": r.max_sim_seconds, "max_wall_seconds": r.max_wall_seconds},
    }


def run_id(cfg: Config, cpt: CheckpointArtifact, script: Path, inputs: dict[str, Any]) -> str:
    """Named by what it ran, with a digest of every input: the same inputs are the same run."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", script.stem)[:40] or "script"
    cache = f"-{cfg.restore.caches}" if cfg.restore.caches != "none" else ""
    return f"{cpt.name}-{stem}-{cfg.restore.cpu}{cache}-{digest_of(inputs)[:8]}"


def restore(cfg: Config, env: EnvArtifact, cpt: CheckpointArtifact, scripts: Sequence[Path],
            kernel: Optional[Path] = None, disk: Optional[Path] = None, force: bool = False,
            engine: Optional[Engine] = None) -> list[RunResult]:
    engine = engine or Engine.connect()
    layout = Layout(cfg.work_dir)
    hashes = HashCache(layout.hash_db)
    for s in scripts:
        check_script(s)
    kernel = kernel or Path(cpt.info["kernel"]["path"])
    disk = disk or Path(cpt.info["image"]["path"])
    warnings = verify(cpt, env, kernel, disk, hashes)
    for w in warnings:
        log.warn(w)
    plans = []
    for s in scripts:
        want = run_inputs(cfg, cpt, env, hashes.sha256(s))
        plans.append((s, want, run_id(cfg, cpt, s, want)))
    if dry_running():
        _plan_runs(layout, hashes, plans)
    jobs = max(1, min(cfg.restore.jobs, len(plans)))
    if jobs > 1:
        log.info(f"{len(plans)} restores, {jobs} at a time")
    results: list[Optional[RunResult]] = [None] * len(plans)
    failures: list[HackbackError] = []
    stop = threading.Event()

    def one(i: int) -> None:
        if stop.is_set():
            return
        s, want, rid = plans[i]
        results[i] = _one(cfg, Engine.connect() if jobs > 1 else engine, layout, hashes if jobs == 1 else HashCache(layout.hash_db),
                          env, cpt, kernel, disk, s, want, rid, warnings, force, label=f"gem5:{s.stem}" if jobs > 1 else "gem5:restore")

    if jobs == 1:
        for i in range(len(plans)):
            try:
                one(i)
            except (Gem5RunFailed, ScriptFailed) as e:
                failures.append(e)
    else:
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
                _stop_our_containers(engine)
                raise
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


def _plan_runs(layout: Layout, hashes: HashCache, plans: Sequence[tuple[Path, dict[str, Any], str]]) -> None:
    """A dry run: which of these runs would run, and why (WouldBuild), or none."""
    todo = []
    for script, want, rid in plans:
        directory = layout.artifact_dir("runs", rid)
        manifest = Manifest.read(directory)
        why = manifest.staleness("run", want, directory, hashes) if manifest else "not run yet"
        log.info(f"plan:   {script.name} -> {rid}: {why or 'done already (a rerun prints its summary)'}")
        if why:
            todo.append(rid)
    if todo:
        would_build(f"{len(todo)} of {len(plans)} run(s)", "listed above")


def _stop_our_containers(engine: Engine) -> None:
    me = owner_label()
    for cid, _name, owner in engine.containers(all_owners=True):
        if owner == me:
            engine.remove_container(cid)


def _one(cfg: Config, engine: Engine, layout: Layout, hashes: HashCache, env: EnvArtifact, cpt: CheckpointArtifact,
         kernel: Path, disk: Path, script: Path, want: dict[str, Any], rid: str, warnings: list[str], force: bool,
         label: str) -> RunResult:
    g = gem5_identity(env)
    r = cfg.restore
    board = gem5run.Board(memory=cpt.info["board"]["memory"], cores=int(cpt.info["board"]["cores"]), cpu=r.cpu,
                          caches=r.caches, l1d=r.l1d, l1i=r.l1i, l2=r.l2)
    copy_name = f"script{script.suffix or '.rcS'}"

    def build(tmp: Path, manifest: Manifest) -> None:
        shutil.copy2(script, tmp / copy_name)
        job = gem5run.Gem5Job(
            label=label, env_image=g["env_image"], binary=g["binary"], mode="restore", kernel=kernel, disk=disk,
            kernel_args=cpt.info["kernel_args"], board=board, out=tmp, checkpoint=cpt.cpt, script=tmp / copy_name,
            max_sim_seconds=r.max_sim_seconds, max_wall_seconds=r.max_wall_seconds,
        )
        with log.step(f"restore {rid}: {script.name} on {r.cpu} CPU" + (f", {r.caches} caches" if r.caches != "none" else "")):
            try:
                result = gem5run.run(engine, job)
            except Gem5RunFailed as e:
                # runs/ only ever holds complete runs; what a failed one printed is kept aside.
                kept = keep_failed(layout, "runs", rid, tmp)
                hint = f"{e.hint}; " if e.hint else ""
                raise Gem5RunFailed(f"{rid}: {e.message}", f"{hint}its console and gem5 log are in {kept}", e.result) from None
        (tmp / gem5run.CONSOLE).unlink(missing_ok=True)
        console = (tmp / "console.log").read_text(errors="replace") if (tmp / "console.log").is_file() else ""
        statuses = SCRIPT_EXIT.findall(console)
        outputs = {name: file_record(tmp / name, hashes)
                   for name in ("stats.txt", "config.ini", "config.json", "console.log", copy_name) if (tmp / name).is_file()}
        manifest.set_part("run", want, outputs, {
            "checkpoint": {"name": cpt.name, "directory": str(cpt.directory), "cpt": cpt.cpt.name},
            "script": {"path": str(script.resolve()), "sha256": want["script_sha256"]},
            "gem5": g,
            "gem5_warnings": warnings,
            "board": {**want["board"], "memory": board.memory, "cores": board.cores},
            "cause": result["cause"],
            "script_status": statuses[-1] if statuses else None,
            "sim_seconds": result["sim_seconds"],
            "host_seconds": result["host_seconds"],
            # Where the host time went: gem5's start-up and board, loading the
            # checkpoint, simulating; the container's whole life around them.
            "phases": result.get("phases", {}),
            "container_wall_seconds": result.get("container_wall_seconds"),
            "stats": key_stats(tmp / "stats.txt"),
        })

    done = build_unless_fresh(layout, "runs", rid, "run", want, force, build, f"run {rid}")
    return _finish(_result(rid, done.directory, done.manifest, reused=not done.built), script)


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
