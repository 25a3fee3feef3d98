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

from . import clean as _clean
from . import pipeline
from .edge import guarded


@dataclass(frozen=True)
class Option:
    help: str
    key: Optional[str] = None  # the config key it sets; None: a field of the request
    kind: Any = Optional[str]  # what invoke parses: Optional[str], Optional[int], bool, list


GEM5_BINARY = ("a gem5.opt (or .fast) built elsewhere from --gem5-src's source: checked, then packaged "
               "instead of compiling gem5")
OPTIONS: dict[str, Option] = {
    "script": Option("FILE or DIR (repeatable): a script for the restored guest to run; several, or a directory of "
                     "them, give several runs", kind=list),
    "payload": Option("DIR (repeatable): its files are in the guest's /root/payload, the script's working directory, "
                      "before the script starts (through m5 readfile: image and checkpoint unchanged)", "restore.payload", list),
    "gem5-src": Option("a gem5 checkout or tarball to build instead of cloning the pinned release", "gem5.src"),
    "gem5-binary": Option(GEM5_BINARY, "gem5.binary"),
    "m5": Option("install this m5 binary instead of building one", "image.m5"),
    "accel": Option("auto (default: KVM only where it really runs a guest), kvm or tcg", "image.accel"),
    "check": Option("check an existing image (the built one, or PATH) instead of building", kind=Any),
    "base-config": Option("make target (x86_64_defconfig, tinyconfig) or .config file the fragment is merged over",
                          "kernel.base_config"),
    "fragment": Option("a config fragment to merge instead of the shipped hackback/linux/gem5.config", "kernel.fragment"),
    "boot-cpu": Option("CPU that boots Linux: atomic (default), timing, or kvm (hosts where KVM runs guests)",
                       "checkpoint.cpu"),
    "boot": Option("fast (default: no init system, straight to the root login) or full (systemd)", "checkpoint.boot"),
    "memory": Option("simulated memory, e.g. 2GiB (at most 3GiB); restores inherit it", "checkpoint.memory"),
    "cores": Option("simulated cores; restores inherit it", "checkpoint.cores", Optional[int]),
    "cpu": Option("CPU model for the restored run: atomic (default), timing or o3", "restore.cpu"),
    "save-checkpoint": Option("NAME: keep the checkpoint the script takes with hackback-checkpoint as checkpoints/NAME "
                              "(a child of the one restored); the run ends there", "restore.save_checkpoint"),
    "switch-from": Option("atomic or timing: start the restore on it and switch to --cpu at the script's m5 workbegin "
                          "(or after --switch-after-insts)", "restore.switch_from"),
    "switch-after-insts": Option("N: switch once the first core has committed N instructions (0: at m5 workbegin)",
                                 "restore.switch_after_insts", Optional[int]),
    "warmup-insts": Option("N: instructions on the new CPU before the measured part's stats start",
                           "restore.warmup_insts", Optional[int]),
    "on": Option("local (default) or slurm: run the restores here, or as one Slurm job array (see [slurm])", "restore.on"),
    "wait": Option("with --on slurm: follow the job array to its end and print every run's summary", "slurm.wait", bool),
    "rerun-failed": Option("with --on slurm: also submit again the runs whose script failed", "slurm.rerun_failed", bool),
    "gem5-config": Option("FILE: your copy of configs/hackback_fs.py to run instead of the shipped one", "restore.gem5_config"),
    "gem5-args": Option("gem5's own option, whole (repeatable): --gem5-args=--debug-flags=Exec", "restore.gem5_args", list),
    "caches": Option("classic caches: none (default), l1, l1l2", "restore.caches"),
    "jobs": Option("restores to run at once (default 1)", "restore.jobs", Optional[int]),
    "checkpoint": Option("DIR: this checkpoint directory instead of checkpoints/<name> (--name NAME picks another by name)"),
    "kernel": Option("check and use this vmlinux instead of the checkpoint's (must be the same file)"),
    "image": Option("check and use this disk image instead of the checkpoint's (must be the same file)"),
    "of-checkpoint": Option("NAME: only the runs restored from this checkpoint (its name, as `invoke checkpoints` lists it)"),
    "of-script": Option("NAME: only the runs of this script (file name or stem)"),
    "of-cpu": Option("only the runs on this CPU model (atomic, timing, o3; a switching run counts for both)"),
    "out": Option("DIR: where the CSV, Markdown and plots go (default <work_dir>/reports/<time>)"),
    "resource-dir": Option("DIR: also seed this gem5 resource directory (GEM5_RESOURCE_DIR) with sparse copies"),
    "kind": Option("env, images, kernels, checkpoints, runs or exports"),
    "images": Option("also remove the env images this work dir's env manifests name (none a container uses)", kind=bool),
    "all-owners": Option("also list, and remove after asking, containers not provably this work dir's leftovers", kind=bool),
    "yes": Option("do not ask before deleting", kind=bool),
    "name": Option("artifact name (default: config `name`, 'default')", "name"),
    "work-dir": Option("where artifacts and build trees live (default: config `work_dir`, ~/hackback-work)", "work_dir"),
    "config": Option("a TOML file layered over the shipped defaults (default: ./hackback.toml if present)"),
    "force": Option("rebuild this step even if its manifest says it is up to date", kind=bool),
    "dry-run": Option("say what would be built (or run) and why, and build nothing", kind=bool),
}
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


