"""`invoke checkpoint`: gem5 boots the image; the guest's `m5 checkpoint`
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
from typing import Any, Optional

from . import accel, gem5run, kernel_config, log
from .artifacts import HashCache, Layout, Manifest, build_unless_fresh, digest_of, file_record, keep_failed
from .config import Config
from .engine import Engine
from .env import EnvArtifact
from .errors import ArtifactError, Gem5RunFailed, UsageError
from .image import FASTINIT, ImageArtifact
from .kernel import KernelArtifact

BASE_KERNEL_ARGS = "earlyprintk=ttyS0 console=ttyS0"
BOARD_CLOCK_HZ = 3_000_000_000  # configs/hackback_fs.py's X86Board clk_freq
X86BOARD_LPJ = 7999923  # X86Board's default command line: a 2 GHz CPU at HZ=250


@dataclass(frozen=True)
class CheckpointArtifact:
    name: str
    directory: Path
    cpt: Path  # the cpt.<tick> directory
    manifest: Manifest

    @property
    def record(self) -> dict[str, Any]:
        return self.manifest.parts["checkpoint"]

    @property
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.record["info"]
        return info


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
        patches = kernel.manifest.parts["kernel"].get("info", {}).get("patches", [])
        return cls(hz, any("lapic_timer_period" in p.get("name", "") for p in patches))


def timing(cfg: Config, kernel: KernelTiming) -> dict[str, Any]:
    """The boot's timing constants, and what they were derived from. x86 udelay
    spins loops_per_jiffy x HZ TSC cycles a second (arch/x86/lib/delay.c), and
    gem5's TSC counts the core clock. Without the kernel's HZ (a prebuilt
    vmlinux) X86Board's lpj is kept."""
    if cfg.checkpoint.timing == "x86board" or kernel.hz is None:
        return {"mode": "x86board", "lpj": X86BOARD_LPJ, "args": [f"lpj={X86BOARD_LPJ}"], "kernel_hz": kernel.hz,
                "clock_hz": BOARD_CLOCK_HZ}
    lpj = BOARD_CLOCK_HZ // kernel.hz
    # tsc_early_khz skips the PIT calibration of the TSC; no_timer_check the
    # ~40M-cycle busy wait that checks the timer interrupt through the IO-APIC.
    args = [f"lpj={lpj}", f"tsc_early_khz={BOARD_CLOCK_HZ // 1000}", "no_timer_check"]
    out: dict[str, Any] = {"mode": "derived", "lpj": lpj, "kernel_hz": kernel.hz, "clock_hz": BOARD_CLOCK_HZ}
    if kernel.lapic_param:
        # LAPIC input-clock ticks per jiffy: skips 2 x 100 ms of busy calibration.
        out["lapic_timer_period"] = BOARD_CLOCK_HZ // LAPIC_DIVIDER // kernel.hz
        args.append(f"lapic_timer_period={out['lapic_timer_period']}")
    return {**out, "args": args}


def kernel_args(cfg: Config, image: ImageArtifact, kernel: KernelTiming = KernelTiming(None)) -> str:
    # gem5's X86Board default names /dev/hda, which a 6.x kernel does not have;
    # the partition UUID finds the root disk whatever it is called.
    args = [BASE_KERNEL_ARGS, *timing(cfg, kernel)["args"], f"root=PARTUUID={image.partuuid}", "rw"]
    if cfg.checkpoint.boot == "fast":
        args.append(f"init={FASTINIT}")
    if cfg.checkpoint.kernel_args:
        args.append(cfg.checkpoint.kernel_args)
    return " ".join(args)


def gem5_identity(env: EnvArtifact) -> dict[str, Any]:
    """The gem5 inside the env image, as its manifest recorded it."""
    part = env.manifest.part("gem5")
    if part is None or env.image is None:
        raise ArtifactError(f"env '{env.name}' has no gem5 build", "build it with `invoke env`")
    src = part["info"]["gem5_source"]
    return {
        "release": src["release"],
        # The binary's own tags (probed); envs made before probing have the source's.
        "version_tags": sorted(part["info"].get("version_tags") or src["version_tags"]),
        "origin": part["info"].get("origin", "built"),
        "commit": src.get("commit"),
        "tree_sha256": src["tree_sha256"],
        "binary_sha256": part["info"]["gem5_binary_sha256"],
        "env_image": env.image,
        "binary": part["outputs"]["image"]["binary"],
    }


def board(cfg: Config) -> gem5run.Board:
    c = cfg.checkpoint
    return gem5run.Board(memory=c.memory, cores=c.cores, cpu=c.cpu)


def inputs(cfg: Config, env: EnvArtifact, image: ImageArtifact, kernel: KernelArtifact) -> dict[str, Any]:
    g = gem5_identity(env)
    c = cfg.checkpoint
    return {
        # Release and tags, not the tree: a modified gem5 restores this checkpoint.
        "gem5": {"release": g["release"], "version_tags": g["version_tags"]},
        "kernel_sha256": kernel.manifest.parts["kernel"]["outputs"]["vmlinux"]["sha256"],
        "image_sha256": image.manifest.parts["image"]["outputs"]["disk.img"]["sha256"],
        "board": {"memory": c.memory, "cores": c.cores, "cpu": c.cpu},
        "boot": c.boot,
        "kernel_args": kernel_args(cfg, image, KernelTiming.of(kernel)),
        "run_script_sha256": HashCache.quick_sha256(gem5run.config_script()),
        "limits": {"max_sim_seconds": c.max_sim_seconds, "max_wall_seconds": c.max_wall_seconds},
    }


