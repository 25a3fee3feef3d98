"""Boot a disk image and kernel under QEMU in the tools image and read its
serial console: a quick try of an image and kernel together before a long gem5
boot, and how the tests see the guest side of the method at work.
The image is never written: QEMU runs with -snapshot and a read-only mount."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional

from ..base.engine import UNTIL_MET, Engine, Mount, RunSpec

DiskInterface = Literal["virtio", "ide"]


@dataclass(frozen=True)
class QemuBoot:
    """What to boot: a raw disk image (never written), a kernel and its command line."""

    disk: Path
    kernel: Path
    append: str
    initrd: Optional[Path] = None
    timeout: int = 600  # seconds before the guest is stopped
    accel: str = "tcg"
    disk_interface: DiskInterface = "virtio"
    memory_mib: int = 1024

    def container_args(self) -> tuple[list[Mount], list[str]]:
        """The mounts and command that boot this under QEMU in the tools image."""
        mounts = [Mount(self.disk.parent.resolve(), "/hb/disk"), Mount(self.kernel.parent.resolve(), "/hb/kernel")]
        cmd = [
            "timeout", str(self.timeout), "qemu-system-x86_64", "-accel", self.accel, "-m", f"{self.memory_mib}M",
            "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-snapshot",
            "-drive", f"file=/hb/disk/{self.disk.name},format=raw,if={self.disk_interface}",
            "-kernel", f"/hb/kernel/{self.kernel.name}", "-append", self.append,
        ]
        if self.initrd is not None:
            mounts.append(Mount(self.initrd.parent.resolve(), "/hb/initrd"))
            cmd += ["-initrd", f"/hb/initrd/{self.initrd.name}"]
        return mounts, cmd


def boot(
    engine: Engine,
    tools_ref: str,
    spec: QemuBoot,
    until: Optional[Callable[[str], bool]] = None,
    on_line: Optional[Callable[[str], None]] = None,
) -> tuple[bool, list[str]]:
    """(until was met, console lines). Ends when `until` is met, the guest powers
    off, or after spec.timeout seconds."""
    mounts, cmd = spec.container_args()
    lines: list[str] = []

    def record(line: str) -> None:
        clean = line.replace("\x1b", "").strip()
        lines.append(clean)
        if on_line:
            on_line(clean)

    status = engine.run(
        RunSpec(tools_ref, cmd, step="qemu-boot", mounts=mounts, kvm=spec.accel == "kvm"),
        on_line=record, check=False, until=(lambda ln: until(ln.replace("\x1b", "").strip())) if until else None,
    )
    return status == UNTIL_MET, lines
