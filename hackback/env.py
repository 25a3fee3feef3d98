"""`invoke env`: the env image (tools + one gem5 build) and the x86 m5 utility.

The env artifact, <work>/env/<name>/, holds m5 and manifest.json with two parts,
brought up to date separately so the image step can have m5 in minutes without
waiting hours for gem5:
  m5:   util/m5 built static for x86-64 (inputs: tools image, util/m5 + include)
  gem5: gem5.<variant> in the env image (inputs: tools image, whole source
        tree, build options)
The scons build tree lives in <work>/cache/gem5-build/<name>/, a host
directory: an interrupted build resumes, and after editing one .cc only that
is rebuilt.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from . import elf, log, resources
from .artifacts import (
    HashCache,
    Layout,
    Manifest,
    digest_of,
    file_record,
    lock,
    new_tmp,
    part_record,
    require_free,
    staged,
    write_manifest,
)
from .base import LABEL_KIND, ToolsImage, ensure_tools
from .config import Config
from .engine import Engine, Mount, RunSpec
from .errors import ArtifactError
from .gem5src import Gem5Source, resolve

ENV_REPO = "hackback-env"
SRC_MNT = "/hackback/gem5"
BUILD_MNT = "/hackback/gem5-build"
OUT_MNT = "/hackback/out"
GEM5_BUILD_BYTES = 16 << 30  # an X86 gem5.opt tree without Ruby/SystemC (~10 GiB with -g) + its ccache


@dataclass(frozen=True)
class EnvArtifact:
    name: str
    directory: Path
    image: Optional[str]  # None until the gem5 part is built
    m5: Path
    manifest: Manifest
    tools: ToolsImage
    source: Gem5Source


class _Ctx:
    """What every part of the env step needs, resolved once."""

    def __init__(self, cfg: Config, engine: Optional[Engine] = None) -> None:
        self.cfg = cfg
        self.layout = Layout(cfg.work_dir)
        self.hashes = HashCache(self.layout.hash_db)
        self.engine = engine or Engine.connect()
        # The source first: an unreachable upstream must fail before minutes of image builds.
        self.source = resolve(cfg.gem5, self.layout, self.hashes)
        self.tools = ensure_tools(cfg, self.engine, self.layout)
        self.directory = self.layout.artifact_dir("env", cfg.name)

    def m5_inputs(self) -> dict[str, Any]:
        return {"tools_image": self.tools.id, "m5_source_sha256": self.source.m5_sha256}

    def gem5_inputs(self) -> dict[str, Any]:
        return {
            "tools_image": self.tools.id,
            "gem5_tree_sha256": self.source.tree_sha256,
            "build_options": dict(self.cfg.gem5.build_options),
            "variant": self.cfg.gem5.variant,
            "linker": self.cfg.gem5.linker,
            "env_dockerfile": digest_of((resources.docker_dir("env") / "Dockerfile").read_text()),
            "m5_source_sha256": self.source.m5_sha256,  # the env image carries m5 too
        }


def ensure_m5(cfg: Config, force: bool = False, engine: Optional[Engine] = None) -> EnvArtifact:
    """The m5 utility only (what the image step needs)."""
    return _ensure(_Ctx(cfg, engine), want_gem5=False, force=force)


def ensure(cfg: Config, force: bool = False, engine: Optional[Engine] = None) -> EnvArtifact:
    """m5 and the env image with gem5, each rebuilt only when its inputs changed."""
    return _ensure(_Ctx(cfg, engine), want_gem5=True, force=force)


def _ensure(ctx: _Ctx, want_gem5: bool, force: bool) -> EnvArtifact:
    """Bring each wanted part up to date. Each part has its own build lock, so
    building m5 never waits for an hours-long gem5 build; the artifact lock is
    held only for the moment a part is committed."""
    cfg, layout = ctx.cfg, ctx.layout
    parts = [("m5", ctx.m5_inputs, _build_m5)]
    if want_gem5:
        parts.append(("gem5", ctx.gem5_inputs, _build_gem5))
    built = False
    for part, inputs, build_part in parts:
        if not force and _fresh(ctx, part, inputs()):
            continue
        with lock(layout, "env", f"{cfg.name}.{part}"):
            if not force and _fresh(ctx, part, inputs()):
                continue  # another run built it while we waited
            work = new_tmp(layout, f"env-{cfg.name}-{part}")
            try:
                record = build_part(ctx, work)
                with lock(layout, "env", cfg.name), staged(layout, "env", cfg.name, keep_existing=True) as tmp:
                    manifest = Manifest.read(ctx.directory) or Manifest("env", cfg.name)
                    for produced in work.iterdir():
                        os.replace(produced, tmp / produced.name)
                    manifest.parts[part] = record
                    write_manifest(tmp, manifest)
                built = True
            finally:
                shutil.rmtree(work, ignore_errors=True)
    if not built:
        log.info(f"env '{cfg.name}' is up to date ({ctx.directory})")
    return _artifact(ctx, Manifest.read(ctx.directory) or Manifest("env", cfg.name))


def _fresh(ctx: _Ctx, part: str, inputs: dict[str, Any]) -> bool:
    manifest = Manifest.read(ctx.directory)
    if manifest is None or not manifest.is_fresh(part, inputs, ctx.directory):
        return False
    if part == "gem5":
        return ctx.engine.image_id(str(manifest.parts["gem5"]["outputs"]["image"]["ref"])) is not None
    return True


def _artifact(ctx: _Ctx, manifest: Manifest) -> EnvArtifact:
    gem5 = manifest.part("gem5")
    image = str(gem5["outputs"]["image"]["ref"]) if gem5 else None
    return EnvArtifact(ctx.cfg.name, ctx.directory, image, ctx.directory / "m5", manifest, ctx.tools, ctx.source)


def _build_m5(ctx: _Ctx, tmp: Path) -> dict[str, Any]:
    """util/m5 wants to write util/m5/build inside the source; build in a scratch
    copy (it is small and takes seconds) so the source stays read-only."""
    with log.step("m5 utility (x86, static)"):
        script = (
            "set -e; mkdir -p /tmp/g/util /tmp/g/ext; "
            f"cp -a {SRC_MNT}/include /tmp/g/; cp -a {SRC_MNT}/util/m5 /tmp/g/util/; "
            f"cp -a {SRC_MNT}/ext/googletest /tmp/g/ext/ 2>/dev/null || true; "
            f"cd /tmp/g/util/m5 && scons -j{ctx.cfg.jobs} build/x86/out/m5 && "
            f"cp build/x86/out/m5 {OUT_MNT}/m5.new && file {OUT_MNT}/m5.new"
        )
        spec = RunSpec(
            ctx.tools.ref,
            ["bash", "-c", script],
            step="env-m5",
            mounts=[Mount(ctx.source.path, SRC_MNT), Mount(tmp, OUT_MNT, read_only=False)],
            kvm=False,
        )
        ctx.engine.run(spec, phase="m5")
        info = elf.read(tmp / "m5.new")
        if not (info.x86_64 and info.static):
            raise ArtifactError(f"the m5 built from {ctx.source.path} is not a static x86-64 executable", "check util/m5 in that tree")
        os.replace(tmp / "m5.new", tmp / "m5")
        return part_record(
            ctx.m5_inputs(),
            {"m5": file_record(tmp / "m5", ctx.hashes)},
            {"tools": ctx.tools.versions, "gem5_source": ctx.source.identity()},
        )


def gem5_build_dir(layout: Layout, name: str) -> Path:
    return layout.cache_dir("gem5-build", name)


def _build_gem5(ctx: _Ctx, tmp: Path) -> dict[str, Any]:
    cfg, layout = ctx.cfg, ctx.layout
    build = gem5_build_dir(layout, cfg.name)
    binary = f"gem5.{cfg.gem5.variant}"
    if not (build / "build" / "X86" / binary).exists():
        require_free(build, GEM5_BUILD_BYTES, "a gem5 build")
    build.mkdir(parents=True, exist_ok=True)
    target = f"{BUILD_MNT}/build/X86"
    # The source is mounted writable for gem5 alone: its ext/libelf/native-elf-format
    # makes a scratch file in the current directory (the source top), and a
    # read-only tree left native-elf-format.h empty and failed the build.
    mounts = [Mount(ctx.source.path, SRC_MNT, read_only=False), Mount(build, BUILD_MNT, read_only=False)]

    def run(step: str, command: list[str], **kw: Any) -> None:
        spec = RunSpec(ctx.tools.ref, command, step=step, mounts=mounts, workdir=SRC_MNT, kvm=False, **kw)
        with open(build / f"last-{step}.log", "w") as step_log:
            ctx.engine.run(spec, phase="gem5", log_file=step_log)

    with log.step(f"gem5 {ctx.source.release} X86 {binary} (incremental; tree kept in {build})"):
        options = dict(cfg.gem5.build_options)
        applied = build / "hackback-build-options.json"
        if not applied.is_file() or json.loads(applied.read_text()) != options:
            # Kconfig: build_opts/X86, then our options; only when they change, since
            # a changed config makes scons rebuild much of what it has.
            # --ignore-style: gem5 otherwise stops to ask about installing git hooks.
            kconfig = f"scons --ignore-style defconfig {target} build_opts/X86"
            if options:
                kconfig += f" && scons --ignore-style setconfig {target} " + " ".join(f"{k}={v}" for k, v in options.items())
            run("env-gem5-config", ["bash", "-c", kconfig])
            applied.write_text(json.dumps(options, sort_keys=True))
        # scons is the container's main process so a stop reaches it: it then
        # saves its signature database and the next run resumes. ccache covers
        # the case where it was killed before it could.
        linker = [f"--linker={cfg.gem5.linker}"] if cfg.gem5.linker else []
        run(
            "env-gem5",
            ["scons", "--ignore-style", *linker, f"-j{cfg.jobs}", f"{target}/{binary}"],
            environment={
                "PATH": "/usr/lib/ccache:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "CCACHE_DIR": f"{BUILD_MNT}/ccache",
                "CCACHE_MAXSIZE": "20G",
            },
            stop_grace=300,
        )
        # The image gets a copy without debug info (gem5.opt is built with -g and is
        # several times larger); the full binary stays in the build tree for gdb.
        run("env-gem5-strip", ["objcopy", "--strip-debug", f"{target}/{binary}", f"{BUILD_MNT}/{binary}.stripped"])
    full = build / "build" / "X86" / binary
    stripped = build / f"{binary}.stripped"

    context = tmp / ".image-context"
    context.mkdir(exist_ok=True)
    try:
        shutil.copy2(resources.docker_dir("env") / "Dockerfile", context / "Dockerfile")
        shutil.copy2(stripped, context / binary)
        shutil.copy2(ctx.directory / "m5", context / "m5")  # committed before this part is built
        gem5_sha = ctx.hashes.sha256(full)
        ref = f"{ENV_REPO}:{digest_of({'tools': ctx.tools.id, 'gem5': gem5_sha, 'm5': ctx.hashes.sha256(ctx.directory / 'm5')})[:12]}"
        labels = {
            LABEL_KIND: "env",
            "io.hackback.name": cfg.name,
            "io.hackback.gem5.release": ctx.source.release,
            "io.hackback.gem5.commit": ctx.source.commit or "",
            "io.hackback.gem5.tree": ctx.source.tree_sha256,
        }
        with log.step(f"env image {ref}"):
            image_id = ctx.engine.build(
                context, ref, phase="env-image", buildargs={"TOOLS": ctx.tools.ref, "GEM5_BINARY": binary}, labels=labels
            )
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return part_record(
        ctx.gem5_inputs(),
        {"image": {"ref": ref, "id": image_id, "binary": f"/opt/hackback/bin/{binary}"}},
        {
            "gem5_source": ctx.source.identity(),
            "gem5_binary_sha256": gem5_sha,
            "gem5_stripped_sha256": ctx.hashes.sha256(stripped),
            "build_dir": str(build),
            "tools_image": ctx.tools.ref,
            "tools": ctx.tools.versions,
            "base_image": {"ref": ctx.tools.base.ref, "id": ctx.tools.base.id, "origin": ctx.tools.base.origin},
        },
    )
