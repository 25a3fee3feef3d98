"""The kernel step. Unit: inputs, config refusals, the progress printer.
Docker tier (CI): the Debian source is fetched and our fragment really merged
over x86_64_defconfig, and a fragment without a required option is refused
in one line before compiling. Slow tier (HACKBACK_TEST_SLOW=1): the full
build, booted with the image under QEMU TCG to the serial autologin."""
from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hackback.store.records import FASTINIT, ImageArtifact
from hackback.protocol.context import StepContext
from hackback.steps import kernel
from hackback.services import kernel_config, kernel_src
from hackback.base import log
from hackback.store.layout import Layout
from hackback.base.errors import ConfigError, ContainerFailed, DiskSpaceError

REPO = Path(__file__).resolve().parent.parent


class _ToolsDouble:
    """Test double for a ToolsImage: only its id matters to inputs()."""

    id = "sha256:tools"


def test_inputs_follow_the_fragment_and_the_base_config(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    frag = tmp_path / "f.config"
    frag.write_text(kernel_config.FRAGMENT.read_text())
    a = kernel.inputs(make_config(kernel__fragment=str(frag)), _ToolsDouble())  # type: ignore[arg-type]
    frag.write_text(frag.read_text() + "CONFIG_HZ_100=y\n")
    b = kernel.inputs(make_config(kernel__fragment=str(frag)), _ToolsDouble())  # type: ignore[arg-type]
    c = kernel.inputs(make_config(kernel__fragment=str(frag), kernel__base_config="tinyconfig"), _ToolsDouble())  # type: ignore[arg-type]
    assert a["fragment_sha256"] != b["fragment_sha256"]
    assert c["base_config"] == {"target": "tinyconfig"} and b["base_config"] == {"target": "x86_64_defconfig"}
    assert a["source"] == {"kind": "debian", "package": "linux-source-6.1", "mirror": "http://deb.debian.org/debian", "suite": "bookworm"}


def test_tarball_and_prebuilt_need_url_and_sha256(make_config) -> None:  # type: ignore[no-untyped-def]
    for kind in ("tarball", "prebuilt"):
        with pytest.raises(ConfigError, match="needs kernel.url and kernel.sha256"):
            kernel_src.validate(make_config(kernel__source=kind).kernel)
    kernel_src.validate(make_config(kernel__source="tarball", kernel__url="http://x/l.tar.xz", kernel__sha256="a" * 64).kernel)


def test_a_missing_fragment_or_base_config_file_is_a_config_error(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="kernel fragment .* does not exist"):
        kernel._check_config_paths(make_config(kernel__fragment=str(tmp_path / "nope.config")))
    with pytest.raises(ConfigError, match="base_config .* does not exist"):
        kernel._check_config_paths(make_config(kernel__base_config=str(tmp_path / "nope/.config")))


def test_progress_counts_compiled_files_and_passes_warnings_through() -> None:
    shown: list[str] = []
    progress = kernel._Progress(show=shown.append)
    progress.EVERY = 3600
    for line in ["  CC      kernel/fork.o", "  AS      arch/x86/entry/entry_64.o", "  LD      vmlinux.o",
                 "  CHKSHA1 include/x.h", "HACKBACK-STEP compiling with 2 jobs",
                 "drivers/x.c:12:3: warning: unused variable 'y'"]:
        progress(line)
    progress.summary()
    assert progress.compiled == 2
    assert "--- compiling with 2 jobs" in shown
    assert any("warning: unused variable" in s for s in shown)
    assert not any("CHKSHA1" in s for s in shown)
    assert shown[-1] == "[kernel] 2 files compiled"


class _EngineDouble:
    """Test double for the Engine: records each RunSpec; `act(spec)` stands in for the container."""

    def __init__(self, act: Any = None) -> None:
        self.specs: list[Any] = []
        self.act = act

    def run(self, spec: Any, **kw: Any) -> int:
        self.specs.append(spec)
        if self.act is not None:
            self.act(spec, kw)
        return 0


def _elf_exec(path: Path, extra: bytes = b"", machine: int = 0x3E, e_type: int = 2) -> Path:
    """A minimal static 64-bit ELF header (no program headers) followed by `extra`."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HH", header, 16, e_type, machine)
    path.write_bytes(bytes(header) + extra)
    return path


class TestPrebuiltMustBeLinux:
    URL = "http://example.invalid/vmlinux"

    def _refused(self, path: Path) -> str:
        with pytest.raises(ConfigError) as e:
            kernel.check_prebuilt(path, self.URL)
        line = e.value.one_line()
        assert "\n" not in line and self.URL in line and "uncompressed x86-64 vmlinux" in line
        return line

    def test_any_x86_64_program_is_not_a_kernel(self, tmp_path: Path) -> None:
        assert "not a Linux kernel" in self._refused(_elf_exec(tmp_path / "prog", b"\0" * 4096))

    def test_a_pie_or_shared_object(self, tmp_path: Path) -> None:
        assert "not an x86-64 vmlinux" in self._refused(_elf_exec(tmp_path / "pie", b"Linux version 6.1", e_type=3))

    def test_another_machine(self, tmp_path: Path) -> None:
        assert "machine 0xb7" in self._refused(_elf_exec(tmp_path / "arm", b"Linux version 6.1", machine=0xB7))

    def test_a_bzimage(self, tmp_path: Path) -> None:
        bz = tmp_path / "bzImage"
        bz.write_bytes(b"MZ" + b"\0" * 510 + b"HdrS" + b"Linux version 6.1")
        assert "not an ELF file" in self._refused(bz)

    def test_a_vmlinux_passes_even_with_the_banner_across_a_read_boundary(self, tmp_path: Path) -> None:
        pad = b"\0" * ((4 << 20) - 64 - 5)  # "Linux" ends one read, " version " starts the next
        kernel.check_prebuilt(_elf_exec(tmp_path / "vmlinux", pad + b"Linux version 6.1.0 (gcc)"), self.URL)

    def test_ensure_refuses_it_and_leaves_no_artifact(self, make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
        prog = _elf_exec(tmp_path / "prog", b"\0" * 100)
        from hackback.protocol import context

        monkeypatch.setattr(context, "ensure_tools", lambda cfg, engine, layout: _ToolsDouble())
        monkeypatch.setattr(kernel_src, "resolve", lambda *a, **kw: kernel_src.KernelSource(
            "prebuilt", None, "prebuilt", "a" * 64, self.URL, vmlinux=prog))
        cfg = make_config(kernel__source="prebuilt", kernel__url=self.URL, kernel__sha256="a" * 64)
        with pytest.raises(ConfigError, match="not a Linux kernel"):
            kernel.ensure(StepContext.open(cfg, _EngineDouble()))  # type: ignore[arg-type]
        layout = Layout(cfg.work_dir)
        assert not layout.artifact_dir("kernels", cfg.name).exists()
        assert list(layout.tmp_dir.iterdir()) == []


class TestPrebuiltOnAFullDisk:
    """The copy of a prebuilt vmlinux into the work dir: too little space is refused
    before copying, and a copy that fills the disk anyway is one line, no partial file."""

    URL = "http://example.invalid/vmlinux"

    def _ensure(self, make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
        from hackback.protocol import context

        vmlinux = _elf_exec(tmp_path / "vmlinux", b"\0" * (1 << 20) + b"Linux version 6.1.0 (gcc)")
        monkeypatch.setattr(context, "ensure_tools", lambda cfg, engine, layout: _ToolsDouble())
        monkeypatch.setattr(kernel_src, "resolve", lambda *a, **kw: kernel_src.KernelSource(
            "prebuilt", None, "prebuilt", "a" * 64, self.URL, vmlinux=vmlinux))
        cfg = make_config(kernel__source="prebuilt", kernel__url=self.URL, kernel__sha256="a" * 64)
        with pytest.raises(DiskSpaceError) as e:
            kernel.ensure(StepContext.open(cfg, _EngineDouble()))  # type: ignore[arg-type]
        layout = Layout(cfg.work_dir)
        assert not layout.artifact_dir("kernels", cfg.name).exists() and list(layout.tmp_dir.iterdir()) == []
        line = e.value.one_line()
        assert "\n" not in line and "prebuilt vmlinux" in line
        return line

    def test_too_little_space_is_refused_before_copying(self, make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
        copies: list[object] = []
        monkeypatch.setattr(shutil, "copy2", lambda *a, **kw: copies.append(a))
        _no_space(monkeypatch, 4 << 20)
        assert "needs about" in self._ensure(make_config, tmp_path, monkeypatch) and copies == []

    def test_a_copy_that_fills_the_disk_is_one_line(self, make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
        import errno

        def fills(src: object, dst: object, **kw: object) -> None:
            Path(str(dst)).write_bytes(b"part of it")  # what the kernel had room for
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(shutil, "copy2", fills)
        assert "filled up" in self._ensure(make_config, tmp_path, monkeypatch)

def _no_space(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100 << 30, 100 << 30, free))  # type: ignore[attr-defined]


class TestKernelSourceDiskSpace:
    """Free space is checked before the .deb download and before the extraction,
    and a step that fills the disk anyway is one line with its leftovers removed."""

    def _layout(self, make_config) -> tuple[Any, Layout]:  # type: ignore[no-untyped-def]
        cfg = make_config()
        layout = Layout(cfg.work_dir)
        (layout.cache_dir("kernel-src", "debs")).mkdir(parents=True)
        return cfg, layout

    def test_too_little_space_for_the_deb_is_refused_before_apt_runs(self, make_config, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
        cfg, layout = self._layout(make_config)
        _no_space(monkeypatch, 50 << 20)
        engine = _EngineDouble()
        with pytest.raises(DiskSpaceError, match="linux-source-6.1") as e:
            kernel_src._apt_download(cfg.kernel, engine, _ToolsRef(), layout.cache_dir("kernel-src", "debs"))  # type: ignore[arg-type]
        assert engine.specs == [] and "\n" not in e.value.one_line()

    def test_a_download_that_fills_the_disk_leaves_no_partial_deb(self, make_config) -> None:  # type: ignore[no-untyped-def]
        cfg, layout = self._layout(make_config)
        debs = layout.cache_dir("kernel-src", "debs")
        (debs / "linux-source-6.1_6.1.1-1_all.deb").write_bytes(b"an older, complete one")

        def fill(spec: Any, kw: Any) -> None:
            (debs / "linux-source-6.1_6.1.99-1_all.deb").write_bytes(b"half")
            raise ContainerFailed("step kernel-fetch failed", exit_status=100,
                                  log_tail="E: Write error - write (28: No space left on device)")

        with pytest.raises(DiskSpaceError, match="ran out of space") as e:
            kernel_src._apt_download(cfg.kernel, _EngineDouble(fill), _ToolsRef(), debs)  # type: ignore[arg-type]
        assert str(debs) in e.value.one_line()
        assert [p.name for p in debs.iterdir()] == ["linux-source-6.1_6.1.1-1_all.deb"]

    def test_another_failure_stays_itself_but_leaves_nothing_either(self, make_config) -> None:  # type: ignore[no-untyped-def]
        cfg, layout = self._layout(make_config)
        debs = layout.cache_dir("kernel-src", "debs")

        def fail(spec: Any, kw: Any) -> None:
            (debs / "linux-source-6.1_6.1.99-1_all.deb").write_bytes(b"half")
            raise ContainerFailed("step kernel-fetch failed", exit_status=100, log_tail="E: Failed to fetch ... 404 Not Found")

        with pytest.raises(ContainerFailed):
            kernel_src._apt_download(cfg.kernel, _EngineDouble(fail), _ToolsRef(), debs)  # type: ignore[arg-type]
        assert list(debs.iterdir()) == []

    def test_too_little_space_for_the_tree_is_refused_before_extracting(self, make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
        _cfg, layout = self._layout(make_config)
        _no_space(monkeypatch, 1 << 30)
        engine = _EngineDouble()
        with pytest.raises(DiskSpaceError, match="extracting l.deb"):
            kernel_src._extract(engine, _ToolsRef(), layout, tmp_path / "l.deb", layout.cache_dir("kernel-src", "t"), "true")  # type: ignore[arg-type]
        assert engine.specs == [] and not layout.tmp_dir.exists()

    def test_an_extraction_that_fills_the_disk_is_one_line_and_leaves_no_half_tree(
            self, make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
        _cfg, layout = self._layout(make_config)
        printed = io.StringIO()
        monkeypatch.setattr(log, "_out", printed)

        def fill(spec: Any, kw: Any) -> None:
            out = Path(next(m.host for m in spec.mounts if m.container == "/hb/out"))
            (out / "linux-source-6.1" / "drivers").mkdir(parents=True)
            for i in range(1000):  # tar: one error a file
                kw["on_line"](f"tar: linux-source-6.1/drivers/f{i}.c: Cannot write: No space left on device")
            raise ContainerFailed("step kernel-extract failed", exit_status=2,
                                  log_tail="tar: Exiting with failure status due to previous errors")

        tree = layout.cache_dir("kernel-src", "linux-source-6.1-6.1.99")
        with pytest.raises(DiskSpaceError) as e:
            kernel_src._extract(_EngineDouble(fill), _ToolsRef(), layout, tmp_path / "l.deb", tree, "true")  # type: ignore[arg-type]
        assert "\n" not in e.value.one_line()
        assert not tree.exists() and list(layout.tmp_dir.iterdir()) == []
        shown = printed.getvalue()
        assert shown.count("Cannot write") == kernel_src._Capped.LIMIT and "990 more lines not shown" in shown


class _ToolsRef:
    ref = "hackback-tools:test-double"


# ---------------------------------------------------------------- Docker tier


@pytest.fixture(scope="module")
def debian_source(engine, tools, session_work: Path):  # type: ignore[no-untyped-def]
    from hackback.base import config
    from hackback.store.hashes import HashCache

    cfg = config.load(flags={"work_dir": str(session_work)}, environ={})
    layout = Layout(cfg.work_dir)
    return kernel_src.resolve(cfg.kernel, engine, tools, layout, HashCache(layout.hash_db))


@pytest.mark.docker
def test_debian_source_is_pinned_with_version_and_sha256(debian_source, session_work: Path) -> None:  # type: ignore[no-untyped-def]
    assert debian_source.kind == "debian" and debian_source.version.startswith("6.1.")
    assert len(debian_source.sha256) == 64
    assert (debian_source.tree / "Makefile").is_file()
    assert "linux-source-6.1=" in debian_source.origin


@pytest.mark.docker
def test_fragment_merges_over_defconfig_with_every_required_option_built_in(engine, tools, debian_source, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    merged = kernel.merge_config(engine, tools, debian_source.tree, tmp_path / "kbuild", kernel_config.FRAGMENT, "x86_64_defconfig")
    kernel_config.check(merged)  # raises, naming the option, if one is missing
    have = kernel_config.parse(merged)
    assert have["CONFIG_ATA_PIIX"] == "y" and have["CONFIG_PVH"] == "y"
    assert have.get("CONFIG_DRM", "n") == "n"  # what the fragment turns off stays off


@pytest.mark.docker
def test_a_fragment_without_a_required_option_fails_in_one_line_before_compiling(engine, tools, debian_source, session_work: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    frag = tmp_path / "no-pvh.config"
    frag.write_text("".join(ln for ln in kernel_config.FRAGMENT.read_text().splitlines(keepends=True) if "CONFIG_PVH" not in ln))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HACKBACK_")}
    env.update(HACKBACK_WORK_DIR=str(session_work), HACKBACK_NAME="no-pvh")
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "invoke", "kernel", "--fragment", str(frag)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "CONFIG_PVH" in lines[0], lines
    assert "kernel build:" not in out.stdout  # refused before compiling
    assert time.monotonic() - start < 300
    assert not (session_work / "kernels" / "no-pvh").exists()


# ---------------------------------------------------------------- slow tier


@pytest.mark.slow
@pytest.mark.qemu
def test_built_kernel_boots_the_image_under_qemu_to_the_autologin(engine, tools, tmp_path: Path, request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    if os.environ.get("HACKBACK_TEST_SLOW") != "1":
        pytest.skip("slow tier: a kernel build takes ~12 min on 2 cores; set HACKBACK_TEST_SLOW=1 to run it")
    from hackback.base import config
    from hackback.steps import image
    from hackback.services import qemu

    work = os.environ.get("HACKBACK_TEST_WORK_DIR") or str(tmp_path / "work")
    cfg = config.load(flags={"work_dir": work}, environ={})
    k = kernel.ensure(StepContext.open(cfg, engine))
    assert k.bzimage is not None
    kernel_config.check(k.config.read_text())  # type: ignore[union-attr]
    built = Layout(cfg.work_dir).artifact_dir("images", cfg.name)
    # An image already in the work dir (built with the real m5) serves; else one with the m5 stand-in.
    img = ImageArtifact.read(built) if (built / "manifest.json").is_file() else \
        image.ensure(StepContext.open(cfg, engine), request.getfixturevalue("m5_standin"))
    for extra in ("", f"init={FASTINIT}"):
        start = time.monotonic()
        spec = qemu.QemuBoot(img.disk, k.bzimage, f"root=PARTUUID={img.partuuid} rw console=ttyS0 hackback.m5=off {extra}",
                             timeout=600, disk_interface="ide")
        ok, lines = qemu.boot(engine, tools.ref, spec, until=lambda ln: "HACKBACK-MARK m5 exit" in ln)
        assert ok, "\n".join(lines[-30:])
        assert any("HACKBACK-READY" in ln for ln in lines)
        print(f"QEMU TCG boot ({extra or 'systemd'}) to the rcS: {time.monotonic() - start:.1f}s")
