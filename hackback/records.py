"""The artifact records every step reads and returns: the tools image, the gem5
source, env, image, kernel, checkpoint and run. A step takes the records of the
steps it needs (never the steps themselves) and returns its own; the order the
steps run in lives in the pipeline alone. Records are read from manifests
here, so no step walks another step's manifest as a dict.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .artifacts import Manifest, digest_of
from .errors import ArtifactError, UsageError

FASTINIT = "/sbin/hackback-fastinit"  # in every image: init= for a fast boot (no init system)
DISK = "disk.img"  # an image's raw disk, in its directory
GEM5_KERNEL = "vmlinux"  # in a checkpoint's directory: the kernel gem5 booted, without its symbol table


@dataclass(frozen=True)
class BaseImage:
    ref: str
    id: str
    origin: str  # "pulled", "local", "bootstrapped from <mirror>"


@dataclass(frozen=True)
class ToolsImage:
    ref: str
    id: str
    base: BaseImage
    versions: dict[str, str]


@dataclass(frozen=True)
class Gem5Source:
    path: Path
    origin: str
    release: str  # e.g. "24.0.0.1"
    commit: Optional[str]
    dirty: Optional[bool]
    tree_sha256: str  # whole tree: decides whether gem5 must be rebuilt
    m5_sha256: str  # util/m5 + include: decides whether m5 must be rebuilt
    version_tags: tuple[str, ...]  # checkpoint version tags compiled into gem5

    def identity(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "release": self.release,
            "commit": self.commit,
            "dirty": self.dirty,
            "tree_sha256": self.tree_sha256,
            "version_tags": list(self.version_tags),
        }


@dataclass(frozen=True)
class EnvArtifact:
    name: str
    directory: Path
    image: Optional[str]  # None until the gem5 part is built
    m5: Path
    manifest: Manifest
    tools: ToolsImage
    source: Gem5Source

    def gem5(self) -> dict[str, Any]:
        """The gem5 inside the env image, as its manifest recorded it."""
        part = self.manifest.part("gem5")
        if part is None or self.image is None:
            raise ArtifactError(f"env '{self.name}' has no gem5 build", "build it with `hackback env`")
        src = part["info"]["gem5_source"]
        return {
            "release": src["release"],
            # The binary's own tags (probed); envs made before probing have the source's.
            "version_tags": sorted(part["info"].get("version_tags") or src["version_tags"]),
            "origin": part["info"].get("origin", "built"),
            "commit": src.get("commit"),
            "tree_sha256": src["tree_sha256"],
            "binary_sha256": part["info"]["gem5_binary_sha256"],
            "env_image": self.image,
            "binary": part["outputs"]["image"]["binary"],
        }


@dataclass(frozen=True)
class ImageArtifact:
    name: str
    directory: Path
    disk: Path
    kernel: Path  # the image's own kernel and initrd, for trying it under QEMU
    initrd: Path
    partuuid: str  # root=PARTUUID=<this> finds the root partition without an initrd
    fs_uuid: str
    manifest: Manifest

    @classmethod
    def read(cls, directory: Path) -> "ImageArtifact":
        """A built image from its directory, without checking it is up to date."""
        manifest = Manifest.read(directory)
        if manifest is None or "image" not in manifest.parts:
            raise UsageError(f"{directory} holds no hackback image (no manifest)", "build one with `hackback image`")
        return cls.of(manifest.name, directory, manifest)

    @classmethod
    def of(cls, name: str, directory: Path, manifest: Manifest) -> "ImageArtifact":
        info = manifest.parts["image"]["info"]
        return cls(name, directory, directory / DISK, directory / "vmlinuz", directory / "initrd.img",
                   info["partuuid"], info["fs_uuid"], manifest)

    @property
    def disk_sha256(self) -> str:
        return str(self.manifest.parts["image"]["outputs"][DISK]["sha256"])


@dataclass(frozen=True)
class KernelArtifact:
    name: str
    directory: Path
    vmlinux: Path  # for gem5
    bzimage: Optional[Path]  # for QEMU; None for a prebuilt vmlinux
    config: Optional[Path]
    manifest: Manifest

    @classmethod
    def of(cls, name: str, directory: Path, manifest: Manifest) -> "KernelArtifact":
        outputs = manifest.parts["kernel"]["outputs"]
        return cls(name, directory, directory / "vmlinux",
                   directory / "bzImage" if "bzImage" in outputs else None,
                   directory / "config" if "config" in outputs else None, manifest)

    @property
    def vmlinux_sha256(self) -> str:
        return str(self.manifest.parts["kernel"]["outputs"]["vmlinux"]["sha256"])

    @property
    def patches(self) -> list[dict[str, Any]]:
        patches: list[dict[str, Any]] = self.manifest.parts["kernel"].get("info", {}).get("patches", [])
        return patches


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

    def identity_digest(self) -> str:
        """What a run restored from: the checkpoint's inputs and its files."""
        return digest_of({"inputs": self.record["inputs_digest"], "outputs": self.record["outputs"]})

    def gem5_kernel(self, kernel: Path) -> Path:
        """The kernel file a restore hands gem5: the stripped copy the boot used, if it used one."""
        name = self.info.get("gem5_kernel")
        return self.directory / name if isinstance(name, str) and "/" not in name else kernel

    @classmethod
    def read(cls, directory: Path) -> "CheckpointArtifact":
        """A checkpoint from its directory (the built one, or one named with --checkpoint)."""
        if not directory.is_dir():
            raise UsageError(f"checkpoint {directory} does not exist",
                             "give a directory under <work_dir>/checkpoints/, or take one with `hackback checkpoint`")
        manifest = Manifest.read(directory)
        if manifest is None or "checkpoint" not in manifest.parts:
            raise UsageError(f"{directory} holds no hackback checkpoint (no manifest)", "take one with `hackback checkpoint`")
        name = manifest.parts["checkpoint"]["info"].get("cpt")
        if not isinstance(name, str) or not name.startswith("cpt.") or "/" in name:
            # A manifest that does not say which cpt.<tick> is the checkpoint (damaged, or hand-edited).
            raise ArtifactError(f"{directory / 'manifest.json'} names no checkpoint (its info has no cpt.<tick>: {name!r})",
                                "take the checkpoint again with `hackback checkpoint --force`")
        cpt = directory / name
        if not (cpt / "m5.cpt").is_file():
            raise ArtifactError(f"{cpt} is missing or incomplete", "take the checkpoint again with `hackback checkpoint --force`")
        return cls(manifest.name, directory, cpt, manifest)


