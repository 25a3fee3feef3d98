"""`hackback env`: the env image (tools + one gem5 build) and the x86 m5 utility.

The env artifact, <work>/env/<name>/, holds m5 and manifest.json with two parts,
brought up to date separately so the image step can have m5 in minutes without
waiting hours for gem5:
  m5:   util/m5 built static for x86-64 (inputs: tools image, util/m5 + include)
  gem5: gem5.<variant> in the env image (inputs: tools image, whole source
        tree, and the build options, or the sha256 of a binary built elsewhere)
A gem5 brought with gem5.binary is checked before anything is built (an
x86-64 ELF whose libraries resolve in the tools image, simulating X86, of the
source's release) and packaged as it is. Either way the binary is asked what it
is (configs/hackback_probe.py): its release, ISAs and checkpoint version tags.
The scons build tree lives in <work>/cache/gem5-build/<name>/, a host
directory: an interrupted build resumes, and after editing one .cc only that
is rebuilt.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ..base import elf, log, resources
from ..store.build import Target, build_unless_fresh
from ..store.hashes import HashCache, digest_of, file_record
from ..store.layout import Layout, WouldBuild, require_free
from ..store.manifest import Manifest, part_record
from ..services.tools_image import LABEL_KIND
from ..base.config import Config
from ..protocol.context import StepContext
from ..protocol.step import Request, Step
from ..base.engine import Engine, Mount, RunSpec
from ..base.errors import ArtifactError, UsageError
from ..services.gem5src import resolve
from ..store.records import EnvArtifact, Gem5Image, Gem5PartInfo, Gem5Source

ENV_REPO = "hackback-env"
SRC_MNT = "/hackback/gem5"
BUILD_MNT = "/hackback/gem5-build"
OUT_MNT = "/hackback/out"
CONFIG_MNT = "/hackback/configs"
BROUGHT_MNT = "/hackback/in"
GEM5_BUILD_BYTES = 16 << 30  # an X86 gem5.opt tree without Ruby/SystemC (~10 GiB with -g) + its ccache


# What a cold gem5 build costs here (README, "gem5"): a dry run says so before anyone starts one.
GEM5_COMPILE_COST = "gem5.opt compiled from source: hours on 2 cores (a cold X86 build here); or bring one with --gem5-binary"


def gem5_cost(cfg: Any) -> str:
    if cfg.gem5.binary is not None:
        return f"the gem5 binary given ({cfg.gem5.binary}) checked and packaged: seconds"
    return GEM5_COMPILE_COST


class _Ctx:
    """What every part of the env step needs, resolved once."""

    def __init__(self, step: StepContext) -> None:
        cfg = self.cfg = step.cfg
        if cfg.gem5.binary is not None:
            check_binary_file(cfg.gem5.binary)  # before any engine work
        self.layout, self.hashes = step.layout, step.hashes
        self.engine = step.engine
        # The source first: an unreachable upstream must fail before minutes of image builds.
        # Once per task: the m5 and gem5 steps of one task share it (hashing a tree takes seconds).
        def resolved() -> Gem5Source:
            try:
                return resolve(cfg.gem5, self.layout, self.hashes)
            except WouldBuild as e:  # a dry run: say what comes after the source, the compile above all
                raise WouldBuild(f"env '{cfg.name}'", f"{e.what}: {e.why}; then {gem5_cost(cfg)}") from None

        self.source = step.memo.get(("gem5 source", cfg.gem5, cfg.work_dir), resolved)
        self.tools = step.tools
        self.directory = self.layout.artifact_dir("env", cfg.name)
        self.brought_probe: Optional[dict[str, Any]] = None

    def m5_inputs(self) -> dict[str, Any]:
        return {"tools_image": self.tools.id, "m5_source_sha256": self.source.m5_sha256}

    def gem5_inputs(self) -> dict[str, Any]:
        common = {
            "tools_image": self.tools.id,
            "gem5_tree_sha256": self.source.tree_sha256,
            "env_dockerfile": digest_of((resources.docker_dir("env") / "Dockerfile").read_text()),
            "probe_sha256": digest_of([HashCache.sha256_uncached(p) for p in _probe_files()]),
            "m5_source_sha256": self.source.m5_sha256,  # the env image carries m5 too
        }
        brought = self.cfg.gem5.binary
        if brought is not None:
            return {**common, "brought_binary_sha256": self.hashes.sha256(brought), "binary_name": self.binary_name}
        return {**common, "build_options": dict(self.cfg.gem5.build_options), "variant": self.cfg.gem5.variant,
                "linker": self.cfg.gem5.linker}

    @property
    def binary_name(self) -> str:
        """What gem5 is called in the env image: gem5.<variant>, or a brought binary's own gem5.* name."""
        brought = self.cfg.gem5.binary
        if brought is not None and brought.name.startswith("gem5.") and len(brought.name) > 5:
            return brought.name
        return f"gem5.{self.cfg.gem5.variant}"


