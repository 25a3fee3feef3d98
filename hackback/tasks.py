"""The tasks: a table of contents. Each task is a row of TASKS (its help, its
options) that becomes one pipeline request; every option is a row of OPTIONS,
which says what it sets: a config key (hackback/defaults.toml < hackback.toml <
HACKBACK_* < flags) or a field of the request. Flags default to None and fall
back to config. Docstrings are the --help."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from invoke import Collection, Task

from .base import config
from . import pipeline
from .edge import guarded


@dataclass(frozen=True)
class Option:
    help: str
    key: Optional[str] = None  # the config key it sets; None: a field of the request
    kind: Any = Optional[str]  # what invoke parses: Optional[str], Optional[int], bool, list
    # What the value is, shown in --help: FILE, DIR, PATH, NAME, INT, SIZE, NAME|DIR;
    # "" for a switch, or for a choice of a config key (its choices are shown: a|b|c).
    metavar: str = ""


GEM5_BINARY = ("a gem5.opt (or .fast) built elsewhere from --gem5-src's source: checked, then packaged "
               "instead of compiling gem5")
OPTIONS: dict[str, Option] = {
    "script": Option("a script for the restored guest to run; a DIR of *.rcS/*.sh gives one run each",
                     kind=list, metavar="FILE"),
    "payload": Option("its files are in the guest's /root/payload, the script's working directory, before the script "
                      "starts (through m5 readfile: image and checkpoint unchanged)", "restore.payload", list,
                      metavar="DIR"),
    "gem5-src": Option("a gem5 checkout or tarball to build instead of cloning the pinned release", "gem5.src",
                       metavar="PATH"),
    "gem5-binary": Option(GEM5_BINARY, "gem5.binary", metavar="FILE"),
    "m5": Option("install this m5 binary instead of building one", "image.m5", metavar="FILE"),
    "accel": Option("auto (default: KVM only where it really runs a guest), kvm or tcg", "image.accel"),
    "check": Option("check an existing image (the built one, or PATH) instead of building", kind=Any, metavar="PATH"),
    "base-config": Option("make target (x86_64_defconfig, tinyconfig) or .config file the fragment is merged over",
                          "kernel.base_config", metavar="TARGET|FILE"),
    "fragment": Option("a config fragment to merge instead of the shipped hackback/linux/gem5.config", "kernel.fragment",
                       metavar="FILE"),
    "boot-cpu": Option("CPU that boots Linux: atomic (default), timing, or kvm (hosts where KVM runs guests)",
                       "checkpoint.cpu", metavar="CPU"),
    "boot": Option("fast (default: no init system, straight to the root login) or full (systemd)", "checkpoint.boot"),
    "memory": Option("simulated memory, e.g. 2GiB (at most 3GiB); restores inherit it", "checkpoint.memory", metavar="SIZE"),
    "cores": Option("simulated cores; restores inherit it", "checkpoint.cores", Optional[int], metavar="INT"),
    "cpu": Option("CPU model for the restored run: atomic (default), timing or o3", "restore.cpu", metavar="CPU"),
    "save-checkpoint": Option("keep the checkpoint the script takes with hackback-checkpoint as checkpoints/NAME "
                              "(a child of the one restored); the run ends there", "restore.save_checkpoint",
                              metavar="NAME"),
    "switch-from": Option("atomic or timing: start the restore on this fast CPU and switch to --cpu at the script's m5 workbegin "
                          "(or after --switch-after-insts)", "restore.switch_from", metavar="CPU"),
    "switch-after-insts": Option("switch once the first core has committed INT instructions (0: at m5 workbegin)",
                                 "restore.switch_after_insts", Optional[int], metavar="INT"),
    "warmup-insts": Option("instructions on the new CPU before the measured part's stats start",
                           "restore.warmup_insts", Optional[int], metavar="INT"),
    "on": Option("local (default) or slurm: run the restores here, or as one Slurm job array (the [slurm] config section)", "restore.on"),
    "wait": Option("with --on slurm: follow the job array to its end and print every run's summary", "slurm.wait", bool),
    "rerun-failed": Option("with --on slurm: also submit again the runs whose script failed", "slurm.rerun_failed", bool),
    "gem5-config": Option("your copy of configs/hackback_fs.py to run instead of the shipped one", "restore.gem5_config",
                          metavar="FILE"),
    "gem5-args": Option("gem5's own option, whole: --gem5-args=--debug-flags=Exec", "restore.gem5_args", list,
                        metavar="OPT"),
    "caches": Option("classic caches: none (default), l1 (private L1s), l1l2 (private L1s and L2), l1l2walk (l1l2 with page-walk caches)", "restore.caches"),
    "l1d": Option("L1 data cache size with --caches l1, l1l2 or l1l2walk (a power of two, e.g. 32KiB)", "restore.l1d", metavar="SIZE"),
    "l1i": Option("L1 instruction cache size with --caches l1, l1l2 or l1l2walk", "restore.l1i", metavar="SIZE"),
    "l2": Option("L2 cache size with --caches l1l2 or l1l2walk (e.g. 512KiB)", "restore.l2", metavar="SIZE"),
    "jobs": Option("restores to run at once (default 1)", "restore.jobs", Optional[int], metavar="INT"),
    "checkpoint": Option("the checkpoint to use: a NAME under <work_dir>/checkpoints/ (as `hackback checkpoints` lists "
                         "them) or its DIR (default: the one of --name)", metavar="NAME|DIR"),
    "kernel": Option("check and use this vmlinux instead of the checkpoint's (must be the same file)", metavar="FILE"),
    "image": Option("check and use this disk image instead of the checkpoint's (must be the same file)", metavar="FILE"),
    "of-checkpoint": Option("only the runs restored from this checkpoint: a NAME (as `hackback checkpoints` lists it) "
                            "or its DIR", metavar="NAME|DIR"),
    "of-script": Option("only the runs of this script (its FILE, or the file's name or stem)", metavar="FILE"),
    "of-cpu": Option("only the runs on this CPU model: atomic, timing or o3 (a switching run counts for both)",
                     metavar="CPU"),
    "out": Option("where the CSV, Markdown and plots go (default <work_dir>/reports/<time>)", metavar="DIR"),
    "resource-dir": Option("also seed this gem5 resource directory (GEM5_RESOURCE_DIR) with sparse copies", metavar="DIR"),
    "suite": Option("the benchmark suite: npb (NAS Parallel Benchmarks 3.3.1-OMP) or gapbs (GAP 1.5); also the first "
                    "argument: hackback suite npb (or build npb)", "suite.name"),
    "members": Option("the members to run (or build), comma-separated (default: the suite's usual set: NPB's bt,cg,ep,ft,is,lu,mg,sp; "
                      "GAPBS's bfs,pr,cc,sssp,bc,tc)", "suite.members", metavar="NAME,..."),
    "input": Option("NPB's class (S, W, A, B, C; default S) or GAPBS's synthetic graph (g<N> Kronecker, u<N> uniform; "
                    "default g10)", "suite.input", metavar="CLASS|GRAPH"),
    "threads": Option("OpenMP threads in the guest (default: the checkpoint's cores; build: 1)", "suite.threads", Optional[int],
                      metavar="INT"),
    "trials": Option("GAPBS: trials of the kernel, each verified (default 1; the first is the ROI measured)",
                     "suite.trials", Optional[int], metavar="INT"),
    "source": Option("the suite's source: a tarball or tree, or a URL with --sha256 (default: suite.<name>.source)",
                     metavar="PATH|URL"),
    "sha256": Option("the source tarball's sha256 (checked before anything builds; a URL needs it)", metavar="SHA256"),
    "reference": Option("also run the full detailed run of the ROI, to put the estimate's error beside it",
                        "sample.reference", bool),
    "kind": Option("the kind of artifact to remove", metavar="env|images|kernels|checkpoints|runs|exports|benchmarks|profiles|samplings|estimates"),
    "images": Option("also remove the env images this work dir's env manifests name (none a container uses)", kind=bool),
    "all-owners": Option("also list, and remove after asking, containers not provably this work dir's leftovers", kind=bool),
    "yes": Option("do not ask before deleting", kind=bool),
    "name": Option("artifact name: env, image, kernel and checkpoint of this name (default: config `name`, 'default')",
                   "name", metavar="NAME"),
    "work-dir": Option("where artifacts and build trees live (default: config `work_dir`, ~/hackback-work)", "work_dir",
                       metavar="DIR"),
    "config": Option("a TOML file layered over the shipped defaults (default: ./hackback.toml if present)", metavar="FILE"),
    "force": Option("rebuild this step even if its manifest says it is up to date", kind=bool),
    "dry-run": Option("say what would be built, run, written or removed, and why; build, start, write and remove nothing",
                      kind=bool),
}


def metavar(option: str) -> str:
    """What --help shows for the option's value: its own metavar, or its config key's choices."""
    o = OPTIONS[option]
    if o.metavar or o.kind is bool:
        return o.metavar
    choices = config.choices(o.key) if o.key else ()
    return "|".join(c for c in choices if c) if choices else "TEXT"  # "" (unset) is the default, not a choice


COMMON = ("name", "work-dir", "config", "force", "dry-run")
# The option a task shows as --cpu: the checkpoint's boot CPU on `checkpoint`, the run's CPU on `restore`.
FLAG_NAMES = {"boot-cpu": "cpu", "of-checkpoint": "checkpoint", "of-script": "script", "of-cpu": "cpu"}

# One short flag per meaning, the same on every task that has the option; none is -h
# (that is help). Options not listed are long-only.
SHORT_FLAGS = {
    "config": "c", "force": "f", "name": "n", "work-dir": "w", "gem5-src": "g", "gem5-binary": "b",
    "cpu": "p", "script": "s", "kernel": "k", "image": "i", "jobs": "j", "yes": "y",
}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    doc: str
    options: tuple[str, ...]
    run: Callable[["TaskSpec", dict[str, Any]], Any]
    positional: tuple[str, ...] = ()  # options also given as the task's first arguments (hackback suite npb; see cli.reorder)
    reads: bool = False  # a task that reads the work dir (report, checkpoints, clean): only --work-dir is config


def _request(spec: TaskSpec, given: dict[str, Any]) -> pipeline.Request:
    """The pipeline request for a task's parsed flags: config keys to the config
    layers, the rest to the request."""
    # An iterable flag not given is [] to invoke: not given, so config decides.
    # A bool flag not given is False to invoke: the same, so an unset --wait leaves slurm.wait to config.
    flags = {key: None if _not_given(o, given.get(o)) else given.get(o) for o in spec.options if (key := OPTIONS[o].key)}
    if spec.reads:
        flags = {"work_dir": given.get("work-dir")}

    def path(option: str) -> Optional[Path]:
        return Path(given[option]) if given.get(option) else None

    check = given.get("check")
    return pipeline.Request(
        target="image-check" if check else spec.name, flags=flags, config_file=given.get("config"),
        force=bool(given.get("force")), dry_run=bool(given.get("dry-run")), scripts=tuple(given.get("script") or ()),
        checkpoint=given.get("checkpoint"), kernel=path("kernel"), disk=path("image"),
        check=check if check in (None, True) else Path(check), resource_dir=path("resource-dir"),
        source=given.get("source"), sha256=given.get("sha256"),
        of_checkpoint=given.get("of-checkpoint"), of_script=given.get("of-script"), of_cpu=given.get("of-cpu"),
        out=path("out"), kind=given.get("kind"), artifact=given.get("name") if spec.reads else None,
        images=bool(given.get("images")), all_owners=bool(given.get("all-owners")), yes=bool(given.get("yes")),
    )


def _not_given(option: str, value: Any) -> bool:
    return value is None or (isinstance(value, list) and not value) or (OPTIONS[option].kind is bool and value is False)


def _build(spec: TaskSpec, given: dict[str, Any]) -> Any:
    return guarded(lambda: pipeline.perform(_request(spec, given)))


TASKS = (
    TaskSpec("env", """Build the env image: Packer, QEMU, scons, gem5 (X86) and the x86 m5 utility.

    gem5 is compiled from --gem5-src (incrementally: the scons tree is kept), or
    a gem5 binary built elsewhere is packaged with --gem5-binary.""", ("gem5-src", "gem5-binary", *COMMON), _build),
    TaskSpec("image", "Build the hack-back disk image with Packer + QEMU (m5, autologin, rcS).",
             ("gem5-src", "m5", "accel", "check", *COMMON), _build),
    TaskSpec("kernel", "Build a vmlinux that gem5 can boot (and a bzImage QEMU can).",
             ("base-config", "fragment", *COMMON), _build),
    TaskSpec("checkpoint", "Boot the image in gem5 and save the checkpoint the guest asks for.",
             ("gem5-src", "gem5-binary", "boot-cpu", "boot", "memory", "cores", *COMMON), _build),
    TaskSpec("restore", "Restore the checkpoint and run scripts in the guest; collect stats and output.",
             ("script", "payload", "save-checkpoint", "cpu", "switch-from", "switch-after-insts", "warmup-insts", "caches", "l1d", "l1i", "l2", "gem5-config", "gem5-args", "jobs", "on", "wait", "rerun-failed", "checkpoint", "kernel", "image", "gem5-src", "gem5-binary", *COMMON), _build),
    TaskSpec("suite", """Build a benchmark suite (NPB, GAPBS) and run its members from one checkpoint, each judged by its own verification.

    Each member is built static (for gem5, and natively, where it must verify),
    then restored as its own run with its binary in the guest: every restore
    option applies (--cpu, --caches, --switch-from to measure only its ROI on
    the detailed CPU, -j, --on slurm). --save-checkpoint NAME (one member) saves
    the checkpoint at the member's own region of interest.""",
             ("suite", "members", "input", "threads", "trials", "source", "sha256", "payload", "save-checkpoint", "cpu",
              "switch-from", "switch-after-insts", "warmup-insts", "caches", "l1d", "l1i", "l2", "gem5-config", "gem5-args",
              "jobs", "on", "wait", "rerun-failed", "checkpoint", "kernel", "image", "gem5-src", "gem5-binary", *COMMON), _build,
             positional=("suite",)),
    TaskSpec("build", """Build a benchmark suite's members (NPB, GAPBS) and verify each natively, without running them in gem5.

    The same static binaries `hackback suite` runs (its artifacts: a suite run
    after it with the same suite.native_counts builds nothing), each proven by
    its own verdict in a native run; no image, kernel or checkpoint is needed.
    One OpenMP thread unless --threads.""",
             ("suite", "members", "input", "threads", "trials", "source", "sha256", "work-dir", "config", "force", "dry-run"),
             _build, positional=("suite",)),
    TaskSpec("sample", """Sampled simulation (SimPoint) of a ROI from a checkpoint at its start; the estimate with its error.

    The ROI is profiled on atomic (gem5's basic-block vectors), its intervals
    clustered and sampled (a few per cluster), a checkpoint taken before each
    sample, each measured on --cpu with --caches after its warm-ups, and the
    weighted CPI given with its 95% interval, beside the full detailed run when
    there is one. Only the samples rerun for another CPU or cache size.""",
             ("checkpoint", "cpu", "caches", "l1d", "l1i", "l2", "jobs", "on", "wait", "rerun-failed", "reference", "gem5-src",
              "gem5-binary", *COMMON), _build),
    TaskSpec("checkpoints", "List the checkpoints as a tree: parent and children, tick, how each was made, runs using it.",
             ("work-dir", "config", "dry-run"), _build, reads=True),
    TaskSpec("export", "Write gem5 resources JSON for the checkpoint, its kernel and disk (obtain_resource, offline).",
             ("checkpoint", "resource-dir", "gem5-src", "gem5-binary", *COMMON), _build),
    TaskSpec("report", "The runs as a table (terminal, CSV, Markdown) and plots (PNG), read from their stats.txt.",
             ("of-checkpoint", "of-script", "of-cpu", "out", "work-dir", "config", "dry-run"), _build, reads=True),
    TaskSpec("clean", "Reap containers and temp paths killed runs of this work dir left; remove artifacts (asks first).",
             ("kind", "name", "images", "all-owners", "yes", "work-dir", "config", "dry-run"), _build, reads=True),
)