def _request(spec: TaskSpec, given: dict[str, Any]) -> pipeline.Request:
    """The pipeline request for a task's parsed flags: config keys to the config
    layers, the rest to the request."""
    # An iterable flag not given is [] to invoke: not given, so config decides.
    # A bool flag not given is False to invoke: the same, so an unset --wait leaves slurm.wait to config.
    flags = {key: None if _not_given(o, given.get(o)) else given.get(o) for o in spec.options if (key := OPTIONS[o].key)}

    def path(option: str) -> Optional[Path]:
        return Path(given[option]) if given.get(option) else None

    check = given.get("check")
    return pipeline.Request(
        spec.name, flags, given.get("config"), bool(given.get("force")), bool(given.get("dry-run")),
        tuple(given.get("script") or ()), path("checkpoint"), path("kernel"), path("image"),
        check if check in (None, True) else Path(check), path("resource-dir"),
    )


def _not_given(option: str, value: Any) -> bool:
    return value is None or (isinstance(value, list) and not value) or (OPTIONS[option].kind is bool and value is False)


def _build(spec: TaskSpec, given: dict[str, Any]) -> Any:
    return guarded(lambda: pipeline.perform(_request(spec, given)))


def _clean_task(spec: TaskSpec, given: dict[str, Any]) -> Any:
    request = _clean.CleanRequest(kind=given.get("kind"), name=given.get("name"), images=bool(given.get("images")),
                                  all_owners=bool(given.get("all-owners")), yes=bool(given.get("yes")))
    return guarded(lambda: pipeline.clean_up({"work_dir": given.get("work-dir")}, given.get("config"), request))


def _report_task(spec: TaskSpec, given: dict[str, Any]) -> Any:
    return guarded(lambda: pipeline.make_report({"work_dir": given.get("work-dir")}, given.get("config"),
                                                given.get("of-checkpoint"), given.get("of-script"), given.get("of-cpu"),
                                                Path(given["out"]) if given.get("out") else None))


def _list_task(spec: TaskSpec, given: dict[str, Any]) -> Any:
    return guarded(lambda: pipeline.list_checkpoints({"work_dir": given.get("work-dir")}, given.get("config")))


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
             ("script", "payload", "save-checkpoint", "cpu", "switch-from", "switch-after-insts", "warmup-insts", "caches", "gem5-config", "gem5-args", "jobs", "on", "wait", "rerun-failed", "checkpoint", "kernel", "image", "gem5-src", "gem5-binary", *COMMON), _build),
    TaskSpec("checkpoints", "List the checkpoints as a tree: parent and children, tick, how each was made, runs using it.",
             ("work-dir", "config"), _list_task),
    TaskSpec("export", "Write gem5 resources JSON for the checkpoint, its kernel and disk (obtain_resource, offline).",
             ("checkpoint", "resource-dir", "gem5-src", "gem5-binary", *COMMON), _build),
    TaskSpec("report", "The runs as a table (terminal, CSV, Markdown) and plots (PNG), read from their stats.txt.",
             ("of-checkpoint", "of-script", "of-cpu", "out", "work-dir", "config"), _report_task),
    TaskSpec("clean", "Reap containers and temp paths killed runs of this work dir left; remove artifacts (asks first).",
             ("kind", "name", "images", "all-owners", "yes", "work-dir", "config"), _clean_task),
)


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
