"""Test tiers: nothing / Docker engine / QEMU / Slurm / gem5.

Docker-engine tests skip with the reason when no engine answers, except under
CI (CI=true), where a missing engine is a failure: .ci/run starts one.
gem5 tests run when HACKBACK_TEST_GEM5_SRC points at a gem5 source tree (or
tarball); with HACKBACK_TEST_GEM5_BINARY (a gem5.opt built from it) the env
packages that binary instead of compiling gem5 for hours. The whole gem5 tier
shares one work directory (HACKBACK_TEST_WORK_DIR, else a session temporary
one): one env, one kernel (built while the image builds), one image with the
real m5 (the QEMU tier boots it too, with hackback.m5=off), one checkpoint.
Slurm tests start a single-node Slurm of their own (tests/slurm_cluster.py);
without slurm-wlm and munge installed they skip, except under CI, which
installs them.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

import pytest

from hackback.base import config
from hackback.base.config import Config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def make_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Config with the shipped defaults, a private work dir and any flags."""

    def make(**flags: object) -> Config:
        base = {"work_dir": str(tmp_path / "work")}
        base.update({k.replace("__", "."): v for k, v in flags.items()})
        return config.load(flags=base, environ={}, cwd=tmp_path)

    return make


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from hackback.base.engine import Engine
    from hackback.base.errors import DockerUnavailable

    # Labelled with the tests' work dir, as every hackback task labels its own: a
    # run killed mid-test leaves containers that `hackback clean --work-dir` of that
    # dir (.ci/run does it first) can prove to be leftovers and reap.
    given = os.environ.get("HACKBACK_TEST_WORK_DIR")
    try:
        return Engine.connect(Path(given) if given else tmp_path_factory.mktemp("engine-work"))
    except DockerUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have a Docker engine (.ci/run starts one): {e.one_line()}")
        pytest.skip(f"Docker-engine tier: {e.one_line()}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A single-node Slurm of the tests' own; its SLURM_CONF is set for this process while it runs."""
    import slurm_cluster as sc

    lacking = sc.missing()
    if lacking:
        reason = f"Slurm tier: {', '.join(lacking)} not installed (apt-get install slurm-wlm munge)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must have Slurm (.ci/run installs it): {reason}")
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("Slurm tier: slurmd must run as root to start jobs as the test's user")
    cluster = sc.SingleNodeSlurm(tmp_path_factory.mktemp("slurm")).start()
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before


@pytest.fixture(scope="session")
def session_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="session")
def tools(engine, session_work: Path) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """The real tools image, built from the (pulled or bootstrapped) base.
    Images are content-addressed and shared with real use: one that existed
    before the session is kept; one this session built is removed after it,
    unless HACKBACK_TEST_KEEP_IMAGES=1."""
    from hackback.services import tools_image
    from hackback.store.layout import Layout

    cfg = config.load(flags={"work_dir": str(session_work)}, environ={})
    before = {tag for _id, tags, _l in engine.images() for tag in tags}
    image = tools_image.ensure_tools(cfg, engine, Layout(cfg.work_dir))
    yield image
    if os.environ.get("HACKBACK_TEST_KEEP_IMAGES") != "1":
        for tag in (image.ref, image.base.ref):
            if tag not in before and tag.startswith("hackback-"):
                engine.remove_image(tag)


