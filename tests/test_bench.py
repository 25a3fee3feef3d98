"""Suite members built as hackback builds them (Docker tier, with the suites'
sources handed over as a user would): static x86-64 binaries for gem5 and for
a native run, the native run verifying and counting its region of interest,
reproducible, a no-op rerun, in an image of its own (the tools image, and so
every image, kernel and checkpoint, is left as it was)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import hackback_env, invoke, suite_source
from hackback.steps import bench
from hackback.base import elf
from hackback.store.hashes import HashCache
from hackback.base.config import SuiteSource
from hackback.protocol.context import StepContext
from hackback.store.records import Member
from hackback.services.suite_def import SuiteDef

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("suite,member,input,native", [("npb", "is", "S", (15.0e6, 16.6e6)),
                                                        ("gapbs", "pr", "g10", (1.0e6, 4.0e6))])
def test_a_member_builds_static_verifies_natively_and_is_reproducible(make_config, engine, tools, suite: str, member: str,  # type: ignore[no-untyped-def]
                                                                      input: str, native: tuple[float, float]) -> None:
    src = suite_source(suite)
    ctx = StepContext.open(make_config(), engine)
    defn = SuiteDef.load(suite)
    tree = bench.source(ctx, defn, SuiteSource(str(src), ""))
    m = Member(suite, member, input, 1, 1)
    built = bench.ensure(ctx, defn, tree, m)
    for binary in (built.binary, built.directory / "native" / built.binary.name):
        assert elf.static_x86_64_problem(binary) == "", binary  # what the guest can run, whatever its libraries
    assert built.verdict.passed and built.verdict.said, built.verdict
    assert built.native_roi_insts is not None and native[0] <= built.native_roi_insts <= native[1], built.native_roi_insts
    assert [p.name for p in built.payload_dir.iterdir()] == [built.binary.name]  # the payload: the binary alone
    start = time.monotonic()
    again = bench.ensure(ctx, defn, tree, m)
    assert again.manifest.parts == built.manifest.parts and time.monotonic() - start < 5  # a no-op
    digest = HashCache.sha256_uncached(built.binary)
    rebuilt = bench.ensure(ctx, defn, tree, m, force=True)
    assert HashCache.sha256_uncached(rebuilt.binary) == digest  # the same sources and options: the same binary
    assert ctx.tools.ref == tools.ref  # the suite's tools are an image of their own: the tools image is unchanged
    print(f"{m.label}: native ROI {built.native_roi_insts:,} instructions, binary {built.binary.stat().st_size:,} bytes")


def test_a_tarball_that_is_not_the_one_its_sha256_names_is_refused(make_config, engine, tools) -> None:  # type: ignore[no-untyped-def]
    from hackback.base.errors import UsageError

    src = suite_source("npb")
    ctx = StepContext.open(make_config(), engine)
    with pytest.raises(UsageError, match="not the .* given for it") as e:
        bench.source(ctx, SuiteDef.load("npb"), SuiteSource(str(src), "0" * 64))
    assert "\n" not in e.value.one_line() and not (ctx.layout.work_dir / "cache" / "suite-src").exists()


def test_hackback_build_builds_a_larger_class_and_verifies_it_natively_with_no_image_kernel_or_checkpoint(  # type: ignore[no-untyped-def]
        tmp_path: Path, engine, tools) -> None:
    """`hackback build npb --input A`: a class too large to run in gem5 here is
    still proven to build and verify, natively; nothing of gem5's is built."""
    work = tmp_path / "work"
    env = {**hackback_env(work), "HACKBACK_SUITE_NATIVE_COUNTS": "false"}  # callgrind's count is the S tier's
    out = invoke(env, "build", "npb", "--members", "is", "--input", "A", "--source", str(suite_source("npb")), timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads((work / "benchmarks" / "npb-is-A-1t" / "manifest.json").read_text())["parts"]["benchmark"]["info"]
    assert info["verdict"]["passed"] and "SUCCESSFUL" in info["verdict"]["said"], info["verdict"]
    assert info["member"]["input"] == "A" and info.get("native_roi_insts") is None
    assert 'npb is (A, 1 thread): natively "Verification' in out.stderr + out.stdout
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".")) == ["benchmarks", "cache"]  # no gem5 artifact
    again = invoke(env, "build", "npb", "--members", "is", "--input", "A", "--source", str(suite_source("npb")))
    assert again.returncode == 0 and "up to date" in again.stderr + again.stdout, again.stderr[-2000:]
