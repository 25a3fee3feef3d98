"""The tasks: a table of contents. Each is a few lines calling one library
function; docstrings are the --help. Flags default to None and fall back to
config (hackback/defaults.toml < hackback.toml < HACKBACK_* < flags)."""
from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from invoke import Collection, Task
from invoke import task as _invoke_task

from . import checkpoint as _checkpoint
from . import log
from . import clean as _clean
from . import env as _env
from . import image as _image
from . import kernel as _kernel
from . import pipeline
from . import restore as _restore
from .artifacts import Layout, WouldBuild
from .artifacts import dry_run as dry_run_mode
from .config import Config
from .edge import guarded, load_config
from .engine import Engine
from .errors import UsageError

# One short flag per meaning, the same on every task that has the option; none is -h
# (that is help). Options not listed are long-only.
SHORT_FLAGS = {
    "config": "c", "force": "f", "name": "n", "work-dir": "w", "gem5-src": "g", "gem5-binary": "b",
    "cpu": "p", "script": "s", "kernel": "k", "image": "i", "jobs": "j", "yes": "y",
}


class HackbackTask(Task):  # type: ignore[misc]
    """A task whose short flags come from SHORT_FLAGS, not from invoke's
    first-free-letter rule (which gave -c for --config on one task and --cpu on another)."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        self.auto_shortflags = False
        opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(opts["names"][0])
        if short and short not in taken_names:
            opts["names"].append(short)
        return opts


def task(*args: Any, **kwargs: Any) -> Any:
    return _invoke_task(*args, klass=HackbackTask, **kwargs)


COMMON = {
    "name": "artifact name (default: config `name`, 'default')",
    "work-dir": "where artifacts and build trees live (default: config `work_dir`, ~/hackback-work)",
    "config": "a TOML file layered over the shipped defaults (default: ./hackback.toml if present)",
    "force": "rebuild this step even if its manifest says it is up to date",
    "dry-run": "say what would be built (or run) and why, and build nothing",
}

def builders(forced: Optional[str] = None, restore: Optional["RestoreRequest"] = None) -> Mapping[str, pipeline.Builder]:
    """Each step's builder: (config, results of the steps it needs) -> its artifact.
    --force reaches only the step asked for (`forced`), never its dependencies."""

    def force(step: str) -> bool:
        return step == forced

    def run_restore(cfg: Config, deps: Mapping[str, Any]) -> Any:
        assert restore is not None
        return _restore.restore(cfg, deps["env"], deps["checkpoint"], restore.scripts, restore.kernel, restore.disk,
                                force=force("restore"))

    return {
        # An explicit image.m5 (--m5) stands in for the one `invoke env` builds.
        "m5": lambda cfg, deps: cfg.image.m5 or _env.ensure_m5(cfg, force=force("m5")).m5,
        "env": lambda cfg, deps: _env.ensure(cfg, force=force("env")),
        "image": lambda cfg, deps: _image.ensure(cfg, deps["m5"], force=force("image")),
        "kernel": lambda cfg, deps: _kernel.ensure(cfg, force=force("kernel")),
        "checkpoint": lambda cfg, deps: _checkpoint.ensure(cfg, deps["env"], deps["image"], deps["kernel"],
                                                           force=force("checkpoint")),
        "restore": run_restore,
    }


@dataclass(frozen=True)
class RestoreRequest:
    scripts: list[Path]
    kernel: Optional[Path] = None
    disk: Optional[Path] = None


def _build(target: str, flags: Mapping[str, Any], config: Optional[str], force: bool, dry_run: bool = False) -> None:
    def go() -> None:
        cfg = load_config(flags, config)
        if dry_run:
            pipeline.dry_run_report(target, cfg, builders(target if force else None))
            return
        _clean.reap_orphans(Engine.connect(), Layout(cfg.work_dir))
        pipeline.run(target, cfg, builders(target if force else None))

    guarded(go)


GEM5_BINARY = ("a gem5.opt (or .fast) built elsewhere from --gem5-src's source: checked, then packaged "
               "instead of compiling gem5")


@task(help={"gem5-src": "a gem5 checkout or tarball to build instead of cloning the pinned release",
            "gem5-binary": GEM5_BINARY, **COMMON})
def env(c: Any, gem5_src: Optional[str] = None, gem5_binary: Optional[str] = None, name: Optional[str] = None,
        work_dir: Optional[str] = None, config: Optional[str] = None, force: bool = False, dry_run: bool = False) -> None:
    """Build the env image: Packer, QEMU, scons, gem5 (X86) and the x86 m5 utility.

    gem5 is compiled from --gem5-src (incrementally: the scons tree is kept), or
    a gem5 binary built elsewhere is packaged with --gem5-binary."""
    _build("env", {"gem5.src": gem5_src, "gem5.binary": gem5_binary, "name": name, "work_dir": work_dir}, config, force, dry_run)


@task(
    optional=["check"],
    help={
        "gem5-src": "gem5 source for the m5 utility",
        "m5": "install this m5 binary instead of building one",
        "accel": "auto (default: KVM only where it really runs a guest), kvm or tcg",
        "check": "check an existing image (the built one, or PATH) instead of building",
        **COMMON,
    },
)
def image(c: Any, gem5_src: Optional[str] = None, m5: Optional[str] = None, accel: Optional[str] = None,
          check: Any = None, name: Optional[str] = None, work_dir: Optional[str] = None,
          config: Optional[str] = None, force: bool = False, dry_run: bool = False) -> None:
    """Build the hack-back disk image with Packer + QEMU (m5, autologin, rcS)."""
    flags = {"gem5.src": gem5_src, "image.m5": m5, "image.accel": accel, "name": name, "work_dir": work_dir}
    if check:
        path = None if check is True else Path(check)
        guarded(lambda: _image.check_existing(load_config(flags, config), path, Path(m5) if m5 else None))
        return
    _build("image", flags, config, force, dry_run)


@task(help={
    "base-config": "make target (x86_64_defconfig, tinyconfig) or .config file the fragment is merged over",
    "fragment": "a config fragment to merge instead of the shipped hackback/kernel/gem5.config",
    **COMMON,
})
def kernel(c: Any, base_config: Optional[str] = None, fragment: Optional[str] = None, name: Optional[str] = None,
           work_dir: Optional[str] = None, config: Optional[str] = None, force: bool = False, dry_run: bool = False) -> None:
    """Build a vmlinux that gem5 can boot (and a bzImage QEMU can)."""
    flags = {"kernel.base_config": base_config, "kernel.fragment": fragment, "name": name, "work_dir": work_dir}
    _build("kernel", flags, config, force, dry_run)


@task(help={
    "gem5-src": "gem5 source to build the env from",
    "gem5-binary": GEM5_BINARY,
    "cpu": "CPU that boots Linux: atomic (default), timing, or kvm (hosts where KVM runs guests)",
    "boot": "fast (default: no init system, straight to the root login) or full (systemd)",
    "memory": "simulated memory, e.g. 2GiB (at most 3GiB); restores inherit it",
    "cores": "simulated cores; restores inherit it",
    **COMMON,
})
def checkpoint(c: Any, gem5_src: Optional[str] = None, gem5_binary: Optional[str] = None, cpu: Optional[str] = None, boot: Optional[str] = None,
               memory: Optional[str] = None, cores: Optional[int] = None, name: Optional[str] = None,
               work_dir: Optional[str] = None, config: Optional[str] = None, force: bool = False, dry_run: bool = False) -> None:
    """Boot the image in gem5 and save the checkpoint the guest asks for."""
    flags = {"gem5.src": gem5_src, "gem5.binary": gem5_binary, "checkpoint.cpu": cpu, "checkpoint.boot": boot, "checkpoint.memory": memory,
             "checkpoint.cores": cores, "name": name, "work_dir": work_dir}
    _build("checkpoint", flags, config, force, dry_run)


@task(
    iterable=["script"],
    help={
        "script": "FILE or DIR (repeatable): a script for the restored guest to run; several, or a directory of them, give several runs",
        "cpu": "CPU model for the restored run: atomic (default), timing or o3",
        "caches": "classic caches: none (default), l1, l1l2",
        "jobs": "restores to run at once (default 1)",
        "checkpoint": "restore this checkpoint directory instead of building/using checkpoints/<name>",
        "kernel": "check and use this vmlinux instead of the checkpoint's (must be the same file)",
        "image": "check and use this disk image instead of the checkpoint's (must be the same file)",
        "gem5-src": "gem5 source to build the env from",
        "gem5-binary": GEM5_BINARY,
        **COMMON,
    },
)
def restore(c: Any, script: list[str], cpu: Optional[str] = None, caches: Optional[str] = None,
            jobs: Optional[int] = None, checkpoint: Optional[str] = None, kernel: Optional[str] = None,
            image: Optional[str] = None, gem5_src: Optional[str] = None, gem5_binary: Optional[str] = None, name: Optional[str] = None,
            work_dir: Optional[str] = None, config: Optional[str] = None, force: bool = False, dry_run: bool = False) -> None:
    """Restore the checkpoint and run scripts in the guest; collect stats and output."""
    flags = {"gem5.src": gem5_src, "gem5.binary": gem5_binary, "restore.cpu": cpu, "restore.caches": caches, "restore.jobs": jobs,
             "name": name, "work_dir": work_dir}

    def go() -> None:
        cfg = load_config(flags, config)
        request = RestoreRequest(_restore.scripts_from(script), Path(kernel) if kernel else None,
                                 Path(image) if image else None)
        # What can be checked without building is checked first: a bad --checkpoint,
        # --kernel or --image is refused before the env step can start a gem5 build.
        for what, path in (("--kernel", request.kernel), ("--image", request.disk)):
            if path is not None and not path.is_file():
                raise UsageError(f"{what} {path} does not exist", f"give the file the checkpoint was taken with, or leave {what} off")
        # A restore takes the checkpoint as it was made (memory, cores, kernel,
        # image): it is never re-derived from today's config, so a plain restore
        # after `invoke checkpoint --cores 2` uses that 2-core checkpoint.
        cpt = _checkpoint.load(Path(checkpoint)) if checkpoint else _checkpoint.existing(cfg)
        steps = builders("restore" if force else None, request)
        if dry_run:
            _restore_plan(cfg, steps, cpt, request, force)
            return
        _clean.reap_orphans(Engine.connect(), Layout(cfg.work_dir))
        if cpt is not None:
            env = pipeline.run("env", cfg, steps)
            _restore.restore(cfg, env, cpt, request.scripts, request.kernel, request.disk, force=force)
        else:
            pipeline.run("restore", cfg, steps)

    guarded(go)


def _restore_plan(cfg: Config, steps: Mapping[str, pipeline.Builder], cpt: Optional[_checkpoint.CheckpointArtifact],
                  request: "RestoreRequest", force: bool) -> None:
    """--dry-run of a restore: the env (and, without a checkpoint, everything it needs), then the runs."""
    if cpt is None:
        pipeline.dry_run_report("restore", cfg, steps)
        return
    env = pipeline.dry_run_report("env", cfg, steps).get("env")
    if env is None:
        return
    with dry_run_mode():
        try:
            _restore.restore(cfg, env, cpt, request.scripts, request.kernel, request.disk, force=force)
        except WouldBuild as e:
            log.info(f"plan: restore    would run {e.what} on checkpoint '{cpt.name}'")


@task(help={
    "kind": "env, images, kernels, checkpoints or runs",
    "name": "only artifacts of this name (and the runs of the checkpoint of this name)",
    "images": "also remove the env images this work dir's env manifests name (none a container uses)",
    "all-owners": "also list, and remove after asking, containers not provably this work dir's leftovers",
    "yes": "do not ask before deleting",
    "work-dir": COMMON["work-dir"],
    "config": COMMON["config"],
})
def clean(c: Any, kind: Optional[str] = None, name: Optional[str] = None, images: bool = False, all_owners: bool = False,
          yes: bool = False, work_dir: Optional[str] = None, config: Optional[str] = None) -> None:
    """Reap containers and temp paths killed runs of this work dir left; remove artifacts (asks first)."""
    request = _clean.CleanRequest(kind=kind, name=name, images=images, all_owners=all_owners, yes=yes)
    guarded(lambda: _clean.clean(load_config({"work_dir": work_dir}, config), request))


ns = Collection(env, image, kernel, checkpoint, restore, clean)
