"""`hackback kernel`: a vmlinux gem5 x86 can boot, and a bzImage QEMU can.

Linux is built out of tree in the tools image: the source (kernel_src) is
mounted read-only, the build tree lives in <work>/cache/kernel-build/<name>/
so a config change rebuilds only what it touches. The config is the base
config with our fragment merged over it; before compiling, every option gem5
needs is checked to be built in (kernel_config.check). Outputs go to
<work>/kernels/<name>/: vmlinux, bzImage, config, manifest.json.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from ..base import elf, log, resources
from ..services import kernel_config, kernel_patch, kernel_src
from ..store.build import Target, build_unless_fresh
from ..store.hashes import HashCache, file_record
from ..store.layout import Layout, copy_file, require_free
from ..store.manifest import Manifest
from ..base.config import Config
from ..protocol.context import StepContext
from ..protocol.step import Request, Step
from ..base.engine import Engine, Mount, RunSpec
from ..store.records import KernelArtifact, ToolsImage
from ..base.errors import ArtifactError, ConfigError

LINUX_DIR = resources.package_file("linux")  # data: the build script, config fragment, patches
BUILD_SCRIPT = LINUX_DIR / "build.sh"
SRC_MNT, BUILD_MNT, FRAG_MNT, BASE_MNT = "/hackback/linux", "/hackback/kbuild", "/hackback/fragment.config", "/hackback/base.config"
KERNEL_BUILD_BYTES = 4 << 30  # source 1.6 GiB + an x86_64_defconfig tree without debug info 0.5 GiB, with room


def fragment_path(cfg: Config) -> Path:
    return cfg.kernel.fragment or kernel_config.FRAGMENT


def inputs(cfg: Config, tools: ToolsImage) -> dict[str, Any]:
    kc = cfg.kernel
    want: dict[str, Any] = {"source": kernel_src.spec_inputs(kc)}
    if kc.source == "prebuilt":
        return want
    base = Path(kc.base_config)
    return {
        **want,
        "tools_image": tools.id,
        "base_config": {"file_sha256": HashCache.sha256_uncached(base)} if base.is_file() else {"target": kc.base_config},
        "fragment_sha256": HashCache.sha256_uncached(fragment_path(cfg)),
        "required": kernel_config.required(),
        "build_script": HashCache.sha256_uncached(BUILD_SCRIPT),
        "patches": kernel_patch.identity(),
    }


def ensure(ctx: StepContext, force: bool = False) -> KernelArtifact:
    cfg = ctx.cfg
    kernel_src.validate(cfg.kernel)
    _check_config_paths(cfg)
    want = inputs(cfg, ctx.tools)

    def build(tmp: Path, manifest: Manifest) -> None:
        source = kernel_src.resolve(cfg.kernel, ctx.engine, ctx.tools, ctx.layout, ctx.hashes, refresh=force)
        if source.vmlinux is not None:
            _take_prebuilt(source, tmp, ctx.hashes, want, manifest)
        else:
            _build(ctx, source, want, manifest, tmp)

    done = build_unless_fresh(ctx.layout, Target("kernels", cfg.name, "kernel", f"kernel '{cfg.name}'"), want, force, build)
    return KernelArtifact.of(cfg.name, done.directory, done.manifest)


def _check_config_paths(cfg: Config) -> None:
    frag = fragment_path(cfg)
    if not frag.is_file():
        raise ConfigError(f"kernel fragment {frag} does not exist", "fix kernel.fragment, or set it to \"\" for the shipped one")
    base = cfg.kernel.base_config
    if "/" in base and not Path(base).is_file():
        raise ConfigError(f"kernel.base_config {base} does not exist", "give a .config file, or a make target like x86_64_defconfig")


def _check_vmlinux(path: Path) -> None:
    info = elf.read(path)
    if not (info.x86_64 and info.type == elf.ET_EXEC):
        raise ArtifactError(f"{path} is not an x86-64 ELF executable", "gem5 x86 needs an uncompressed x86-64 vmlinux")


LINUX_BANNER = b"Linux version "  # linux_banner in init/version.c, in every vmlinux


def check_prebuilt(path: Path, url: str) -> None:
    """A prebuilt vmlinux is the user's choice of file: refuse any x86-64 program
    that is not a Linux kernel gem5 can load, before anything is copied."""
    what = f"the prebuilt kernel (kernel.url {url})"
    hint = 'kernel.source = "prebuilt" takes an uncompressed x86-64 vmlinux, not a bzImage, vmlinuz or other program'
    try:
        info = elf.read(path)
    except ArtifactError as e:
        raise ConfigError(f"{what}: {e.message}", hint) from None
    if not (info.x86_64 and info.type == elf.ET_EXEC):
        raise ConfigError(f"{what} is {elf.describe(info)}, not an x86-64 vmlinux", hint)
    if not _contains(path, LINUX_BANNER):
        raise ConfigError(f"{what} is an x86-64 executable but not a Linux kernel (no 'Linux version' banner in it)", hint)


def _contains(path: Path, needle: bytes, chunk: int = 4 << 20) -> bool:
    with open(path, "rb") as f:
        tail = b""
        while block := f.read(chunk):
            if needle in tail + block:
                return True
            tail = block[-len(needle):]  # a match may straddle two blocks
    return False


def _take_prebuilt(source: kernel_src.KernelSource, tmp: Path, hashes: HashCache, want: dict[str, Any], manifest: Manifest) -> None:
    assert source.vmlinux is not None
    check_prebuilt(source.vmlinux, source.origin)
    copy_file(source.vmlinux, tmp / "vmlinux", "copying the prebuilt vmlinux into the work dir")
    log.warn("a prebuilt vmlinux: its config cannot be checked for what gem5 needs, and there is no QEMU form")
    manifest.set_part("kernel", want, {"vmlinux": file_record(tmp / "vmlinux", hashes)}, {"source": source.identity()})


def build_dir(layout: Layout, name: str) -> Path:
    return layout.cache_dir("kernel-build", name)


def merge_config(engine: Engine, tools: ToolsImage, tree: Path, build: Path, fragment: Path, base_config: str) -> str:
    """Base config + fragment, resolved by Kconfig; the merged text. Checked by the caller."""
    build.mkdir(parents=True, exist_ok=True)
    mounts, env = _mounts(tree, build, fragment, base_config)
    with log.step(f"kernel config: {Path(base_config).name if '/' in base_config else base_config} + {fragment.name}"):
        engine.run(
            RunSpec(tools.ref, ["bash", f"{BUILD_MNT}/.build.sh", "config"], step="kernel-config", mounts=mounts,
                    environment=env, network="none", kvm=False),
            phase="kernel:config", on_line=lambda ln: log.stream("kernel:config", ln),
        )
    return (build / ".config.merged").read_text()


def _mounts(tree: Path, build: Path, fragment: Path, base_config: str) -> tuple[list[Mount], dict[str, str]]:
    shutil.copy2(BUILD_SCRIPT, build / ".build.sh")  # the tree is mounted anyway; one mount fewer
    mounts = [Mount(tree, SRC_MNT), Mount(build, BUILD_MNT, read_only=False), Mount(fragment.resolve(), FRAG_MNT)]
    env = {"SRC": SRC_MNT, "B": BUILD_MNT, "FRAGMENT": FRAG_MNT, "BASE_CONFIG": base_config}
    if Path(base_config).is_file():
        mounts.append(Mount(Path(base_config).resolve(), BASE_MNT))
        env["BASE_CONFIG"] = BASE_MNT
    return mounts, env


def _fresh_build_dir(ctx: StepContext, source: kernel_src.KernelSource) -> Path:
    """The kept build tree, started afresh when it was built from another source."""
    build = build_dir(ctx.layout, ctx.cfg.name)
    stamp = build / "hackback-source.json"
    if build.is_dir() and (not stamp.is_file() or json.loads(stamp.read_text()) != source.identity()):
        log.info(f"kernel: the source changed since {build} was built; starting that tree afresh")
        shutil.rmtree(build)
    if not (build / "vmlinux").is_file():
        require_free(ctx.layout.work_dir, KERNEL_BUILD_BYTES, "a kernel build")
    build.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(source.identity(), sort_keys=True))
    return build


def _build(ctx: StepContext, source: kernel_src.KernelSource, want: dict[str, Any], manifest: Manifest, tmp: Path) -> None:
    assert source.tree is not None
    cfg, tools = ctx.cfg, ctx.tools
    build = _fresh_build_dir(ctx, source)
    fragment = fragment_path(cfg)
    tree = kernel_patch.patched_tree(source.tree, ctx.layout, ctx.engine, tools.ref)
    merged = merge_config(ctx.engine, tools, tree, build, fragment, cfg.kernel.base_config)
    kernel_config.check(merged)  # before half an hour of compiling, not after

    mounts, env = _mounts(tree, build, fragment, cfg.kernel.base_config)
    env["JOBS"] = str(cfg.jobs)
    start = time.monotonic()
    progress = _Progress()
    with log.step(f"kernel build: {source.version}, {cfg.jobs} jobs (tree kept in {build})"):
        with open(build / "last-build.log", "w") as build_log:
            ctx.engine.run(
                RunSpec(tools.ref, ["bash", f"{BUILD_MNT}/.build.sh", "build"], step="kernel-build", mounts=mounts,
                        environment=env, network="none", kvm=False, stop_grace=30),
                phase="kernel", log_file=build_log, on_line=progress,
            )
        progress.summary()
    seconds = time.monotonic() - start
    for name, rel in (("vmlinux", "vmlinux"), ("bzImage", "arch/x86/boot/bzImage"), ("config", ".config")):
        shutil.copy2(build / rel, tmp / name)
    _check_vmlinux(tmp / "vmlinux")
    kernel_config.check((tmp / "config").read_text())
    _record(ctx, source, build, want, manifest, tmp, {"build_seconds": round(seconds, 1), "files_compiled": progress.compiled})


def _record(ctx: StepContext, source: kernel_src.KernelSource, build: Path, want: dict[str, Any], manifest: Manifest,
            tmp: Path, measured: dict[str, Any]) -> None:
    release_file = build / "include" / "config" / "kernel.release"
    manifest.set_part(
        "kernel",
        want,
        {name: file_record(tmp / name, ctx.hashes) for name in ("vmlinux", "bzImage", "config")},
        {
            "source": source.identity(),
            "patches": kernel_patch.identity(),
            "kernel_release": release_file.read_text().strip() if release_file.is_file() else "",
            "base_config": ctx.cfg.kernel.base_config,
            "fragment": str(fragment_path(ctx.cfg)),
            "config_sha256": ctx.hashes.sha256(tmp / "config"),
            "compiler": ctx.tools.versions.get("gcc", ""),
            "tools_image": ctx.tools.ref,
            "build_dir": str(build),
            **measured,
        },
    )
    log.info(f"kernel: vmlinux {(tmp / 'vmlinux').stat().st_size / 2**20:.0f} MiB, "
             f"bzImage {(tmp / 'bzImage').stat().st_size / 2**20:.1f} MiB, built in "
             f"{log.format_seconds(measured['build_seconds'])}")


# Kbuild's one line per action: two spaces, a short upper-case tag, the target.
_KBUILD_STEP = re.compile(r"^  ([A-Z][A-Z0-9_.]*(?: \[M\])?)\s+(\S.*)$")


class _Progress:
    """Kbuild prints a line per file; show a count every 15 s instead of thousands of lines.
    Warnings, errors and our own step lines pass straight through."""

    EVERY = 15.0

    def __init__(self, show: Callable[[str], None] = log.info) -> None:
        self.show = show
        self.compiled = 0
        self.last = ""
        self.start = self.next = time.monotonic()

    def __call__(self, line: str) -> None:
        step = _KBUILD_STEP.match(line)
        if step:
            self.compiled += step.group(1) in ("CC", "AS")
            self.last = step.group(2)
            now = time.monotonic()
            if now >= self.next:
                self.next = now + self.EVERY
                self.show(f"[kernel] {self.compiled} files compiled in {log.format_seconds(now - self.start)} (now: {self.last})")
        elif line.startswith("HACKBACK-STEP "):
            self.show(f"--- {line.split(' ', 1)[1]}")
        elif line.strip() and not line.startswith(("make[", "make:")):
            self.show(f"[kernel] {line}")

    def summary(self) -> None:
        self.show(f"[kernel] {self.compiled} files compiled")


class KernelStep(Step):
    name = "kernel"

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> KernelArtifact:
        return ensure(ctx, force=req.forced(self.name))


KERNEL = KernelStep()
