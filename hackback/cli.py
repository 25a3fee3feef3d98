"""The `hackback` command: invoke's Program over the same task collection."""
from __future__ import annotations

import os
import sys

from invoke import Program

from . import __version__
from .tasks import ns

program = Program(namespace=ns, version=__version__, name="hackback", binary="hackback")


def main() -> None:
    try:
        program.run()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`hackback --help | head`): not an error of ours.
        # Point stdout at /dev/null so the interpreter's own flush at exit is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


if __name__ == "__main__":
    main()
