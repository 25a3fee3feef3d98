"""Just enough ELF reading to check what a build produced or a user brought
(m5 must be a static x86-64 executable; vmlinux an x86-64 ELF executable)."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import ArtifactError

EM_X86_64 = 0x3E
PT_INTERP = 3
ET_EXEC, ET_DYN = 2, 3
_PHDR_MIN = 4  # bytes of a program header we read (p_type)


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
    """The header facts of an ELF file; ArtifactError when it is none, or is cut short."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 16 or head[:4] != b"\x7fELF":
            raise ArtifactError(f"{path} is not an ELF file")
        if head[4] != 2 or head[5] != 1:  # 64-bit, little-endian: all we build
            return ElfInfo(False, 0, 0, False)
        if len(head) < 64:
            raise ArtifactError(f"{path} is a truncated ELF file (its header is cut short)", "copy or build it again")
        e_type, e_machine = struct.unpack_from("<HH", head, 16)
        (e_phoff,) = struct.unpack_from("<Q", head, 32)
        e_phentsize, e_phnum = struct.unpack_from("<HH", head, 54)
        if e_phnum and e_phentsize < _PHDR_MIN:
            raise ArtifactError(f"{path} is a damaged ELF file (program header size {e_phentsize})", "copy or build it again")
        static = True
        for i in range(e_phnum):
            f.seek(e_phoff + i * e_phentsize)
            entry = f.read(_PHDR_MIN)
            if len(entry) < _PHDR_MIN:
                # A copy cut short: the program headers point past its end.
                raise ArtifactError(f"{path} is a truncated ELF file (program headers past its end)", "copy or build it again")
            (p_type,) = struct.unpack("<I", entry)
            if p_type == PT_INTERP:
                static = False
    return ElfInfo(True, e_machine, e_type, static)


def describe(info: ElfInfo) -> str:
    """What an ELF is, in words, for a message saying it is the wrong kind."""
    if not info.is_64:
        return "a 32-bit or big-endian ELF"
    kind = {ET_EXEC: "executable", ET_DYN: "shared object or PIE"}.get(info.type, f"ELF of type {info.type}")
    arch = "x86-64" if info.x86_64 else f"machine 0x{info.machine:x}"
    return f"a {'static' if info.static else 'dynamically linked'} {arch} {kind}"


def static_x86_64_problem(path: Path) -> str:
    """Why `path` is not a static x86-64 executable (as m5 must be), "" when it is one."""
    if not path.exists():
        return "does not exist"
    if path.is_dir():
        return "is a directory, not a file"
    try:
        info = read(path)
    except ArtifactError as e:
        return e.message.replace(f"{path} ", "", 1)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if info.x86_64 and info.static and info.type in (ET_EXEC, ET_DYN):  # ET_DYN: static-pie
        return ""
    return f"is {describe(info)}, not a static x86-64 executable"
