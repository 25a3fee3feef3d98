"""Just enough ELF reading to check what a build produced (m5 must be a static
x86-64 executable; later, vmlinux an x86-64 ELF)."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import ArtifactError

EM_X86_64 = 0x3E
PT_INTERP = 3
ET_EXEC, ET_DYN = 2, 3


@dataclass(frozen=True)
class ElfInfo:
    is_64: bool
    machine: int
    type: int
    static: bool  # no program interpreter

    @property
    def x86_64(self) -> bool:
        return self.is_64 and self.machine == EM_X86_64


def read(path: Path) -> ElfInfo:
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF":
            raise ArtifactError(f"{path} is not an ELF file")
        if head[4] != 2 or head[5] != 1:  # 64-bit, little-endian: all we build
            return ElfInfo(False, 0, 0, False)
        e_type, e_machine = struct.unpack_from("<HH", head, 16)
        (e_phoff,) = struct.unpack_from("<Q", head, 32)
        e_phentsize, e_phnum = struct.unpack_from("<HH", head, 54)
        static = True
        for i in range(e_phnum):
            f.seek(e_phoff + i * e_phentsize)
            (p_type,) = struct.unpack("<I", f.read(4))
            if p_type == PT_INTERP:
                static = False
    return ElfInfo(True, e_machine, e_type, static)