def ensure_m5(ctx: StepContext, force: bool = False) -> EnvArtifact:
    """The m5 utility only (what the image step needs)."""
    return _ensure(_Ctx(ctx), want_gem5=False, force=force)


def ensure(ctx: StepContext, force: bool = False) -> EnvArtifact:
    """m5 and the env image with gem5, each rebuilt only when its inputs changed."""
    return _ensure(_Ctx(ctx), want_gem5=True, force=force)


def _ensure(ctx: _Ctx, want_gem5: bool, force: bool) -> EnvArtifact:
    """Bring each wanted part up to date. Each part has its own build lock, so
    building m5 never waits for an hours-long gem5 build; the artifact lock is
    held only for the moment a part is committed."""
    cfg = ctx.cfg
    parts: list[tuple[str, Callable[[], dict[str, Any]], Callable[[_Ctx, Path], dict[str, Any]]]] = [
        ("m5", ctx.m5_inputs, _build_m5)]
    if want_gem5:
        brought = ctx.cfg.gem5.binary
        stale = force or _staleness(ctx, "gem5", ctx.gem5_inputs()) is not None
        if stale and not force:
            refuse_silent_rebuild(ctx.cfg, Manifest.read(ctx.directory), ctx.source.origin)
        if stale:
            ctx.layout.would_build(f"env '{cfg.name}' gem5", gem5_cost(cfg))
        if brought is not None and stale:
            # A binary that does not fit is refused before m5 or anything else is built.
            ctx.brought_probe = probe(ctx.engine, ctx.tools.ref, brought, ctx.source.release)
        parts.append(("gem5", ctx.gem5_inputs, _bring_gem5 if brought is not None else _build_gem5))
    built = False
    for part, inputs, build_part in parts:
        def build(work: Path, manifest: Manifest, part: str = part, build_part: Any = build_part) -> None:
            manifest.put_part(part, build_part(ctx, work))

        target = Target("env", cfg.name, part, f"env '{cfg.name}' {part}", shared=True)
        check = (lambda m: _image_missing(ctx, m)) if part == "gem5" else None
        built |= build_unless_fresh(ctx.layout, target, inputs(), force, build, check).built
    if not built:
        log.info(f"env '{cfg.name}' is up to date ({ctx.directory})")
    return _artifact(ctx, Manifest.read(ctx.directory) or Manifest("env", cfg.name))


def refuse_silent_rebuild(cfg: Config, manifest: Optional[Manifest], origin: str) -> None:
    """Replacing an env's gem5 by hours of compiling is never a side effect: a
    command that left --gem5-src (or --gem5-binary) off, or changed the build
    options, says what changed and stops; --force (or the same source) goes on.
    Edits inside the same tree rebuild incrementally (minutes) and pass."""
    if manifest is None or not manifest.has("gem5") or cfg.gem5.binary is not None:
        return  # nothing built yet, or packaging a binary: seconds
    info = Gem5PartInfo.of(manifest)
    where = f"env '{cfg.name}'"
    if info.origin == "brought":
        raise UsageError(f"{where} packages a gem5 brought from {info.brought.path if info.brought else None}; without --gem5-binary "
                         f"this would compile gem5 from {origin} (hours)",
                         "pass that --gem5-binary again (or set gem5.binary), or `hackback env --force` to compile")
    old = info.gem5_source.origin
    if old and old != origin:
        raise UsageError(f"{where} has gem5 built from {old}; this would rebuild it from {origin} (hours of compiling)",
                         "pass the same --gem5-src (or set gem5.src in hackback.toml), or `hackback env --force` to rebuild")
    old_options = dict(info.build_options) if info.build_options is not None else None
    if old_options is not None and old_options != dict(cfg.gem5.build_options):
        raise UsageError(f"{where} was built with gem5.build_options {old_options}, now {dict(cfg.gem5.build_options)}: "
                         "that rebuilds most of gem5", "restore the options, or `hackback env --force` to rebuild with the new ones")


