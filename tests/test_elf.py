from __future__ import annotations

import shutil
import struct
import sys
from pathlib import Path

import pytest

from hackback.base import elf
from hackback.base.errors import ArtifactError


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


class TestTruncatedElf:
    """A copy cut short is an ArtifactError naming the file, never struct.error."""

    def test_program_headers_past_the_end(self, tmp_path: Path) -> None:
        p = make_elf(tmp_path / "m5", 0x3E, interp=False)
        p.write_bytes(p.read_bytes()[:66])  # the header, and 2 of the program header's bytes
        with pytest.raises(ArtifactError, match="truncated") as e:
            elf.read(p)
        assert str(p) in e.value.one_line() and "\n" not in e.value.one_line()

    def test_header_cut_short(self, tmp_path: Path) -> None:
        p = make_elf(tmp_path / "m5", 0x3E, interp=False)
        p.write_bytes(p.read_bytes()[:40])
        with pytest.raises(ArtifactError, match="truncated"):
            elf.read(p)

    def test_a_real_binary_cut_in_half(self, tmp_path: Path) -> None:
        p = tmp_path / "python"
        data = Path(sys.executable).resolve().read_bytes()
        # Keep the ELF header only, pointing at program headers that are gone.
        p.write_bytes(data[:64])
        with pytest.raises(ArtifactError, match="truncated"):
            elf.read(p)


class TestStaticX86Problem:
    def test_says_what_is_wrong(self, tmp_path: Path) -> None:
        assert elf.static_x86_64_problem(make_elf(tmp_path / "ok", 0x3E, interp=False)) == ""
        assert "dynamically linked x86-64" in elf.static_x86_64_problem(make_elf(tmp_path / "dyn", 0x3E, interp=True))
        assert "machine 0xb7" in elf.static_x86_64_problem(make_elf(tmp_path / "arm", 0xB7, interp=False))
        assert elf.static_x86_64_problem(tmp_path / "missing") == "does not exist"
        assert "directory" in elf.static_x86_64_problem(tmp_path)
        (tmp_path / "sh").write_text("#!/bin/sh\n")
        assert elf.static_x86_64_problem(tmp_path / "sh") == "is not an ELF file"