def help_rows(task: str) -> list[tuple[str, str]]:
    """`hackback TASK --help`'s option lines, from the table: each flag with what
    its value is (FILE, DIR, INT, SIZE, a|b|c), repeatable ones said so."""
    spec = next(t for t in TASKS if t.name == task)
    rows = []
    for option in sorted(spec.options, key=_flag):
        o, flag, value = OPTIONS[option], _flag(option), metavar(option)
        short = SHORT_FLAGS.get(flag)
        if o.kind is bool:
            names = f"-{short}, --{flag}" if short else f"--{flag}"
        elif o.kind is Any:  # a value that may be left off: --check [PATH]
            names = f"--{flag}[={value}]"
        else:
            names = f"-{short}, --{flag}={value}" if short else f"--{flag}={value}"
        rows.append((names, o.help + (" (repeatable)" if o.kind is list else "")))
    return [*rows, ("-h, --help", "show this help")]


class HackbackTask(Task):  # type: ignore[misc]
    """A task made from a TaskSpec, whose short flags come from SHORT_FLAGS, not from
    invoke's first-free-letter rule (which gave -c for --config on one task and --cpu on another)."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        self.auto_shortflags = False
        opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(opts["names"][0])
        if short and short not in taken_names:
            opts["names"].append(short)
        return opts


def _flag(option: str) -> str:
    return FLAG_NAMES.get(option, option)


def _make(spec: TaskSpec) -> HackbackTask:
    """The invoke task for a row: a body whose signature lists the row's options
    (what invoke builds the flags from) and which hands them, by option name, to the row's run."""
    by_param = {_flag(o).replace("-", "_"): o for o in spec.options}

    def body(c: Any, **flags: Any) -> Any:
        return spec.run(spec, {by_param[p]: v for p, v in flags.items()})

    params = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for param, option in by_param.items():
        kind = OPTIONS[option].kind
        default: Any = False if kind is bool else None
        params.append(inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, default=default))
    body.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    body.__name__ = body.__qualname__ = spec.name
    body.__doc__ = spec.doc
    lists = [p for p, o in by_param.items() if OPTIONS[o].kind is list]
    optional = [p for p, o in by_param.items() if OPTIONS[o].kind is Any]
    return HackbackTask(body, name=spec.name, iterable=lists, optional=optional,
                        help={_flag(o): OPTIONS[o].help for o in spec.options})


ns = Collection(*(_make(spec) for spec in TASKS))
