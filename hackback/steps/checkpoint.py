"""`hackback checkpoint`: gem5 boots the image; the guest's `m5 checkpoint`
becomes <work>/checkpoints/<name>/cpt.<tick>.

The kernel and disk image are mounted read-only; gem5's copy-on-write layer
takes the guest's writes and is saved inside the checkpoint. What a restore
must match is recorded: the gem5 release and checkpoint version tags, the
kernel's and image's sha256, memory size and core count.

A gem5 rebuilt from a modified tree of the same release does not make the
checkpoint stale (restoring into a modified CPU model is the point of the
method); another release, or other version tags, does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, TypeVar

from ..services import accel, gem5run, kernel_config
from ..base import log
from ..store.build import Target, build_unless_fresh, keep_failed
from ..store.hashes import file_record
from ..store.layout import Layout
from ..store.manifest import Manifest
from ..base.config import Config
from ..protocol.context import StepContext
from ..protocol.step import Request, Step
from ..base.engine import Engine, Mount, RunSpec
from ..base.errors import ArtifactError, HackbackError, UsageError
from ..store.records import (FASTINIT, GEM5_KERNEL, Board, BootBoard, CheckpointArtifact, CheckpointInfo, EnvArtifact,
                             FileRef, Gem5Build, Gem5Result, ImageArtifact, ImageRef, KernelArtifact, RunRecord, Timing,
                             checkpoint_info)

BASE_KERNEL_ARGS = "earlyprintk=ttyS0 console=ttyS0"
BOARD_CLOCK_HZ = 3_000_000_000  # configs/hackback_fs.py's X86Board clk_freq
X86BOARD_LPJ = 7999923  # X86Board's default command line: a 2 GHz CPU at HZ=250


LAPIC_DIVIDER = 16  # gem5's X86LocalApic clock: the core clock / 16 (src/arch/x86/X86LocalApic.py)


@dataclass(frozen=True)
class KernelTiming:
    """What the timing constants are derived from: the kernel's HZ (None for a
    prebuilt vmlinux) and whether it has hackback's lapic_timer_period patch."""

    hz: Optional[int]
    lapic_param: bool = False

    @classmethod
    def of(cls, kernel: KernelArtifact) -> "KernelTiming":
        config = kernel.config
        hz = kernel_config.hz(config.read_text()) if config is not None and config.is_file() else None
        return cls(hz, any("lapic_timer_period" in name for name in kernel.patch_names))


def timing(cfg: Config, kernel: KernelTiming) -> Timing:
    """The boot's timing constants, and what they were derived from. x86 udelay
    spins loops_per_jiffy x HZ TSC cycles a second (arch/x86/lib/delay.c), and
    gem5's TSC counts the core clock. Without the kernel's HZ (a prebuilt
    vmlinux) X86Board's lpj is kept."""
    if cfg.checkpoint.timing == "x86board" or kernel.hz is None:
        return Timing("x86board", X86BOARD_LPJ, (f"lpj={X86BOARD_LPJ}",), BOARD_CLOCK_HZ, kernel.hz)
    lpj = BOARD_CLOCK_HZ // kernel.hz
    # tsc_early_khz skips the PIT calibration of the TSC; no_timer_check the
    # ~40M-cycle busy wait that checks the timer interrupt through the IO-APIC.
    args = [f"lpj={lpj}", f"tsc_early_khz={BOARD_CLOCK_HZ // 1000}", "no_timer_check"]
    period = None
    if kernel.lapic_param:
        # LAPIC input-clock ticks per jiffy: skips 2 x 100 ms of busy calibration.
        period = BOARD_CLOCK_HZ // LAPIC_DIVIDER // kernel.hz
        args.append(f"lapic_timer_period={period}")
    return Timing("derived", lpj, tuple(args), BOARD_CLOCK_HZ, kernel.hz, period)


def kernel_args(cfg: Config, image: ImageArtifact, kernel: KernelTiming = KernelTiming(None)) -> str:
    # gem5's X86Board default names /dev/hda, which a 6.x kernel does not have;
    # the partition UUID finds the root disk whatever it is called.
    args = [BASE_KERNEL_ARGS, *timing(cfg, kernel).args, f"root=PARTUUID={image.partuuid}", "rw"]
    if cfg.checkpoint.boot == "fast":
        args.append(f"init={FASTINIT}")
    if cfg.checkpoint.kernel_args:
        args.append(cfg.checkpoint.kernel_args)
    return " ".join(args)