def ensure(cfg: Config, env: EnvArtifact, image: ImageArtifact, kernel: KernelArtifact, force: bool = False,
           engine: Optional[Engine] = None) -> CheckpointArtifact:
    engine = engine or Engine.connect()
    layout = Layout(cfg.work_dir)
    hashes = HashCache(layout.hash_db)
    want = inputs(cfg, env, image, kernel)

    def build(tmp: Path, manifest: Manifest) -> None:
        if cfg.checkpoint.cpu == "kvm":
            _require_kvm(engine, layout, env, image)
        _boot(cfg, engine, hashes, env, image, kernel, want, manifest, tmp)

    done = build_unless_fresh(layout, "checkpoints", cfg.name, "checkpoint", want, force, build, f"checkpoint '{cfg.name}'")
    return load(done.directory)


def existing(cfg: Config) -> Optional[CheckpointArtifact]:
    """The checkpoint of this name as it was taken, if there is one."""
    directory = Layout(cfg.work_dir).artifact_dir("checkpoints", cfg.name)
    return load(directory) if (directory / "manifest.json").is_file() else None


def load(directory: Path) -> CheckpointArtifact:
    """A checkpoint artifact from its directory (the built one, or one named with --checkpoint)."""
    if not directory.is_dir():
        raise UsageError(f"checkpoint {directory} does not exist", "give a directory under <work_dir>/checkpoints/, or take one with `invoke checkpoint`")
    manifest = Manifest.read(directory)
    if manifest is None or "checkpoint" not in manifest.parts:
        raise UsageError(f"{directory} holds no hackback checkpoint (no manifest)", "take one with `invoke checkpoint`")
    name = manifest.parts["checkpoint"]["info"].get("cpt")
    if not isinstance(name, str) or not name.startswith("cpt.") or "/" in name:
        # A manifest that does not say which cpt.<tick> is the checkpoint (damaged, or hand-edited).
        raise ArtifactError(f"{directory / 'manifest.json'} names no checkpoint (its info has no cpt.<tick>: {name!r})",
                            "take the checkpoint again with `invoke checkpoint --force`")
    cpt = directory / name
    if not (cpt / "m5.cpt").is_file():
        raise ArtifactError(f"{cpt} is missing or incomplete", "take the checkpoint again with `invoke checkpoint --force`")
    return CheckpointArtifact(manifest.name, directory, cpt, manifest)


def _require_kvm(engine: Engine, layout: Layout, env: EnvArtifact, image: ImageArtifact) -> None:
    works, why = accel.kvm_runs_guests(engine, layout, env.tools.ref, env.tools.versions.get("qemu", ""), image.kernel)
    if not works:
        raise UsageError(f"checkpoint.cpu = kvm, but KVM cannot run a guest here ({why})",
                         "boot with --cpu atomic (the default) on this machine")


def _boot(cfg: Config, engine: Engine, hashes: HashCache, env: EnvArtifact, image: ImageArtifact,
          kernel: KernelArtifact, want: dict[str, Any], manifest: Manifest, tmp: Path) -> None:
    g = gem5_identity(env)
    job = gem5run.Gem5Job(
        label="gem5:boot", env_image=g["env_image"], binary=g["binary"], mode="boot",
        kernel=kernel.vmlinux, disk=image.disk, kernel_args=want["kernel_args"], board=board(cfg), out=tmp,
        max_sim_seconds=cfg.checkpoint.max_sim_seconds, max_wall_seconds=cfg.checkpoint.max_wall_seconds,
    )
    c = cfg.checkpoint
    with log.step(f"gem5 boot ({c.boot} boot, {c.cpu} CPU, {c.memory}, {c.cores} core(s)) until the guest's m5 checkpoint"):
        try:
            result = gem5run.run(engine, job)
        except Gem5RunFailed as e:
            kept = keep_failed(Layout(cfg.work_dir), "checkpoints", cfg.name, tmp)
            hint = f"{e.hint}; " if e.hint else ""
            raise Gem5RunFailed(e.message, f"{hint}its console and gem5 log are in {kept}", e.result) from None
    cpt = tmp / str(result["checkpoint"])
    if not (cpt / "m5.cpt").is_file():
        raise ArtifactError(f"gem5 reported a checkpoint but {cpt.name}/m5.cpt is missing", f"see {tmp / 'gem5.log'}")
    (tmp / gem5run.CONSOLE).unlink(missing_ok=True)  # kept as console.log
    for stale in tmp.glob("readfile_*"):
        stale.unlink()
    files = sorted(p for p in cpt.rglob("*") if p.is_file())
    manifest.set_part(
        "checkpoint",
        want,
        {str(p.relative_to(tmp)): file_record(p, hashes) for p in files},
        {
            "cpt": cpt.name,
            "tick": int(result["final_tick"]),
            "sim_seconds": result["sim_seconds"],
            "host_seconds": result["host_seconds"],
            "phases": result.get("phases", {}),
            "gem5": g,
            "kernel": {"path": str(kernel.vmlinux), "sha256": want["kernel_sha256"]},
            "image": {"path": str(image.disk), "sha256": want["image_sha256"], "partuuid": image.partuuid},
            "board": want["board"],
            "boot": cfg.checkpoint.boot,
            "kernel_args": want["kernel_args"],
            "timing": timing(cfg, KernelTiming.of(kernel)),
            "console_last_line": result.get("console_last_line", ""),
        },
    )
    size = sum(p.stat().st_blocks * 512 for p in files)
    log.info(f"checkpoint {cpt.name}: {result['sim_seconds']:.3f} simulated s in {log.format_seconds(result['host_seconds'])} "
             f"host; {size / 2**20:.0f} MiB on disk")


def identity_digest(cpt: CheckpointArtifact) -> str:
    """What a run restored from: the checkpoint's inputs and its files."""
    return digest_of({"inputs": cpt.record["inputs_digest"], "outputs": cpt.record["outputs"]})

