"""The kernel step. Unit: inputs, config refusals, the progress printer.
Docker tier (CI): the Debian source is fetched and our fragment really merged
over x86_64_defconfig, and a fragment without a required option is refused
in one line before compiling. Slow tier (HACKBACK_TEST_SLOW=1): the full
build, booted with the image under QEMU TCG to the serial autologin."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hackback import kernel, kernel_config, kernel_src
from hackback.artifacts import Layout
from hackback.errors import ConfigError

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


# ---------------------------------------------------------------- Docker tier


@pytest.fixture(scope="module")
def debian_source(engine, tools, session_work: Path):  # type: ignore[no-untyped-def]
    from hackback import config
    from hackback.artifacts import HashCache

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
def test_built_kernel_boots_the_image_under_qemu_to_the_autologin(engine, tools, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if os.environ.get("HACKBACK_TEST_SLOW") != "1":
        pytest.skip("slow tier: a kernel build takes ~12 min on 2 cores; set HACKBACK_TEST_SLOW=1 to run it")
    from hackback import config, image, qemu

    work = os.environ.get("HACKBACK_TEST_WORK_DIR") or str(tmp_path / "work")
    cfg = config.load(flags={"work_dir": work}, environ={})
    k = kernel.ensure(cfg, engine=engine)
    assert k.bzimage is not None
    kernel_config.check(k.config.read_text())  # type: ignore[union-attr]
    built = Layout(cfg.work_dir).artifact_dir("images", cfg.name)
    # An image already in the work dir (built with the real m5) serves; else one with the m5 stand-in.
    img = image.load(built) if (built / "manifest.json").is_file() else \
        image.ensure(cfg, REPO / "tests" / "data" / "m5-standin", engine=engine)
    for extra in ("", f"init={image.FASTINIT}"):
        start = time.monotonic()
        ok, lines = qemu.boot(engine, tools.ref, img.disk, k.bzimage, f"root=PARTUUID={img.partuuid} rw console=ttyS0 hackback.m5=off {extra}",
                              until=lambda ln: "HACKBACK-MARK m5 exit" in ln, timeout=600, disk_interface="ide")
        assert ok, "\n".join(lines[-30:])
        assert any("HACKBACK-READY" in ln for ln in lines)
        print(f"QEMU TCG boot ({extra or 'systemd'}) to the rcS: {time.monotonic() - start:.1f}s")