def board(cfg: Config) -> BootBoard:
    boot_cfg = cfg.checkpoint
    return BootBoard(memory=boot_cfg.memory, cores=boot_cfg.cores, cpu=boot_cfg.cpu)


def inputs(cfg: Config, env: EnvArtifact, image: ImageArtifact, kernel: KernelArtifact) -> dict[str, Any]:
    g = env.gem5()
    boot_cfg = cfg.checkpoint
    return {
        # Release and tags, not the tree: a modified gem5 restores this checkpoint.
        "gem5": {"release": g.release, "version_tags": list(g.version_tags)},
        "kernel_sha256": kernel.vmlinux_sha256,
        "image_sha256": image.disk_sha256,
        "board": board(cfg).to_json(),
        "boot": boot_cfg.boot,
        "kernel_args": kernel_args(cfg, image, KernelTiming.of(kernel)),
        "kernel_symbols": boot_cfg.kernel_symbols,
        "run_script_sha256": gem5run.run_script_sha256(),
        "limits": {"max_sim_seconds": boot_cfg.max_sim_seconds, "max_wall_seconds": boot_cfg.max_wall_seconds},
    }


@dataclass(frozen=True)
class BootInputs:
    """What one boot is made from: the records it boots and the inputs it is recorded with."""

    env: EnvArtifact
    image: ImageArtifact
    kernel: KernelArtifact
    want: dict[str, Any]


def ensure(ctx: StepContext, env: EnvArtifact, image: ImageArtifact, kernel: KernelArtifact,
           force: bool = False) -> CheckpointArtifact:
    cfg = ctx.cfg
    boot = BootInputs(env, image, kernel, inputs(cfg, env, image, kernel))

    def build(tmp: Path, manifest: Manifest) -> None:
        if cfg.checkpoint.cpu == "kvm":
            _require_kvm(ctx, env, image)
        _boot(ctx, boot, manifest, tmp)

    done = build_unless_fresh(ctx.layout, Target("checkpoints", cfg.name, "checkpoint", f"checkpoint '{cfg.name}'"),
                              boot.want, force, build)
    return CheckpointArtifact.read(done.directory)


def existing(cfg: Config) -> Optional[CheckpointArtifact]:
    """The checkpoint of this name as it was taken, if there is one."""
    directory = Layout(cfg.work_dir).artifact_dir("checkpoints", cfg.name)
    return CheckpointArtifact.read(directory) if (directory / "manifest.json").is_file() else None


def find(layout: Layout, ref: str) -> CheckpointArtifact:
    """The checkpoint --checkpoint names: a name under <work_dir>/checkpoints/, or a directory."""
    named = layout.artifact_dir("checkpoints", ref)
    if "/" not in ref and ref not in (".", "..") and named.is_dir():
        return CheckpointArtifact.read(named)
    path = Path(ref).expanduser()
    if path.is_dir():
        return CheckpointArtifact.read(path)
    known = sorted(d.name for d in (layout.work_dir / "checkpoints").glob("*") if (d / "manifest.json").is_file())
    raise UsageError(f"no checkpoint {ref!r}: neither a name under {layout.work_dir / 'checkpoints'} nor a directory",
                     f"known names: {', '.join(known)}" if known else "take one with `hackback checkpoint`")


def _require_kvm(ctx: StepContext, env: EnvArtifact, image: ImageArtifact) -> None:
    works, why = accel.kvm_runs_guests(ctx.engine, ctx.layout, env.tools.ref, env.tools.versions.get("qemu", ""), image.kernel)
    if not works:
        raise UsageError(f"checkpoint.cpu = kvm, but KVM cannot run a guest here ({why})",
                         "boot with --cpu atomic (the default) on this machine")