@pytest.fixture(scope="session")
def m5_standin(engine, tools, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """tests/data/m5-standin.c built as hackback requires any m5 to be: a static
    x86-64 executable (compiled in the tools image, which has gcc and libc.a)."""
    from hackback.base.engine import Mount, RunSpec

    src = REPO / "tests" / "data" / "m5-standin.c"
    out = tmp_path_factory.mktemp("m5-standin")
    engine.run(RunSpec(tools.ref, ["gcc", "-static", "-O2", "-o", "/out/m5", f"/src/{src.name}"], step="t-m5-standin-cc",
                       kvm=False, network="none", mounts=[Mount(src.parent, "/src"), Mount(out, "/out", read_only=False)]),
               on_line=lambda _l: None)
    return out / "m5"


@pytest.fixture(scope="session")
def guest_helper(engine, tools, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """hackback/guest/hackback-guest.c compiled as image stage 1 compiles it (the tools image's gcc, static)."""
    from hackback.base.engine import Mount, RunSpec
    from hackback.steps.image import GUEST

    out = tmp_path_factory.mktemp("guest-helper")
    engine.run(RunSpec(tools.ref, ["gcc", "-static", "-Os", "-Wall", "-Werror", "-o", "/out/hackback-guest", "/src/hackback-guest.c"],
                       step="t-guest-cc", kvm=False, network="none",
                       mounts=[Mount(GUEST, "/src"), Mount(out, "/out", read_only=False)]),
               on_line=lambda _l: None)
    return out / "hackback-guest"


def gem5_tier_reason() -> str:
    """Why the gem5 tier cannot run here, or "" when it can."""
    if not os.environ.get("HACKBACK_TEST_GEM5_SRC"):
        return "gem5 tier: set HACKBACK_TEST_GEM5_SRC to a gem5 v24 source tree or tarball (and optionally HACKBACK_TEST_GEM5_BINARY) to run it"
    return ""


@pytest.fixture(scope="session")
def gem5_src() -> Path:
    if gem5_tier_reason():
        pytest.skip(gem5_tier_reason())
    return Path(os.environ["HACKBACK_TEST_GEM5_SRC"]).resolve()


@pytest.fixture(scope="session")
def gem5_binary() -> Optional[Path]:
    binary = os.environ.get("HACKBACK_TEST_GEM5_BINARY")
    return Path(binary).resolve() if binary else None


@pytest.fixture(scope="session")
def gem5_work(gem5_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gem5 tier's one work directory (kept between runs when HACKBACK_TEST_WORK_DIR names one)."""
    given = os.environ.get("HACKBACK_TEST_WORK_DIR")
    work = Path(given) if given else tmp_path_factory.mktemp("gem5-work")
    work.mkdir(parents=True, exist_ok=True)
    return work


def hackback_env(work: Path, gem5_src: Optional[Path] = None, gem5_binary: Optional[Path] = None) -> dict[str, str]:
    """The environment a user's shell would have: no test switches, this work dir and gem5."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HACKBACK_")}
    env["HACKBACK_WORK_DIR"] = str(work)
    if gem5_src is not None:
        env["HACKBACK_GEM5_SRC"] = str(gem5_src)
    if gem5_binary is not None:
        env["HACKBACK_GEM5_BINARY"] = str(gem5_binary)
    return env


def invoke(env: dict[str, str], *args: str, timeout: int = 6 * 3600) -> subprocess.CompletedProcess[str]:
    """`hackback ARGS` as a user runs it (the installed command's entry point), from the repo."""
    return subprocess.run([sys.executable, "-m", "hackback.cli", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def gem5_world(gem5_src: Path, gem5_binary: Optional[Path], gem5_work: Path, engine) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """env, kernel and image in the shared work dir, as `invoke` builds them: the
    kernel (compile-bound) in the background while the image (mostly waiting on
    QEMU and the mirror) builds in the foreground."""
    env = hackback_env(gem5_work, gem5_src, gem5_binary)
    out = invoke(env, "env")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    kernel = subprocess.Popen([sys.executable, "-m", "hackback.cli", "kernel"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        img = invoke(env, "image")
        assert img.returncode == 0, img.stdout[-3000:] + img.stderr
        kout, _ = kernel.communicate(timeout=3 * 3600)
        assert kernel.returncode == 0, kout[-3000:]
    finally:
        if kernel.poll() is None:
            kernel.send_signal(signal.SIGINT)  # it removes its container on the way out
            kernel.communicate(timeout=120)
    return {"work": gem5_work, "env": gem5_work / "env" / "default", "image": gem5_work / "images" / "default",
            "kernel": gem5_work / "kernels" / "default"}


def pytest_configure(config: pytest.Config) -> None:
    # A test run killed by SIGTERM (a CI timeout) unwinds like Ctrl-C, so the
    # containers its tests started are removed rather than left running.
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


FAKE_VERSION_CC = 'namespace gem5 {\nconst char *gem5Version = "24.0.0.1";\n}\n'


@pytest.fixture
def fake_gem5_tree(tmp_path: Path) -> Path:
    """Just the files hackback reads to identify a gem5 tree (not gem5's source)."""
    root = tmp_path / "gem5"
    for rel, text in {
        "SConstruct": "# stand-in\n",
        "src/base/version.cc": FAKE_VERSION_CC,
        "util/m5/SConstruct": "# stand-in\n",
        "build_opts/X86": "USE_X86_ISA=y\n",
        "util/cpt_upgraders/cpu-pid.py": "",
        "util/cpt_upgraders/smt-interrupts.py": "",
        "include/gem5/m5ops.h": "",
    }.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


GEM5_BUILD_JSON = {"release": "24.0.0.1", "version_tags": ["t"], "tree_sha256": "t" * 64, "binary_sha256": "b" * 64,
                   "env_image": "hackback-env:test", "binary": "/opt/hackback/bin/gem5.opt"}


def checkpoint_info_json(cpt: str = "cpt.100", **more: object) -> dict[str, object]:
    """A whole checkpoint info as hackback writes it (records.CheckpointInfo), for tests that make manifests by hand."""
    return {"cpt": cpt, "tick": int(cpt.split(".")[-1]) if cpt.split(".")[-1].isdigit() else 1, "sim_seconds": 0.5,
            "host_seconds": 9.0, "gem5": GEM5_BUILD_JSON, "kernel": {"path": "/k/vmlinux", "sha256": "k" * 64},
            "image": {"path": "/d/disk.img", "sha256": "d" * 64, "partuuid": "abcd1234-01"},
            "board": {"memory": "2GiB", "cores": 1, "cpu": "atomic"}, "boot": "fast", "kernel_args": "console=ttyS0",
            **more}


def run_info_json(checkpoint: str = "default", script: str = "/x/script.sh", **more: object) -> dict[str, object]:
    """A whole run info as hackback writes it (records.RunInfo), for tests that make manifests by hand."""
    board = {"memory": "2GiB", "cores": 1, "cpu": "atomic", "caches": "none"}
    board.update(more.pop("board", {}))  # type: ignore[call-overload]
    return {"checkpoint": {"name": checkpoint, "directory": f"/w/checkpoints/{checkpoint}", "cpt": "cpt.100"},
            "script": {"path": script, "sha256": "s" * 64}, "gem5": GEM5_BUILD_JSON, "board": board, "cause": "exit",
            "script_status": "0", "sim_seconds": 0.001, "host_seconds": 1.0, "stats": {}, **more}


def result_of(**fields: object) -> "Gem5Result":
    """A run script's result with these fields (the rest as a plain restore's)."""
    base: dict[str, object] = {"mode": "restore", "cause": "exit", "expected": "exit", "ok": True, "sim_seconds": 1.5,
                            "host_seconds": 3600.0, "final_tick": 1}
    from hackback.store.records import Gem5Result

    return Gem5Result.from_json({**base, **fields})


def suite_source(name: str) -> Path:
    """A benchmark suite's source as the tests are handed it (HACKBACK_TEST_NPB_SRC,
    HACKBACK_TEST_GAPBS_SRC: a tarball or tree, as a user hands one over). Under CI
    (.ci/run sets them) a missing one fails the tier; elsewhere it skips, saying why."""
    var = f"HACKBACK_TEST_{name.upper()}_SRC"
    given = os.environ.get(var)
    if given and Path(given).exists():
        return Path(given).resolve()
    reason = f"suite tier: set {var} to a {name} tarball or tree to run it"
    if os.environ.get("CI"):
        pytest.fail(f"CI must hand over the {name} source (.ci/run sets {var}): {reason}")
    pytest.skip(reason)