_CAUSES = {"exit": "the guest's m5 exit"}


def _figures(values: dict[str, Any]) -> str:
    shown = {"insts": "instructions={:.0f}", "ipc": "IPC={:.3f}", "l1d_miss_rate": "L1D miss rate={:.4f}",
             "l2_miss_rate": "L2 miss rate={:.4f}"}
    return ", ".join(fmt.format(float(values[k])) for k, fmt in shown.items() if k in values)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    directory: Path
    cause: str
    script_status: Optional[str]  # as the guest printed it: a number, or "empty"; None if never printed
    sim_seconds: float
    host_seconds: float
    stats: dict[str, Any]  # the whole run's figures (hackback.stats.figures)
    reused: bool = False
    roi: dict[str, Any] = field(default_factory=dict)  # the region of interest's, if the script marked one

    @property
    def ok(self) -> bool:
        """The script exited 0 (or ended the simulation itself with m5 exit)."""
        return self.script_status == "0" or (self.script_status is None and self.cause == "exit")

    def summary(self) -> str:
        stats = _figures(self.stats)
        if self.roi:
            stats = f"{stats}; region of interest: {_figures(self.roi)}"
        return (f"run {self.run_id}{' (up to date, not rerun)' if self.reused else ''}: "
                + (f"script exit status {self.script_status}; " if self.script_status is not None else
                   "the script ended the simulation itself (m5 exit); " if self.cause == "exit" else
                   "script exit status not reported; ")
                + f"ended by {_CAUSES.get(self.cause, self.cause)}; {self.sim_seconds:.4f} simulated s, {self.host_seconds:.1f} host s"
                + (f"; {stats}" if stats else "") + f"\n    {self.directory}")