def _strip_symbols(engine: Engine, env: EnvArtifact, kernel: Path, tmp: Path) -> Path:
    """vmlinux without its symbol table: the same loadable segments, so the same boot."""
    out = tmp / GEM5_KERNEL
    spec = RunSpec(env.tools.ref, ["objcopy", "--strip-all", "/in/vmlinux", f"/out/{GEM5_KERNEL}"], step="checkpoint-strip",
                   mounts=[Mount(kernel.resolve(), "/in/vmlinux"), Mount(tmp, "/out", read_only=False)], network="none",
                   kvm=False)
    engine.run(spec, phase="strip")
    if not out.is_file():
        raise ArtifactError(f"objcopy made no stripped copy of {kernel}", "run `hackback checkpoint` again with checkpoint.kernel_symbols = true")
    return out


def _cpt_tick(info: CheckpointInfo) -> int:
    """The tick the checkpoint was saved at: its cpt.<tick> name (the run's final tick comes a little after)."""
    return int(info.cpt[4:]) if info.cpt.startswith("cpt.") and info.cpt[4:].isdigit() else info.tick


def _last_boot_seconds(ctx: StepContext) -> Optional[float]:
    """How long this checkpoint's last boot simulated (the progress bar's total), if it was taken before."""
    before = _readable(ctx.layout.artifact_dir("checkpoints", ctx.cfg.name))
    info = checkpoint_info(before) if before else None
    return info.sim_seconds if info is not None and info.sim_seconds > 0 else None


def _boot(ctx: StepContext, boot: BootInputs, manifest: Manifest, tmp: Path) -> None:
    cfg, boot_cfg = ctx.cfg, ctx.cfg.checkpoint
    g = boot.env.gem5()
    booted = boot.kernel.vmlinux if boot_cfg.kernel_symbols else _strip_symbols(ctx.engine, boot.env, boot.kernel.vmlinux, tmp)
    job = gem5run.Gem5Job(
        label="gem5:boot", env_image=g.env_image, binary=g.binary, mode="boot",
        kernel=booted, disk=boot.image.disk, kernel_args=boot.want["kernel_args"], board=Board.for_boot(board(cfg)), out=tmp,
        max_sim_seconds=boot_cfg.max_sim_seconds, max_wall_seconds=boot_cfg.max_wall_seconds,
        expected_sim_seconds=_last_boot_seconds(ctx),
    )
    with log.step(f"gem5 boot ({boot_cfg.boot} boot, {boot_cfg.cpu} CPU, {boot_cfg.memory}, {boot_cfg.cores} core(s)) until the guest's m5 checkpoint"):
        result = gem5run.run(ctx.engine, job, keep_failed=lambda: keep_failed(ctx.layout, "checkpoints", cfg.name, tmp))
    cpt = tmp / str(result.checkpoint)
    if not result.checkpoint or not (cpt / "m5.cpt").is_file():
        raise ArtifactError(f"gem5 reported a checkpoint but {cpt.name}/m5.cpt is missing", f"see {tmp / 'gem5.log'}")
    (tmp / gem5run.CONSOLE).unlink(missing_ok=True)  # kept as console.log
    for stale in tmp.glob("readfile_*"):
        stale.unlink()
    files = sorted(p for p in cpt.rglob("*") if p.is_file()) + ([booted] if booted.parent == tmp else [])
    manifest.set_part("checkpoint", boot.want, {str(p.relative_to(tmp)): file_record(p, ctx.hashes) for p in files},
                      _info(cfg, boot, result, g, stripped=booted.parent == tmp, console=tmp / gem5run.CONSOLE_COPY).to_json())
    size = sum(p.stat().st_blocks * 512 for p in files)
    log.info(f"checkpoint {cpt.name}: {result.sim_seconds:.3f} simulated s in {log.format_seconds(result.host_seconds)} "
             f"host; {size / 2**20:.0f} MiB on disk")


