"""Boot a disk image and kernel under QEMU in the tools image and read its
serial console: a quick try of an image and kernel together before a long gem5
boot, and how the tests see the guest side of the method at work.
The image is never written: QEMU runs with -snapshot and a read-only mount."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal, Optional

from .engine import UNTIL_MET, Engine, Mount, RunSpec

DiskInterface = Literal["virtio", "ide"]


def boot(
    engine: Engine,
    tools_ref: str,
    disk: Path,
    kernel: Path,
    append: str,
    initrd: Optional[Path] = None,
    until: Optional[Callable[[str], bool]] = None,
    timeout: int = 600,
    accel: str = "tcg",
    disk_interface: DiskInterface = "virtio",
    memory_mib: int = 1024,
    on_line: Optional[Callable[[str], None]] = None,
) -> tuple[bool, list[str]]:
    """(until was met, console lines). Ends when `until` is met, the guest powers
    off, or after `timeout` seconds."""
    mounts = [Mount(disk.parent.resolve(), "/hb/disk"), Mount(kernel.parent.resolve(), "/hb/kernel")]
    cmd = [
        "timeout", str(timeout), "qemu-system-x86_64", "-accel", accel, "-m", f"{memory_mib}M",
        "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-snapshot",
        "-drive", f"file=/hb/disk/{disk.name},format=raw,if={disk_interface}",
        "-kernel", f"/hb/kernel/{kernel.name}", "-append", append,
    ]
    if initrd is not None:
        mounts.append(Mount(initrd.parent.resolve(), "/hb/initrd"))
        cmd += ["-initrd", f"/hb/initrd/{initrd.name}"]
    lines: list[str] = []

    def record(line: str) -> None:
        clean = line.replace("\x1b", "").strip()
        lines.append(clean)
        if on_line:
            on_line(clean)

    status = engine.run(
        RunSpec(tools_ref, cmd, step="qemu-boot", mounts=mounts, kvm=accel == "kvm"),
        on_line=record, check=False, until=(lambda ln: until(ln.replace("\x1b", "").strip())) if until else None,
    )
    return status == UNTIL_MET, lines
