"""The tools image (everything the steps run in, but gem5) and the Debian base it is built on.

The base is pulled when a registry answers; air-gapped (no registry, as on our
CI machines) it is bootstrapped from the configured mirror with debootstrap
and imported. The tools image is tagged by a digest of its Dockerfile and its
base, so it is rebuilt only when one of those changes.
"""
from __future__ import annotations

import os
import shutil
import subprocess

from ..base import log, resources
from ..store.build import new_tmp
from ..store.hashes import digest_of, sha256_file
from ..store.layout import Layout, require_free
from ..store.manifest import write_atomically
from ..base.config import Config
from ..base.engine import Engine, RunSpec
from ..base.errors import DockerFailure, HostCommandFailed, UsageError
from ..store.records import BaseImage, ToolsImage

TOOLS_REPO = "hackback-tools"
BASE_REPO = "hackback-base"
LABEL_KIND = "io.hackback.kind"


def bootstrap_ref(cfg: Config) -> str:
    return f"{BASE_REPO}:{cfg.base.distribution}-{cfg.base.suite}-{digest_of(cfg.base.mirror)[:8]}"


def ensure_base(cfg: Config, engine: Engine, layout: Layout) -> BaseImage:
    mode = cfg.base.mode
    if mode in ("auto", "pull"):
        image_id = engine.image_id(cfg.base.image)
        if image_id:
            return BaseImage(cfg.base.image, image_id, "local")
    ref = bootstrap_ref(cfg)
    if mode != "pull":
        image_id = engine.image_id(ref)
        if image_id:
            return BaseImage(ref, image_id, f"bootstrapped from {cfg.base.mirror}")
    layout.would_build(f"the base image ({cfg.base.image} or {ref})", "not there yet: pulled or bootstrapped, then the tools image")
    if mode in ("auto", "pull"):
        if engine.pull(cfg.base.image):
            return BaseImage(cfg.base.image, engine.image_id(cfg.base.image) or "", "pulled")
        if mode == "pull":
            raise DockerFailure(
                f"could not pull the base image {cfg.base.image}",
                "set base.mode = \"bootstrap\" (or HACKBACK_BASE_MODE=bootstrap) to build it from the Debian mirror",
            )
        log.info(f"base image {cfg.base.image} cannot be pulled: bootstrapping {cfg.base.suite} from {cfg.base.mirror} (air-gapped mode)")
    return BaseImage(ref, bootstrap(cfg, engine, layout, ref), f"bootstrapped from {cfg.base.mirror}")


def bootstrap(cfg: Config, engine: Engine, layout: Layout, ref: str) -> str:
    """debootstrap a minimal root filesystem on the host and import it as an image."""
    if shutil.which("debootstrap") is None:
        raise UsageError(
            "the base image cannot be pulled and debootstrap is not installed to build it",
            "install it (`apt-get install debootstrap`) or make the base image pullable",
        )
    if os.geteuid() != 0:
        raise UsageError(
            "bootstrapping the base image needs root (debootstrap creates device nodes and chroots)",
            f"run this once as root, or load a Debian image and set base.image (now {cfg.base.image})",
        )
    require_free(layout.work_dir, 2 << 30, "bootstrapping the base image")
    tmp = new_tmp(layout, "base")
    try:
        rootfs = tmp / "rootfs"
        with log.step(f"debootstrap {cfg.base.suite} from {cfg.base.mirror}"):
            cmd = ["debootstrap", "--variant=minbase", cfg.base.suite, str(rootfs), cfg.base.mirror]
            _run_streamed(cmd, "base")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (rootfs / junk).glob("*"):
                if p.is_file():
                    p.unlink()
        tarball = tmp / "rootfs.tar"
        _run_streamed(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], "base")
        labels = {LABEL_KIND: "base", "io.hackback.mirror": cfg.base.mirror, "io.hackback.suite": cfg.base.suite}
        return engine.import_rootfs(tarball, ref, ['CMD ["/bin/bash"]'], labels)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_streamed(cmd: list[str], phase: str) -> None:
    log.action(" ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-20:]
        log.stream(phase, line)
    if proc.wait() != 0:
        raise HostCommandFailed(f"`{' '.join(cmd[:3])} …` failed with exit {proc.returncode}", tail[-1] if tail else "")


def tools_ref(cfg: Config, base: BaseImage) -> str:
    dockerfile = resources.docker_dir("tools") / "Dockerfile"
    return f"{TOOLS_REPO}:{digest_of({'dockerfile': sha256_file(dockerfile), 'base': base.id})[:12]}"


def ensure_tools(cfg: Config, engine: Engine, layout: Layout) -> ToolsImage:
    """The tools image for this config's base, built if missing."""
    base = ensure_base(cfg, engine, layout)
    ref = tools_ref(cfg, base)
    image_id = engine.image_id(ref)
    if image_id is None:
        layout.would_build(f"the tools image {ref}", "not built yet (and everything made with it is built after it)")
        require_free(layout.work_dir, 3 << 30, "building the tools image")
        with log.step(f"tools image {ref} (base {base.ref}, {base.origin})"):
            image_id = engine.build(
                resources.docker_dir("tools"),
                ref,
                phase="tools",
                buildargs={"BASE": base.ref},
                labels={LABEL_KIND: "tools", "io.hackback.base": base.id},
            )
    return ToolsImage(ref, image_id, base, tools_versions(engine, layout, ref, image_id))


def tools_versions(engine: Engine, layout: Layout, ref: str, image_id: str) -> dict[str, str]:
    """Versions as installed in the image, read once and remembered per image id."""
    cache = layout.cache_dir("tools", image_id.replace(":", "-") + ".versions")
    if not cache.is_file() and layout.dry_run:
        return {}  # a dry run starts no container: versions not read yet are not known
    if not cache.is_file():
        lines: list[str] = []
        engine.run(RunSpec(ref, ["cat", "/etc/hackback-tools-versions"], step="tools-versions", kvm=False), on_line=lines.append)
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache, "\n".join(lines) + "\n")
    out = {}
    for line in cache.read_text().splitlines():
        key, _, value = line.partition("=")
        if key:
            out[key] = value
    return out


