"""The benchmarks of a suite, built: each member at each input is an artifact
benchmarks/<suite>-<member>-<input>-<threads>t/, made in hackback's
suite-tools image (the tools image and gfortran and valgrind, an image of its
own: nothing already built goes stale). The build script of the suite's data
folder (hackback/suites/<suite>/) builds the member static for x86-64 twice
from the same sources: for gem5 (its ROI hooks call m5 workbegin/workend) and
for a native run (hooks that print and toggle callgrind at the same places);
then the native binary runs under callgrind. Its own verdict proves the build
(one that does not verify natively is refused), and callgrind's count of the
region of interest is the native figure a gem5 run is checked against.

Builds are reproducible: the same sources, options and tools image give the
same binaries (fixed paths, SOURCE_DATE_EPOCH, deterministic static links).

Sources are handed over as a user would: a local tarball or tree, or a URL
with its sha256 (downloaded resumably, checked, kept under the work dir). A
tarball is checked against its sha256 when one is given and extracted once."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..services import download
from ..base import elf, log, resources, tarballs
from ..store.build import Target, build_unless_fresh, keep_failed, new_tmp
from ..store.hashes import HashCache, digest_of, file_record
from ..store.layout import Layout, make_dir
from ..store.manifest import Manifest
from ..base.config import SuiteSource as SourceConfig
from ..protocol.context import StepContext
from ..base.engine import Mount, RunSpec
from ..base.errors import ArtifactError, BenchmarkFailed, UsageError
from ..store.records import BenchInfo, Member, Verdict
from ..services.suite_def import SuiteDef, native_roi_insts

SUITE_TOOLS_REPO = "hackback-suite-tools"
SOURCE_DATE_EPOCH = "1262304000"  # 2010-01-01: NPB 3.3.1's year; any fixed date makes builds repeatable
NATIVE_LOG = "native.log"
CALLGRIND_OUT = "callgrind.out"


@dataclass(frozen=True)
class SourceTree:
    """A suite's source as handed over: the tree, where it came from, its digest."""

    tree: Path
    origin: str
    sha256: str  # the tarball's, or the tree's digest


@dataclass(frozen=True)
class BenchArtifact:
    name: str
    directory: Path
    member: Member
    binary: Path  # the gem5 build
    verdict: Verdict  # the native run's own verdict
    native_roi_insts: Optional[int]  # callgrind's count of the region of interest
    manifest: Manifest

    @property
    def payload_dir(self) -> Path:
        """The folder holding only the gem5 binary: a restore's payload."""
        return self.binary.parent


def source(ctx: StepContext, defn: SuiteDef, given: SourceConfig) -> SourceTree:
    """The suite's tree, refused in one line before anything builds when it is
    missing, not the suite, or not the tarball its sha256 names."""
    if "://" in given.source:
        tarball = _download(ctx, defn, given)
        return SourceTree(_extracted(ctx.layout, defn, tarball, ctx.hashes.sha256(tarball)), f"{given.source}", given.sha256)
    path, digest = check_local(ctx, defn, given)
    if path.is_dir():
        return SourceTree(path, f"tree {path}", digest)
    return SourceTree(_extracted(ctx.layout, defn, path, digest), f"tarball {path}", digest)


def check_local(ctx: StepContext, defn: SuiteDef, given: SourceConfig) -> tuple[Path, str]:
    """A local source as it is: there, a tree of the suite (its marker) or a
    tarball with the sha256 given (when one is); the path and its digest."""
    where = f"suite.{defn.name}.source"
    if not given.source:
        raise UsageError(f"no source for {defn.name}: give --source PATH|URL (or {where})",
                         f"a tarball or tree of {defn.title}; its home: {defn.home}")
    path = Path(given.source).expanduser().resolve()
    if not path.exists():
        raise UsageError(f"the {defn.name} source {path} does not exist", f"give a tarball or tree of {defn.title} ({where})")
    if path.is_dir():
        if not (path / defn.marker).is_file():
            raise UsageError(f"{path} is not a tree of {defn.name} (no {defn.marker})", f"its home: {defn.home}")
        return path, ctx.hashes.tree_sha256(path)
    got = ctx.hashes.sha256(path)
    if given.sha256 and got != given.sha256.lower():
        raise UsageError(f"{path} has sha256 {got}, not the {given.sha256} given for it",
                         f"the file is not the one the digest names: fetch it again, or fix --sha256 ({where.replace('source', 'sha256')})")
    return path, got


def _download(ctx: StepContext, defn: SuiteDef, given: SourceConfig) -> Path:
    name = given.source.rstrip("/").rsplit("/", 1)[-1] or f"{defn.name}.tar"
    dest = ctx.layout.cache_dir("suite-downloads", f"{given.sha256.lower()[:16]}-{name}")
    if not dest.is_file():
        ctx.layout.would_build(f"the {defn.name} download", f"{given.source} is not in the work dir yet")
    return download.fetch(given.source, dest, given.sha256)