def _info(cfg: Config, boot: BootInputs, result: Gem5Result, g: Gem5Build, stripped: bool, console: Path) -> CheckpointInfo:
    want = boot.want
    return CheckpointInfo(
        cpt=str(result.checkpoint), tick=result.final_tick, sim_seconds=result.sim_seconds, host_seconds=result.host_seconds,
        phases=result.phases, gem5=g, kernel=FileRef(boot.kernel.vmlinux, want["kernel_sha256"]),
        gem5_kernel=GEM5_KERNEL if stripped else None,
        image=ImageRef(boot.image.disk, want["image_sha256"], boot.image.partuuid), board=board(cfg),
        boot=cfg.checkpoint.boot, kernel_args=want["kernel_args"], timing=timing(cfg, KernelTiming.of(boot.kernel)),
        console_last_line=result.console_last_line,
        # What the guest could hold when it was checkpointed (hackback-guest's line): payloads are checked against it.
        guest=gem5run.guest_room(console))


def tree(layout: Layout) -> list[str]:
    """The work dir's checkpoints as a tree (children under their parent): name,
    cpt, tick, how it was made, how many runs used it."""
    found: dict[str, CheckpointInfo] = {}
    for directory in sorted((layout.work_dir / "checkpoints").glob("*")):
        manifest = _readable(directory)
        info = checkpoint_info(manifest) if manifest is not None else None
        if info is not None:
            found[directory.name] = info
    runs: dict[str, int] = {}
    for directory in (layout.work_dir / "runs").glob("*"):
        run = _readable_run(directory)
        if run is not None:
            runs[run.info.checkpoint.name] = runs.get(run.info.checkpoint.name, 0) + 1
    children: dict[str, list[str]] = {}
    for name, info in found.items():
        children.setdefault(info.parent.name if info.parent else "", []).append(name)
    lines: list[str] = []

    def show(name: str, depth: int) -> None:
        info = found[name]
        made = info.made_by
        how = (f"restore of {made.script.path.name} on {made.board.cpu_label}" if made
               else f"boot ({info.boot}, {info.board.cpu} CPU)")
        lines.append(f"{'  ' * depth}{'└─ ' if depth else ''}{name:<{max(4, 24 - 2 * depth)}} {info.cpt:<20} "
                     f"tick {_cpt_tick(info):<14} {how:<40} runs: {runs.get(name, 0)}")
        for child in sorted(children.get(name, [])):
            show(child, depth + 1)

    for root in sorted(n for n, i in found.items() if not i.parent or i.parent.name not in found):
        show(root, 0)
    return lines


R = TypeVar("R")


def _or_warn(read: Callable[[Path], R], directory: Path) -> Optional[R]:
    """What read(directory) gives, or None with a warning: one unreadable artifact leaves the listing whole."""
    try:
        return read(directory)
    except HackbackError as e:
        log.warn(f"{directory} left out: {e.message}")
        return None


def _readable(directory: Path) -> Optional[Manifest]:
    return _or_warn(Manifest.read, directory)


def _readable_run(directory: Path) -> Optional[RunRecord]:
    return _or_warn(RunRecord.read, directory)


# ---------------------------------------------------------------- the steps


class CheckpointStep(Step):
    name = "checkpoint"
    needs = ("env", "image", "kernel")

    def given(self, ctx: StepContext, req: Request) -> Optional[CheckpointArtifact]:
        # A task that uses a checkpoint takes it as it was made (memory, cores,
        # kernel, image): never re-derived from today's config, so a plain restore
        # after `hackback checkpoint --cores 2` uses that 2-core checkpoint.
        if req.checkpoint is not None:
            return find(ctx.layout, req.checkpoint)
        return existing(ctx.cfg) if req.target != self.name else None

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> CheckpointArtifact:
        return ensure(ctx, deps["env"], deps["image"], deps["kernel"], force=req.forced(self.name))


class CheckpointsStep(Step):
    """`hackback checkpoints`: the checkpoints as a tree."""

    name = "checkpoints"
    builds = False

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> list[str]:
        lines = tree(ctx.layout)
        for line in lines or [f"no checkpoints in {ctx.layout.work_dir} yet (take one with `hackback checkpoint`)"]:
            print(line)
        return lines


CHECKPOINT = CheckpointStep()
CHECKPOINTS = CheckpointsStep()


def asked_for(ctx: StepContext, req: Request) -> Optional[CheckpointArtifact]:
    """The checkpoint a task would use, found before anything builds (None: it would be taken)."""
    return CHECKPOINT.given(ctx, req)
