"""The README's set-up on a stock Debian 12 (Docker tier): the bootstrapped base
image is plain Debian with no Python at all, as a fresh machine has; the Python
part of scripts/setup-host.sh (scripts/setup-python.sh) must install hackback
there without touching the system Python (PEP 668), and the commands the README
names must then work."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO
from hackback.base.engine import Engine, Mount, RunSpec

pytestmark = pytest.mark.docker
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def test_setup_installs_hackback_on_stock_debian_and_the_readme_commands_work(engine: Engine, tools) -> None:  # type: ignore[no-untyped-def]
    script = r"""set -e
! command -v python3 >/dev/null  # a stock minimal Debian: no Python of its own yet
mkdir -p /tmp/hb && tar -C /src --exclude=./.venv --exclude=./.git --exclude=./build -cf - . | tar -C /tmp/hb -xf -
cd /tmp/hb
bash scripts/setup-python.sh
# -I: neither the cwd (/tmp/hb holds hackback/) nor / (whose /hackback mount point a bare import takes for a namespace package)
echo "== system python: hackback $(python3 -I -c 'import hackback' 2>/dev/null && echo importable || echo absent)"
ls /usr/lib/python3*/EXTERNALLY-MANAGED >/dev/null && echo "== PEP 668 marker present"
echo "== invoke --list"; .venv/bin/invoke --list
echo "== hackback --list"; .venv/bin/hackback --list
. .venv/bin/activate && invoke --help restore | head -n 3
echo SETUP-OK
"""
    lines: list[str] = []
    # This machine reaches PyPI through a TLS proxy whose CA only the host trusts:
    # hand pip that bundle (a plain machine needs nothing of the sort).
    mounts, environment = [Mount(REPO, "/src")], {}
    if HOST_CA.is_file():
        mounts.append(Mount(HOST_CA, "/hackback/host-ca.crt"))
        environment["PIP_CERT"] = "/hackback/host-ca.crt"
    engine.run(RunSpec(tools.base.ref, ["bash", "-c", script], step="t-stock-debian", as_root=True, kvm=False,
                       mounts=mounts, environment=environment), on_line=lines.append)
    text = "\n".join(lines)
    assert "SETUP-OK" in text, text[-3000:]
    listed = text.split("== invoke --list", 1)[1].split("== hackback --list", 1)
    for task in ("env", "image", "kernel", "checkpoint", "restore", "clean"):
        assert f"  {task}" in listed[0] and f"  {task}" in listed[1], text[-3000:]
    assert "setup: hackback installed in /tmp/hb/.venv" in text
    # Installed beside the system Python, not into it, on a system that refuses pip installs (PEP 668).
    assert "== system python: hackback absent" in text and "== PEP 668 marker present" in text, text[-3000:]