def _staleness(ctx: _Ctx, part: str, inputs: dict[str, Any]) -> Optional[str]:
    """Why `part` would be built again (None: it is up to date, its image there too)."""
    manifest = Manifest.read(ctx.directory)
    if manifest is None:
        return "not built yet"
    why = manifest.staleness(part, inputs, ctx.directory, ctx.hashes)
    return _image_missing(ctx, manifest) if why is None and part == "gem5" else why


def _image_missing(ctx: _Ctx, manifest: Manifest) -> Optional[str]:
    image = Gem5Image.in_env(manifest)
    if image is None or ctx.engine.image_id(image.ref) is None:
        return "its env image is missing from the engine"
    return None


def _artifact(ctx: _Ctx, manifest: Manifest) -> EnvArtifact:
    gem5 = Gem5Image.in_env(manifest)
    image = gem5.ref if gem5 else None
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
    cfg = ctx.cfg
    build = gem5_build_dir(ctx.layout, cfg.name)
    binary = f"gem5.{cfg.gem5.variant}"
    if not (build / "build" / "X86" / binary).exists():
        require_free(build, GEM5_BUILD_BYTES, "a gem5 build")
    build.mkdir(parents=True, exist_ok=True)
    copy = _sync_source(ctx, build)
    mounts = [Mount(copy, SRC_MNT, read_only=False), Mount(build, BUILD_MNT, read_only=False)]

    def run(step: str, command: list[str], **kw: Any) -> None:
        spec = RunSpec(ctx.tools.ref, command, step=step, mounts=mounts, workdir=SRC_MNT, kvm=False, **kw)
        with open(build / f"last-{step}.log", "w") as step_log:
            ctx.engine.run(spec, phase="gem5", log_file=step_log)

    with log.step(f"gem5 {ctx.source.release} X86 {binary} (incremental; tree kept in {build})"):
        _compile(ctx, build, binary, run)
    full = build / "build" / "X86" / binary
    stripped = build / f"{binary}.stripped"
    info = probe(ctx.engine, ctx.tools.ref, stripped, ctx.source.release, what=f"the {binary} built in {build}")
    return _package(ctx, tmp, stripped, ctx.hashes.sha256(full), info, {
        "origin": "built",
        "build_dir": str(build),
        "build_options": dict(cfg.gem5.build_options),
        "linker": cfg.gem5.linker or "bfd",
        "variant": cfg.gem5.variant,
        "gem5_stripped_sha256": ctx.hashes.sha256(stripped),
    })


def _sync_source(ctx: _Ctx, build: Path) -> Path:
    """gem5's build writes into its source tree (ply's parsetab.py and parser.out
    under src/arch, __pycache__ folders, ext/libelf's native-elf-format scratch
    file in the top): it builds from a copy kept beside the build tree, synced
    from the researcher's tree (mounted read-only) before every build. rsync
    keeps mtimes, so scons sees only real edits; the copy is mounted where the
    tree always was, so the kept scons tree stays valid."""
    copy = build / "src"
    sync = RunSpec(ctx.tools.ref, ["rsync", "-a", "--delete", "--exclude=/build", "--exclude=__pycache__",
                                   "--exclude=parsetab.py", "--exclude=parser.out", f"{SRC_MNT}-ro/", f"{BUILD_MNT}/src/"],
                   step="env-gem5-sync", kvm=False, network="none",
                   mounts=[Mount(ctx.source.path, f"{SRC_MNT}-ro"), Mount(build, BUILD_MNT, read_only=False)])
    copy.mkdir(exist_ok=True)
    ctx.engine.run(sync, phase="gem5-sync")
    return copy


