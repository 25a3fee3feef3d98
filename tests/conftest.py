"""Test tiers: nothing / Docker engine / QEMU / gem5.

Docker-engine tests skip with the reason when no engine answers, except under
CI (CI=true), where a missing engine is a failure: .ci/run starts one.
gem5 tests run when HACKBACK_TEST_GEM5_SRC points at a gem5 source tree.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from hackback import config
from hackback.config import Config


@pytest.fixture
def make_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Config with the shipped defaults, a private work dir and any flags."""

    def make(**flags: object) -> Config:
        base = {"work_dir": str(tmp_path / "work")}
        base.update({k.replace("__", "."): v for k, v in flags.items()})
        return config.load(flags=base, environ={}, cwd=tmp_path)

    return make


@pytest.fixture(scope="session")
def engine():  # type: ignore[no-untyped-def]
    from hackback.engine import Engine
    from hackback.errors import DockerUnavailable

    try:
        return Engine.connect()
    except DockerUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have a Docker engine (.ci/run starts one): {e.one_line()}")
        pytest.skip(f"Docker-engine tier: {e.one_line()}")


@pytest.fixture(scope="session")
def session_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="session")
def tools(engine, session_work: Path) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """The real tools image, built from the (pulled or bootstrapped) base.
    Images are content-addressed and shared with real use: one that existed
    before the session is kept; one this session built is removed after it,
    unless HACKBACK_TEST_KEEP_IMAGES=1."""
    from hackback import base
    from hackback.artifacts import Layout

    cfg = config.load(flags={"work_dir": str(session_work)}, environ={})
    before = {tag for _id, tags, _l in engine.images() for tag in tags}
    image = base.ensure_tools(cfg, engine, Layout(cfg.work_dir))
    yield image
    if os.environ.get("HACKBACK_TEST_KEEP_IMAGES") != "1":
        for tag in (image.ref, image.base.ref):
            if tag not in before and tag.startswith("hackback-"):
                engine.remove_image(tag)


@pytest.fixture(scope="session")
def gem5_src() -> Path:
    src = os.environ.get("HACKBACK_TEST_GEM5_SRC")
    if not src:
        pytest.skip("gem5 tier: set HACKBACK_TEST_GEM5_SRC to a gem5 v24 source tree to run it")
    return Path(src)


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