def _extracted(layout: Layout, defn: SuiteDef, tarball: Path, sha: str) -> Path:
    """The tarball's tree under the work dir's cache, extracted once (its top: the folder with the suite's marker)."""
    target = layout.cache_dir("suite-src", f"{defn.name}-{sha[:16]}")
    if target.is_dir():
        return target
    layout.would_build(f"the {defn.name} tree", f"{tarball} is not extracted yet")
    make_dir(target.parent, "benchmark sources")
    tmp = new_tmp(layout, f"suite-src-{defn.name}")
    try:
        with log.step(f"extracting {tarball}"):
            tarballs.extract(tarball, tmp, f"suite.{defn.name}.source", f"use {defn.name}'s own tarball, or a tree")
        top = next((d for d in (tmp, *sorted(p for p in tmp.iterdir() if p.is_dir())) if (d / defn.marker).is_file()), None)
        if top is None:
            raise UsageError(f"{tarball} holds no tree of {defn.name} (no {defn.marker} in it)", f"its home: {defn.home}")
        os.rename(top, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-extracted tree never stays
    return target


def suite_tools(ctx: StepContext) -> str:
    """The suite-tools image (the tools image, gfortran, valgrind), built if missing; its ref."""
    dockerfile = resources.docker_dir("suite") / "Dockerfile"
    ref = f"{SUITE_TOOLS_REPO}:{digest_of([ctx.tools.id, HashCache.sha256_uncached(dockerfile)])[:12]}"
    if ctx.engine.image_id(ref) is not None:
        return ref
    ctx.layout.would_build(f"the suite-tools image {ref}", "not built yet (the tools image, gfortran and valgrind)")
    work = new_tmp(ctx.layout, "suite-tools")
    try:
        shutil.copy2(dockerfile, work / "Dockerfile")
        with log.step(f"suite-tools image {ref} (gfortran, valgrind on {ctx.tools.ref})"):
            ctx.engine.build(work, ref, phase="suite-tools", buildargs={"TOOLS": ctx.tools.ref},
                             labels={"io.hackback.kind": "suite-tools"})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ref


def name_of(m: Member) -> str:
    return f"{m.suite}-{m.member}-{m.input}-{m.threads}t"


def ensure(ctx: StepContext, defn: SuiteDef, src: SourceTree, m: Member, force: bool = False) -> BenchArtifact:
    """The member built, verified natively, and counted: an artifact with its manifest (an unchanged rerun is a no-op)."""
    tools = suite_tools(ctx)
    want = {"suite": defn.name, "suite_files": defn.digest(), "source_sha256": src.sha256, "suite_tools": tools,
            "member": m.to_json(), "native_counts": ctx.cfg.suite.native_counts}
    name = name_of(m)

    def build(tmp: Path, manifest: Manifest) -> None:
        start = time.monotonic()
        _build(ctx, defn, src, m, tools, tmp, want)
        binary = defn.binary(m.member, m.input)
        problem = elf.static_x86_64_problem(tmp / "gem5" / binary)
        if problem:  # the guest's libraries are not the build's: only a static binary runs there as built
            raise BenchmarkFailed(f"{m.label}'s gem5 build {problem}", "the suite's build script must link it static")
        verdict, insts = _native_verdict(defn, m, tmp)
        outputs = {rel: file_record(tmp / rel, ctx.hashes) for rel in (f"gem5/{binary}", f"native/{binary}", NATIVE_LOG)}
        manifest.set_part("benchmark", want, outputs, BenchInfo(m, verdict, src.origin, insts, tools,
                                                                  round(time.monotonic() - start, 1)).to_json())

    done = build_unless_fresh(ctx.layout, Target("benchmarks", name, "benchmark", f"benchmark {name}"), want, force, build)
    return read(done.directory, defn)


def read(directory: Path, defn: SuiteDef) -> BenchArtifact:
    manifest = Manifest.read(directory)
    if manifest is None or not manifest.has("benchmark"):
        raise ArtifactError(f"{directory} holds no built benchmark (no manifest)", "build it with `hackback suite`")
    info = BenchInfo.of(manifest)
    m = info.member
    return BenchArtifact(manifest.name, directory, m, directory / "gem5" / defn.binary(m.member, m.input),
                         info.verdict, info.native_roi_insts, manifest)


def _build(ctx: StepContext, defn: SuiteDef, src: SourceTree, m: Member, tools: str, tmp: Path, want: dict[str, object]) -> None:
    counts = "1" if ctx.cfg.suite.native_counts else "0"
    spec = RunSpec(tools, ["bash", f"/hackback/suite/{defn.build}", m.member, m.input, str(m.threads), str(m.trials), counts],
                   step=f"bench-{defn.name}-{m.member}", kvm=False, network="none",
                   mounts=[Mount(src.tree, "/src"), Mount(defn.directory, "/hackback/suite"), Mount(tmp, "/out", read_only=False)],
                   environment={"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
    with log.step(f"build {m.label} for gem5 and natively, then its native run"):
        status = ctx.engine.run(spec, phase=f"{defn.name}-{m.member}", check=False)
    if status != 0:
        kept = keep_failed(ctx.layout, "benchmarks", name_of(m), tmp)
        raise BenchmarkFailed(f"building {m.label} failed (exit {status})", f"its build logs are in {kept}")


def _native_verdict(defn: SuiteDef, m: Member, tmp: Path) -> tuple[Verdict, Optional[int]]:
    output = (tmp / NATIVE_LOG).read_text(errors="replace") if (tmp / NATIVE_LOG).is_file() else ""
    verdict = defn.judge(m, output, roi_from_gem5=False)
    if not verdict.passed:
        raise BenchmarkFailed(f"{m.label} was built but does not verify natively: {verdict.why}",
                              "the build is refused: see native.log in the kept build logs")
    return verdict, native_roi_insts(tmp / "native" / CALLGRIND_OUT)