def _compile(ctx: _Ctx, build: Path, binary: str, run: Callable[..., None]) -> None:
    cfg = ctx.cfg
    target = f"{BUILD_MNT}/build/X86"
    options = dict(cfg.gem5.build_options)
    applied = build / "hackback-build-options.json"
    if not applied.is_file() or json.loads(applied.read_text()) != options:
        # Kconfig: build_opts/X86, then our options; only when they change, since
        # a changed config makes scons rebuild much of what it has.
        # --ignore-style: gem5 otherwise stops to ask about installing git hooks.
        kconfig = f"scons --ignore-style defconfig {target} build_opts/X86"
        if options:
            kconfig += f" && scons --ignore-style setconfig {target} " + " ".join(shlex.quote(f"{k}={v}") for k, v in options.items())
        run("env-gem5-config", ["bash", "-c", kconfig])
        applied.write_text(json.dumps(options, sort_keys=True))
    # scons is the container's main process so a stop reaches it: it then
    # saves its signature database and the next run resumes. ccache covers
    # the case where it was killed before it could.
    linker = [f"--linker={cfg.gem5.linker}"] if cfg.gem5.linker else []
    run("env-gem5", ["scons", "--ignore-style", *linker, f"-j{cfg.jobs}", f"{target}/{binary}"],
        environment={"PATH": "/usr/lib/ccache:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "CCACHE_DIR": f"{BUILD_MNT}/ccache", "CCACHE_MAXSIZE": "20G"},
        stop_grace=300)
    # The image gets a copy without debug info (gem5.opt is built with -g and is
    # several times larger); the full binary stays in the build tree for gdb.
    run("env-gem5-strip", ["objcopy", "--strip-debug", f"{target}/{binary}", f"{BUILD_MNT}/{binary}.stripped"])


def _bring_gem5(ctx: _Ctx, tmp: Path) -> dict[str, Any]:
    """Package a gem5 built elsewhere, checked by probe() before anything was built.
    Debug sections are stripped for the image, as for a build here."""
    brought = ctx.cfg.gem5.binary
    assert brought is not None
    info = ctx.brought_probe or probe(ctx.engine, ctx.tools.ref, brought, ctx.source.release)
    sha = ctx.hashes.sha256(brought)
    with log.step(f"gem5 {info['release']} brought from {brought} (sha256 {sha[:12]}…): packaging, no build"):
        stripped = tmp / ".stripped"
        spec = RunSpec(ctx.tools.ref, ["objcopy", "--strip-debug", f"{BROUGHT_MNT}/{brought.name}", f"{OUT_MNT}/.stripped"],
                       step="env-gem5-strip", kvm=False, network="none",
                       mounts=[Mount(brought.resolve(), f"{BROUGHT_MNT}/{brought.name}"), Mount(tmp, OUT_MNT, read_only=False)])
        ctx.engine.run(spec, phase="gem5")
        try:
            return _package(ctx, tmp, stripped, sha, info, {
                "origin": "brought",
                "brought": {"path": str(brought.resolve()), "sha256": sha, "size": brought.stat().st_size},
            })
        finally:
            stripped.unlink(missing_ok=True)


def _package(ctx: _Ctx, tmp: Path, stripped: Path, gem5_sha: str, build_info: dict[str, Any],
             how: dict[str, Any]) -> dict[str, Any]:
    """The env image: the tools image, this gem5 and m5. Tagged by a digest of the three."""
    cfg, binary = ctx.cfg, ctx.binary_name
    context = tmp / ".image-context"
    context.mkdir(exist_ok=True)
    try:
        shutil.copy2(resources.docker_dir("env") / "Dockerfile", context / "Dockerfile")
        shutil.copy2(stripped, context / binary)
        shutil.copy2(ctx.directory / "m5", context / "m5")  # committed before this part is built
        ref = f"{ENV_REPO}:{digest_of({'tools': ctx.tools.id, 'gem5': gem5_sha, 'm5': ctx.hashes.sha256(ctx.directory / 'm5')})[:12]}"
        labels = {
            LABEL_KIND: "env",
            "io.hackback.name": cfg.name,
            "io.hackback.gem5.release": ctx.source.release,
            "io.hackback.gem5.commit": ctx.source.commit or "",
            "io.hackback.gem5.tree": ctx.source.tree_sha256,
            "io.hackback.gem5.origin": str(how["origin"]),
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
            # From the binary itself, not the source: what a checkpoint it writes will carry.
            "version_tags": build_info["version_tags"],
            "build_info": build_info,
            **how,
            "tools_image": ctx.tools.ref,
            "tools": ctx.tools.versions,
            "base_image": {"ref": ctx.tools.base.ref, "id": ctx.tools.base.id, "origin": ctx.tools.base.origin},
        },
    )


def _probe_files() -> list[Path]:
    return [resources.configs_dir() / "hackback_probe.py", resources.docker_dir("env") / "probe.sh"]


_BINARY_HINT = "give a gem5.opt/gem5.fast built for X86 from the same source (--gem5-src), or leave --gem5-binary off to build one"


