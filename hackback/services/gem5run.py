"""One gem5 full-system run in the env image, for the checkpoint and restore
steps: configs/hackback_fs.py with the kernel, disk, checkpoint and script
mounted read-only and only the output directory writable.

The run script ends every simulation itself and writes hackback-result.json;
here that is read back, progress lines become one-line updates, and gem5's own
output goes to gem5.log (its fatal lines are shown). What the two sides agree
on (marker lines, file names, endings, cache defaults) is stated once, in
configs/hackback_contract.json, which both read.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping, Optional

from ..base import log, resources
from . import stats
from ..store.hashes import HashCache, digest_of
from ..base.engine import Engine, Mount, RunSpec
from ..base.errors import ArtifactError, Gem5RunFailed
from ..store.records import Board, Gem5Result, GuestRoom

CONFIG_MNT = "/hackback/configs"
OUT_MNT = "/hackback/out"
KERNEL_MNT = "/hackback/in/vmlinux"
DISK_MNT = "/hackback/in/disk.img"
CPT_PARENT = "/hackback/in/checkpoint"
SCRIPT_MNT = "/hackback/in/script"
RUN_SCRIPT = "hackback_fs.py"
CONTRACT_FILE = "hackback_contract.json"  # beside the run script, which reads it too


@dataclass(frozen=True)
class Contract:
    """configs/hackback_contract.json, the run script's side of which is in
    configs/hackback_fs.py (its _doc strings say what each value is)."""

    version: int
    progress_mark: str  # marker lines: the prefix, then one space
    checkpoint_mark: str
    result_mark: str
    script_exit_mark: str  # printed by the guest, on its console
    result_file: str
    result_tmp: str
    console: str  # what gem5 names the serial console's output
    console_copy: str  # the copy kept of it
    causes: Mapping[str, str]  # name (as in code) -> the result's cause string
    expected: Mapping[str, str]  # mode -> the cause it should end with
    wrong_ending_status: int
    l1d: str
    l1i: str
    l2: str


def _load_contract() -> Contract:
    path = resources.configs_dir() / CONTRACT_FILE
    try:
        raw = json.loads(path.read_text())
        if raw["version"] != 1:
            raise ValueError(f"version {raw['version']}; this hackback knows version 1")
        marks, files, caches = raw["markers"], raw["files"], raw["cache_defaults"]
        return Contract(
            version=raw["version"],
            progress_mark=marks["progress"], checkpoint_mark=marks["checkpoint"], result_mark=marks["result"],
            script_exit_mark=marks["script_exit"],
            result_file=files["result"], result_tmp=files["result_tmp"], console=files["console"],
            console_copy=files["console_copy"],
            causes=MappingProxyType({k: v for k, v in raw["causes"].items() if not k.startswith("_")}),
            expected=MappingProxyType({k: v for k, v in raw["expected"].items() if not k.startswith("_")}),
            wrong_ending_status=raw["exit_status"]["wrong_ending"],
            l1d=caches["l1d"], l1i=caches["l1i"], l2=caches["l2"],
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{path} is unreadable ({e!r})", "a broken install? it ships with hackback's configs/") from None


CONTRACT = _load_contract()
CONSOLE = CONTRACT.console
CONSOLE_COPY = CONTRACT.console_copy
RESULT_FILE = CONTRACT.result_file
# The guest's line after the restored script: its exit status (or empty/unreadable).
SCRIPT_EXIT: re.Pattern[str] = re.compile(re.escape(CONTRACT.script_exit_mark) + r" (\S+)")
_CAUSE = CONTRACT.causes
_CAUSE_NAME = {cause: name for name, cause in _CAUSE.items()}


@dataclass(frozen=True)
class Gem5Job:
    label: str  # shown before progress lines; names the container
    env_image: str
    binary: str  # path of gem5 inside the env image
    mode: str  # boot | restore
    kernel: Path
    disk: Path
    kernel_args: str
    board: Board
    out: Path  # host directory, gem5's --outdir
    checkpoint: Optional[Path] = None  # restore: a cpt.<tick> directory
    script: Optional[Path] = None
    max_sim_seconds: int = 0
    max_wall_seconds: int = 0
    save_child: bool = False  # restore: the guest's hackback-checkpoint saves cpt.<tick> into out and ends the run
    save_at: str = "guest"  # ... or its first m5 workbegin (a benchmark's region of interest)
    config: Optional[Path] = None  # a researcher's own run script (a copy of configs/hackback_fs.py); None: ours
    gem5_args: tuple[str, ...] = ()  # gem5's own options, before the run script (--debug-flags=...)
    expected_sim_seconds: Optional[float] = None  # the bar's total: the last boot's length, when known
    extra: tuple[str, ...] = ()  # more run-script options: a profile's (--simpoint-interval), a sampling pass's


USER_CONFIG_MNT = "/hackback/user-config"  # a researcher's run script, with our contract file beside it


def config_script() -> Path:
    return resources.configs_dir() / RUN_SCRIPT


def _script_in_container(job: Gem5Job) -> str:
    return f"{USER_CONFIG_MNT}/{job.config.name}" if job.config else f"{CONFIG_MNT}/{RUN_SCRIPT}"


def command(job: Gem5Job) -> list[str]:
    cmd = [
        job.binary, "--outdir", OUT_MNT, *job.gem5_args,
        _script_in_container(job), job.mode,
        "--kernel", KERNEL_MNT, "--disk", DISK_MNT, "--kernel-args", job.kernel_args,
        *job.board.args(),
        "--max-sim-seconds", str(job.max_sim_seconds), "--max-wall-seconds", str(job.max_wall_seconds),
    ]
    if job.mode == "boot":
        cmd += ["--checkpoint-dir", OUT_MNT]
    else:
        assert job.checkpoint is not None and job.script is not None
        cmd += ["--checkpoint", f"{CPT_PARENT}/{job.checkpoint.name}", "--script", SCRIPT_MNT]
        if job.save_child:
            cmd += ["--checkpoint-dir", OUT_MNT, "--checkpoint-at", job.save_at]
    return [*cmd, *job.extra]


def mounts(job: Gem5Job) -> list[Mount]:
    # Files, not their directories: nothing beside them is visible, and every
    # input is read-only, so a run cannot change what it reads.
    out = [
        Mount(resources.configs_dir(), CONFIG_MNT),
        *([Mount(job.config.resolve(), f"{USER_CONFIG_MNT}/{job.config.name}"),
           Mount(resources.configs_dir() / CONTRACT_FILE, f"{USER_CONFIG_MNT}/{CONTRACT_FILE}")] if job.config else []),
        Mount(job.kernel.resolve(), KERNEL_MNT),
        Mount(job.disk.resolve(), DISK_MNT),
        Mount(job.out.resolve(), OUT_MNT, read_only=False),
    ]
    if job.checkpoint is not None:
        out.append(Mount(job.checkpoint.resolve(), f"{CPT_PARENT}/{job.checkpoint.name}"))
    if job.script is not None:
        out.append(Mount(job.script.resolve(), SCRIPT_MNT))
    return out


def run(engine: Engine, job: Gem5Job, show: Callable[[str], None] = log.info,
        keep_failed: Optional[Callable[[], Path]] = None, prefix: str = "") -> Gem5Result:
    """Run gem5 to its end; the result record. Raises Gem5RunFailed for any
    ending but the expected one (checkpoint for a boot, m5 exit for a restore):
    the message starts with `prefix`, its hint says what to do and, with
    `keep_failed` (which keeps the run's logs out of the artifact tree and says
    where), where the console and gem5 log are."""
    try:
        return _run(engine, job, show)
    except Gem5RunFailed as e:
        if keep_failed is None and not prefix:
            raise
        hint = "; ".join(h for h in (e.hint, f"its console and gem5 log are in {keep_failed()}" if keep_failed else "") if h)
        raise Gem5RunFailed(f"{prefix}{e.message}", hint, e.result) from None


def run_script_sha256(script: Optional[Path] = None) -> str:
    """The run script (ours, or a researcher's copy) and the contract it keeps: both decide what a run does."""
    return digest_of([HashCache.sha256_uncached(script or config_script()),
                      HashCache.sha256_uncached(resources.configs_dir() / CONTRACT_FILE)])


def _run(engine: Engine, job: Gem5Job, show: Callable[[str], None]) -> Gem5Result:
    job.out.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(job.env_image, command(job), step=f"gem5-{job.mode}", mounts=mounts(job), workdir=OUT_MNT,
                   kvm=job.board.cpu == "kvm", network="none")
    start = time.monotonic()
    try:
        with open(job.out / "gem5.log", "w") as gem5_log, \
                log.progress(job.label, job.expected_sim_seconds, "simulated s") as bar:
            printer = _Printer(job.label, show, bar)
            status = engine.run(spec, phase=job.label, log_file=gem5_log, on_line=printer, check=False)
    finally:
        _keep_console(job.out)
    wall = time.monotonic() - start
    result = _read_result(job.out)
    if result is None:
        errors = _gem5_errors(job.out)
        why = errors[-1] if errors else f"gem5 exited {status} without a result"
        raise Gem5RunFailed(f"{job.label}: gem5 stopped before the run ended: {why}")
    result = dataclasses.replace(result, container_wall_seconds=round(wall, 1))
    if not result.ok:
        raise Gem5RunFailed(f"{job.label}: {describe_ending(result)}", _hint(result, job), result=result)
    # The run script writes its result before gem5's exit-time work (the final
    # stats dump, teardown): an ok result is not yet a finished run.
    if status != 0:
        errors = _gem5_errors(job.out)
        raise Gem5RunFailed(f"{job.label}: gem5 exited {_status_text(status)} after the run ended as expected"
                            f"{': ' + errors[-1] if errors else ''}; its stats cannot be trusted",
                            "see gem5.log; run it again", result=result)
    problem = stats.problem(job.out / "stats.txt", result.stats_dumps)
    if problem:
        raise Gem5RunFailed(f"{job.label}: {problem}, though gem5 exited 0", "see gem5.log; run it again", result=result)
    return result


def _status_text(status: int) -> str:
    # Docker reports a container killed by signal N as 128 + N.
    return f"{status} (killed by signal {status - 128})" if 128 < status < 160 else str(status)


def describe_ending(result: Gem5Result) -> str:
    cause = result.cause
    sim = f"after {result.sim_seconds:.3f} simulated s ({result.host_seconds:.0f} host s)"
    text = {
        _CAUSE["checkpoint"]: f"the guest asked for a checkpoint {sim}",
        _CAUSE["exit"]: f"the guest called m5 exit {sim}",
        _CAUSE["fail"]: f"the guest called m5 fail {sim}",
        _CAUSE["kernel_panic"]: f"the guest kernel panicked {sim}: {result.panic_line or result.console_last_line}",
        _CAUSE["kernel_oops"]: f"the guest kernel oopsed {sim}",
        _CAUSE["max_sim_seconds"]: f"the simulated-time limit was reached {sim} without the expected ending",
        _CAUSE["max_wall_seconds"]: f"the wall-clock limit was reached {sim} without the expected ending",
        _CAUSE["interrupted"]: f"gem5 was interrupted {sim}",
        _CAUSE["no_switch"]: f"the guest called m5 exit {sim} but the run never switched to the {result.cpu} CPU",
        _CAUSE["no_measure"]: f"the guest called m5 exit {sim} but nothing was measured: the warm-up or switch count "
                              f"outlasted the region of interest",
        _CAUSE["roi_end"]: f"the guest ended its region of interest (m5 workend) {sim}",
        _CAUSE["measured"]: f"the instructions to measure were measured {sim}",
    }.get(cause, f"gem5 stopped ({result.gem5_exit_cause or cause}) {sim}")
    if cause == result.expected and not result.ok:
        text += "; but no checkpoint was saved"
    elif cause != result.expected and cause not in (_CAUSE["no_switch"], _CAUSE["no_measure"]):
        wanted = {_CAUSE["checkpoint"]: "a checkpoint", _CAUSE["roi_end"]: "the end of the region of interest",
                  _CAUSE["measured"]: "the instruction count to be measured"}.get(result.expected, "the guest to call m5 exit")
        text += f"; expected {wanted}"
    return text


def _hint(result: Gem5Result, job: Gem5Job) -> str:
    cause = result.cause
    if cause == _CAUSE["checkpoint"] and job.mode == "restore" and not job.save_child:
        return ("the script asked for a checkpoint (hackback-checkpoint or m5 checkpoint): to keep it as a child "
                "checkpoint, restore with --save-checkpoint NAME")
    if cause == _CAUSE["no_switch"]:
        return ("a switching restore switches at the script's `m5 workbegin`, which never came: add one before "
                "the region to measure, or switch after a count (restore.switch_after_insts)")
    if cause == _CAUSE["no_measure"]:
        return ("lower restore.warmup_insts (or restore.switch_after_insts), or mark a longer region with "
                "m5 workbegin/workend; the warm-up counts the first core's instructions")
    if cause == _CAUSE["exit"] and job.save_child:
        return "the script ended without calling hackback-checkpoint, so there is no child checkpoint to save"
    if cause in (_CAUSE["max_sim_seconds"], _CAUSE["max_wall_seconds"]):
        name = _CAUSE_NAME[cause]  # the Gem5Job field, and the config key
        key = f"{'checkpoint' if job.mode == 'boot' else 'restore'}.{name}"
        return (f"last console line: {result.console_last_line!r}; if the guest was still working, raise "
                f"{key} (now {getattr(job, name)}; 0 = no limit) in hackback.toml or as "
                f"HACKBACK_{key.replace('.', '_').upper()}")
    return ""


def _read_result(out: Path) -> Optional[Gem5Result]:
    path = out / RESULT_FILE
    try:
        return Gem5Result.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise ArtifactError(f"{path} is unreadable ({e})") from None
    except ArtifactError as e:
        raise ArtifactError(f"{path} is not a result this hackback's run script writes: {e.message}",
                            "a copy of configs/hackback_fs.py from another hackback? copy it again") from None


def _keep_console(out: Path) -> None:
    src = out / CONSOLE
    if src.is_file():
        shutil.copyfile(src, out / CONSOLE_COPY)


def _gem5_errors(out: Path) -> list[str]:
    try:
        text = (out / "gem5.log").read_text(errors="replace")
    except OSError:
        return []
    return [_GEM5_ERROR.sub(r"gem5 \1: ", ln.strip()) for ln in text.splitlines()
            if _GEM5_ERROR.search(ln) or ln.startswith(("Traceback", "NotImplementedError", "Exception")) or "Error:" in ln]


# gem5's own errors: "src/dev/pci/host.cc:171: panic: ..." or "fatal: ...".
_GEM5_ERROR = re.compile(r"^(?:\S+:\d+: )?(panic|fatal): ")


class _Printer:
    """gem5 is chatty; show our progress lines and its fatal/panic lines, keep the rest in gem5.log."""

    def __init__(self, label: str, show: Callable[[str], None], bar: Optional[log.Progress] = None) -> None:
        self.label, self.show, self.bar = label, show, bar

    def __call__(self, line: str) -> None:
        if line.startswith(f"{CONTRACT.progress_mark} "):
            try:
                p = json.loads(line.split(" ", 1)[1])
            except ValueError:
                return
            if self.bar is not None and self.bar.shown:
                self.bar.update(float(p["sim"]), str(p["console"]))
                return
            self.show(f"[{self.label}] simulated {p['sim']:.3f} s in {log.format_seconds(p['host'])}; "
                      f"console: {p['console']}")
        elif line.startswith(f"{CONTRACT.checkpoint_mark} "):
            self.show(f"[{self.label}] {line.split(' ', 1)[1]}")
        elif _GEM5_ERROR.search(line) or "Traceback" in line or "Error:" in line:
            self.show(f"[{self.label}] {line}")


def guest_room(console: Path) -> Optional[GuestRoom]:
    """What the guest could hold when it was checkpointed: `HACKBACK-GUEST mem_available_kib=N root_free_kib=M` from a boot's console."""
    try:
        text = console.read_text(errors="replace")
    except OSError:
        return None
    lines = [ln for ln in text.splitlines() if ln.startswith("HACKBACK-GUEST ")]
    if not lines:
        return None
    pairs = dict(kv.split("=", 1) for kv in lines[-1].split()[1:] if "=" in kv)
    known = {k: int(v) for k, v in pairs.items() if k in ("mem_available_kib", "root_free_kib") and v.lstrip("-").isdigit()}
    return GuestRoom(**known)
