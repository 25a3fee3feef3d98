#!/usr/bin/env python3
"""Cold build of the tools image: debootstrap of the base + import, then the
tools Dockerfile without the layer cache. Uses its own tags, so the images
real runs use are left alone.

    python3 benchmarks/tools_image.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import report, timed

from hackback.services import tools_image
from hackback.base import config, resources
from hackback.store.layout import Layout
from hackback.base.engine import Engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    engine = Engine.connect()
    boot, build = [], []
    with tempfile.TemporaryDirectory() as work:
        cfg = config.load(flags={"work_dir": work})
        layout = Layout(Path(work))
        for i in range(args.repeat):
            base_ref, tools_ref = f"hackback-bench-base:{i}", f"hackback-bench-tools:{i}"
            boot.append(timed(lambda: tools_image.bootstrap(cfg, engine, layout, base_ref)))
            build.append(timed(lambda: engine.build(resources.docker_dir("tools"), tools_ref, "bench", {"BASE": base_ref}, nocache=True)))
            engine.remove_image(tools_ref)
            engine.remove_image(base_ref)
    report("base: debootstrap + docker import", boot)
    report("tools image: docker build, no cache", build)
    report("cold total", [a + b for a, b in zip(boot, build)])


if __name__ == "__main__":
    main()