def check_binary_file(path: Path) -> None:
    """What can be told without running it: there, a file, executable, an x86-64 ELF executable."""
    flag = f"--gem5-binary {path}"
    if not path.exists():
        raise UsageError(f"{flag} does not exist", _BINARY_HINT)
    if not path.is_file():
        raise UsageError(f"{flag} is not a file", _BINARY_HINT)
    if not os.access(path, os.R_OK):
        raise UsageError(f"{flag} is not readable", "make it readable (chmod a+r)")
    try:
        info = elf.read(path)
    except ArtifactError:
        raise UsageError(f"{flag} is not an ELF executable (not a compiled gem5)", _BINARY_HINT) from None
    except OSError as e:
        raise UsageError(f"{flag} cannot be read: {e.strerror}", _BINARY_HINT) from None
    if not info.x86_64 or info.type not in (elf.ET_EXEC, elf.ET_DYN):
        raise UsageError(f"{flag} is not an x86-64 executable (the env image runs on x86-64)", _BINARY_HINT)
    if not os.access(path, os.X_OK):
        raise UsageError(f"{flag} is not executable", f"chmod +x {path}")


def probe(engine: Engine, tools_ref: str, binary: Path, release: str, what: Optional[str] = None) -> dict[str, Any]:
    """Start the binary in the tools image and ask it what it is; refuse one that
    does not fit (a library that does not resolve, no X86, another release)."""
    what = what or f"--gem5-binary {binary}"
    name = binary.name
    lines: list[str] = []
    with log.step(f"asking {what} what it is"):
        with tempfile.TemporaryDirectory(prefix="hackback-probe-") as scratch_dir:
            scratch = Path(scratch_dir)
            spec = RunSpec(
                tools_ref, ["bash", f"{CONFIG_MNT}-env/probe.sh"], step="env-probe", kvm=False, network="none",
                environment={"BIN": f"{BROUGHT_MNT}/{name}", "OUT": OUT_MNT},
                mounts=[Mount(binary.resolve(), f"{BROUGHT_MNT}/{name}"), Mount(resources.configs_dir(), CONFIG_MNT),
                        Mount(resources.docker_dir("env"), f"{CONFIG_MNT}-env"), Mount(scratch, OUT_MNT, read_only=False)],
            )
            status = engine.run(spec, phase="probe", on_line=lines.append, check=False)
    missing = [ln.split(" ", 1)[1].split() for ln in lines if ln.startswith("HACKBACK-MISSING-LIBS ")]
    if missing:
        libs = missing[0]
        raise UsageError(f"{what} needs {', '.join(libs)}, which the tools image does not have",
                         "build gem5 on Debian bookworm (what the tools image is), or leave --gem5-binary off to build it here")
    found = [ln.split(" ", 1)[1] for ln in lines if ln.startswith("HACKBACK-PROBE ")]
    if not found:
        last = next((ln for ln in reversed(lines) if ln.strip()), f"exit status {status}")
        raise UsageError(f"{what} did not start as gem5 in the tools image: {last.strip()[:200]}", _BINARY_HINT)
    try:
        info: dict[str, Any] = json.loads(found[-1])
    except ValueError:
        raise UsageError(f"{what} answered the probe with something unreadable", _BINARY_HINT) from None
    isas = [str(i) for i in info.get("isas", [])]
    if "x86" not in isas:
        raise UsageError(f"{what} simulates {', '.join(i.upper() for i in isas) or 'no ISA'}, not X86",
                         "build gem5 with build_opts/X86 (hackback simulates x86 full systems)")
    if info.get("release") != release:
        raise UsageError(f"{what} is gem5 {info.get('release') or '(unknown release)'}, but the source is {release}",
                         "give the source it was built from with --gem5-src, or a binary built from this source")
    if not info.get("version_tags"):
        raise UsageError(f"{what} wrote a checkpoint without version tags", _BINARY_HINT)
    log.info(f"{what}: gem5 {info['release']}, ISA {', '.join(i.upper() for i in isas)}, "
             f"{'protocol ' + info['protocol'] if info.get('protocol') else 'no Ruby protocol'}, "
             f"{len(info['version_tags'])} checkpoint version tags")
    return info


# ---------------------------------------------------------------- the steps


class M5Step(Step):
    """The x86 m5 utility (what the image step needs); an explicit image.m5 (--m5) stands in for it."""

    name = "m5"

    def given(self, ctx: StepContext, req: Request) -> Optional[Path]:
        return ctx.cfg.image.m5

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> Path:
        return ensure_m5(ctx, force=req.forced(self.name)).m5


class EnvStep(Step):
    """m5 and the env image with gem5."""

    name = "env"

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> EnvArtifact:
        return ensure(ctx, force=req.forced(self.name))


M5 = M5Step()
ENV = EnvStep()
