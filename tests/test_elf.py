from __future__ import annotations

import shutil
import struct
import sys
from pathlib import Path

import pytest

from hackback import elf
from hackback.errors import ArtifactError


def test_a_dynamic_host_executable_is_seen_as_such() -> None:
    info = elf.read(Path(sys.executable).resolve())
    assert info.is_64 and not info.static


def make_elf(path: Path, machine: int, interp: bool) -> Path:
    """A minimal 64-bit little-endian ELF header plus one program header."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HH", header, 16, elf.ET_EXEC, machine)
    struct.pack_into("<Q", header, 32, 64)  # e_phoff
    struct.pack_into("<HH", header, 54, 56, 1)  # e_phentsize, e_phnum
    phdr = bytearray(56)
    struct.pack_into("<I", phdr, 0, elf.PT_INTERP if interp else 1)
    path.write_bytes(bytes(header + phdr))
    return path


@pytest.mark.parametrize("machine, interp, x86_64, static", [(0x3E, False, True, True), (0x3E, True, True, False), (0xB7, False, False, True)])
def test_machine_and_static_are_read_from_the_headers(tmp_path: Path, machine: int, interp: bool, x86_64: bool, static: bool) -> None:
    info = elf.read(make_elf(tmp_path / "bin", machine, interp))
    assert (info.x86_64, info.static) == (x86_64, static)


def test_not_an_elf(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_text("#!/bin/sh\n")
    with pytest.raises(ArtifactError, match="not an ELF"):
        elf.read(p)


def test_truncated_file(tmp_path: Path) -> None:
    p = tmp_path / "x"
    shutil.copy(sys.executable, p)
    p.write_bytes(p.read_bytes()[:10])
    with pytest.raises(ArtifactError):
        elf.read(p)
