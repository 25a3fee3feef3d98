"""The `hackback` command: invoke's Program over the same task collection."""
from __future__ import annotations

from invoke import Program

from . import __version__
from .tasks import ns

program = Program(namespace=ns, version=__version__, name="hackback", binary="hackback")


def main() -> None:
    program.run()
