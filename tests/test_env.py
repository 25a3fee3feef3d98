"""The env step. A gem5 binary brought from elsewhere is checked before anything
is built: the static checks need nothing; the ones that start it in the tools
image (Docker tier) use small test doubles compiled there (tests/data/
gem5-probe-standin.c). With a real gem5 (gem5 tier: HACKBACK_TEST_GEM5_SRC,
and HACKBACK_TEST_GEM5_BINARY to package a binary instead of compiling for
hours) m5 and the env image are built in the tier's shared work directory.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest

from conftest import REPO, hackback_env, invoke
from hackback.protocol.context import StepContext
from hackback.base import config, elf
from hackback.steps import env
from hackback.base.engine import Engine, Mount, RunSpec
from hackback.base.errors import UsageError


# ---------------------------------------------------------------- nothing needed: what a file can tell


def test_a_binary_that_is_not_elf_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "gem5.opt"
    fake.write_text("#!/bin/sh\necho gem5\n")
    fake.chmod(0o755)
    with pytest.raises(UsageError, match="is not an ELF executable"):
        env.check_binary_file(fake)


def test_a_missing_truncated_or_directory_binary_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        env.check_binary_file(tmp_path / "nope")
    with pytest.raises(UsageError, match="is not a file"):
        env.check_binary_file(tmp_path)
    short = tmp_path / "gem5.short"
    short.write_bytes(b"\x7fELF\x02\x01")
    short.chmod(0o755)
    with pytest.raises(UsageError, match="is not an ELF executable"):
        env.check_binary_file(short)


def test_a_binary_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    import sys

    copy = tmp_path / "gem5.opt"
    shutil.copyfile(Path(sys.executable).resolve(), copy)  # an x86-64 ELF executable, without its x bit
    copy.chmod(0o644)
    if not elf.read(copy).x86_64:
        pytest.skip("this host's Python is not x86-64")
    with pytest.raises(UsageError, match="is not executable"):
        env.check_binary_file(copy)


def test_the_binary_is_an_input_of_the_gem5_part(make_config, fake_gem5_tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(gem5__src=str(fake_gem5_tree), gem5__binary=str(tmp_path / "gem5.fast"))
    assert cfg.gem5.binary == tmp_path / "gem5.fast"
    assert make_config().gem5.binary is None


# ---------------------------------------------------------------- Docker tier: started in the tools image


def _compile(engine: Engine, tools_ref: str, out: Path, name: str, cflags: str, missing_lib: bool = False) -> Path:
    src = REPO / "tests" / "data" / "gem5-probe-standin.c"
    script = f"gcc {cflags} -o /out/{name} /src/{src.name}"
    if missing_lib:  # linked against a library, which is then gone
        script = (f"echo 'int hackback_standin_lib(void) {{ return 0; }}' > /tmp/l.c && "
                  f"gcc -shared -fPIC -o /tmp/libhackback_standin.so /tmp/l.c && "
                  f"{script} -L/tmp -Wl,--no-as-needed -lhackback_standin")
    engine.run(RunSpec(tools_ref, ["bash", "-c", script], step="t-standin-cc", kvm=False, network="none",
                       mounts=[Mount(src.parent, "/src"), Mount(out, "/out", read_only=False)]), on_line=lambda _l: None)
    return out / name


@pytest.mark.docker
@pytest.mark.parametrize("case,cflags,missing,expect", [
    ("missing-lib", '-DRELEASE=\\"24.0.0.1\\" -DISA=\\"x86\\"', True, "needs libhackback_standin.so, which the tools image does not have"),
    ("other-isa", '-DRELEASE=\\"24.0.0.1\\" -DISA=\\"arm\\"', False, "simulates ARM, not X86"),
    ("other-release", '-DRELEASE=\\"23.1.0.0\\" -DISA=\\"x86\\"', False, "is gem5 23.1.0.0, but the source is 24.0.0.1"),
])
def test_a_binary_that_does_not_fit_is_refused_in_one_line_before_anything_is_built(
        engine: Engine, tools, fake_gem5_tree: Path, tmp_path: Path, case: str, cflags: str, missing: bool, expect: str) -> None:  # type: ignore[no-untyped-def]
    standin = _compile(engine, tools.ref, tmp_path, f"gem5.{case}", cflags, missing)
    work = tmp_path / "work"
    out = invoke(hackback_env(work), "env", "--gem5-src", str(fake_gem5_tree), "--gem5-binary", str(standin), timeout=900)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], lines
    assert not (work / "env").exists()  # not even m5 was built
    assert not [i for i in engine.images() if any(t.startswith("hackback-env:") for t in i[1]) and str(standin) in str(i)]


@pytest.mark.docker
def test_a_non_elf_binary_is_refused_by_the_task_before_any_engine_work(fake_gem5_tree: Path, tmp_path: Path) -> None:
    fake = tmp_path / "gem5.opt"
    fake.write_text("#!/bin/sh\necho 'gem5 version 24.0.0.1'\n")
    fake.chmod(0o755)
    start = time.monotonic()
    out = invoke(hackback_env(tmp_path / "work"), "env", "--gem5-src", str(fake_gem5_tree), "--gem5-binary", str(fake), timeout=300)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not an ELF executable" in lines[0], lines
    assert "docker" not in out.stdout and time.monotonic() - start < 30


# ---------------------------------------------------------------- gem5 tier


@pytest.mark.gem5
def test_m5_is_a_static_x86_64_executable_and_rerun_is_a_no_op(gem5_src: Path, gem5_work: Path, engine: Engine) -> None:
    cfg = config.load(flags={"work_dir": str(gem5_work), "gem5.src": str(gem5_src)}, environ={})
    art = env.ensure_m5(StepContext.open(cfg, engine))
    info = elf.read(art.m5)
    assert info.x86_64 and info.static
    rec = art.manifest.parts["m5"]
    assert rec["outputs"]["m5"]["size"] == art.m5.stat().st_size
    assert rec["info"]["gem5_source"]["release"].startswith("24.")
    start = time.monotonic()
    env.ensure_m5(StepContext.open(cfg, engine))
    assert time.monotonic() - start < 5


@pytest.mark.gem5
def test_env_image_runs_gem5_and_rerun_is_a_no_op(gem5_src: Path, gem5_binary: Optional[Path], gem5_work: Path, engine: Engine) -> None:
    flags = {"work_dir": str(gem5_work), "gem5.src": str(gem5_src), "gem5.binary": str(gem5_binary or "")}
    cfg = config.load(flags=flags, environ={})
    art = env.ensure(StepContext.open(cfg, engine))
    assert art.image
    lines: list[str] = []
    engine.run(RunSpec(art.image, ["gem5.opt", "--help"], step="t-gem5-help", kvm=False), on_line=lines.append)
    assert any("Usage" in ln or "usage" in ln for ln in lines), lines[:5]
    info = art.manifest.parts["gem5"]["info"]
    # Probed from the binary: what its checkpoints will carry.
    assert info["build_info"]["isas"] == ["x86"] and info["build_info"]["release"] == art.source.release
    assert "x86-add-xcr0" in info["version_tags"] and info["gem5_binary_sha256"]
    if gem5_binary is not None:
        assert info["origin"] == "brought" and info["brought"]["sha256"] == info["gem5_binary_sha256"]
    start = time.monotonic()
    again = env.ensure(StepContext.open(cfg, engine))
    assert again.image == art.image and time.monotonic() - start < 5
    # The same as a user runs it: a no-op rerun of the task, whole process.
    start = time.monotonic()
    out = invoke(hackback_env(gem5_work, gem5_src, gem5_binary), "env", timeout=600)
    assert out.returncode == 0 and "is up to date" in out.stdout, out.stdout[-2000:] + out.stderr
    assert time.monotonic() - start < 10


# ---------------------------------------------------------------- no silent multi-hour rebuilds


def _env_manifest(info: dict) -> "Manifest":  # type: ignore[type-arg]
    from hackback.store.manifest import Manifest

    m = Manifest("env", "default")
    m.set_part("gem5", {"x": 1}, {}, info)
    return m


def test_leaving_gem5_src_off_next_to_an_env_from_another_tree_stops_instead_of_rebuilding(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built = _env_manifest({"origin": "built", "gem5_source": {"origin": "local tree /home/me/gem5-fork"},
                           "build_options": {"RUBY": "n", "USE_SYSTEMC": "n"}})
    with pytest.raises(UsageError, match="built from local tree /home/me/gem5-fork; this would rebuild it from clone of"):
        env.refuse_silent_rebuild(make_config(), built, "clone of https://github.com/gem5/gem5.git v24.0.0.1")
    env.refuse_silent_rebuild(make_config(), built, "local tree /home/me/gem5-fork")  # the same tree: incremental, goes on
    with pytest.raises(UsageError, match="gem5.build_options"):
        env.refuse_silent_rebuild(make_config(gem5__build_options={"RUBY": "y"}), built, "local tree /home/me/gem5-fork")
    brought = _env_manifest({"origin": "brought", "brought": {"path": "/opt/gem5/gem5.opt"}, "gem5_source": {"origin": "x"}})
    with pytest.raises(UsageError, match="without --gem5-binary this would compile gem5"):
        env.refuse_silent_rebuild(make_config(), brought, "x")
    env.refuse_silent_rebuild(make_config(gem5__binary=str(tmp_path / "gem5.opt")), brought, "y")  # packaging: seconds
    env.refuse_silent_rebuild(make_config(), None, "x")  # nothing built yet


# ---------------------------------------------------------------- Docker tier: the build path, with a gem5 build test double

FAKE_TOP_SCONSTRUCT = r'''
# Test double for gem5's SConstruct (named as such; not gem5): takes the options
# and targets hackback gives, and does to the source tree what gem5's build does
# (ply's parsetab.py under src/arch, __pycache__), then "links" a gem5.opt that
# answers hackback's probe as an X86 gem5 24.0.0.1.
import os, subprocess
AddOption("--ignore-style", action="store_true")
AddOption("--linker", dest="linker", type="string")
targets = list(COMMAND_LINE_TARGETS)
if targets and targets[0] in ("defconfig", "setconfig"):
    Exit(0)
os.makedirs("src/arch/__pycache__", exist_ok=True)
open("src/arch/parsetab.py", "w").write("# written by the build\n")
out = targets[0]
os.makedirs(os.path.dirname(out), exist_ok=True)
subprocess.check_call(["gcc", '-DRELEASE="24.0.0.1"', '-DISA="x86"', "-o", out, "gem5-probe-standin.c"])
Exit(0)
'''

FAKE_M5_SCONSTRUCT = r'''
# Test double for util/m5's SConstruct (named as such): a static x86-64 "m5".
import os, subprocess
os.makedirs("build/x86/out", exist_ok=True)
open("m5-standin.c", "w").write("int main(void) { return 0; }\n")
subprocess.check_call(["gcc", "-static", "-o", "build/x86/out/m5", "m5-standin.c"])
Exit(0)
'''


@pytest.mark.docker
def test_a_gem5_build_leaves_the_researchers_tree_as_it_was(engine: Engine, tools, fake_gem5_tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (fake_gem5_tree / "SConstruct").write_text(FAKE_TOP_SCONSTRUCT)
    (fake_gem5_tree / "util" / "m5" / "SConstruct").write_text(FAKE_M5_SCONSTRUCT)
    (fake_gem5_tree / "src" / "arch").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "data" / "gem5-probe-standin.c", fake_gem5_tree)
    snapshot = {str(p.relative_to(fake_gem5_tree)): p.read_bytes() for p in fake_gem5_tree.rglob("*") if p.is_file()}
    cfg = config.load(flags={"work_dir": str(tmp_path / "work"), "gem5.src": str(fake_gem5_tree)}, environ={})
    art = env.ensure(StepContext.open(cfg, engine))
    try:
        after = {str(p.relative_to(fake_gem5_tree)): p.read_bytes() for p in fake_gem5_tree.rglob("*") if p.is_file()}
        assert after == snapshot, "the build wrote into the researcher's tree"
        assert not (fake_gem5_tree / "src" / "arch" / "parsetab.py").exists()
        build = tmp_path / "work" / "cache" / "gem5-build" / "default"
        assert (build / "src" / "src" / "arch" / "parsetab.py").is_file()  # it went to the build's own copy
        info = art.manifest.parts["gem5"]["info"]
        assert info["origin"] == "built" and info["build_info"]["release"] == "24.0.0.1"
        start = time.monotonic()
        again = env.ensure(StepContext.open(cfg, engine))
        assert again.image == art.image and time.monotonic() - start < 5  # the tree's identity did not move
    finally:
        if art.image:
            engine.remove_image(art.image)
