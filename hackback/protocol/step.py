"""The one protocol every step implements, and the Request every task is.

A step says what it needs (the names of other steps), what a request may hand
over instead of building it, what it refuses before anything builds, and how
it is brought up to date. The pipeline holds the steps and knows their order;
it knows no step's rules. Every task, the ones that only read (report,
checkpoints, clean) too, is one Request through the same path."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Union

from .context import StepContext
from ..base.errors import UsageError


@dataclass(frozen=True)
class Request:
    """One task as the user asked for it: the config layers' flags, and what is
    handed over instead of being built or found. Built with keywords."""

    target: str
    flags: Mapping[str, Any] = field(default_factory=dict)  # dotted config keys; None = not given
    config_file: Optional[str] = None
    force: bool = False  # reaches only the target step, never its dependencies
    dry_run: bool = False
    scripts: tuple[str, ...] = ()
    checkpoint: Optional[str] = None  # restore this one (a name or a directory) instead of checkpoints/<name>
    kernel: Optional[Path] = None  # checked against the checkpoint's, then used
    disk: Optional[Path] = None
    check: Union[Path, bool, None] = None  # image --check [PATH]
    resource_dir: Optional[Path] = None  # export: a gem5 resource directory to seed
    source: Optional[str] = None  # suite: its tarball, tree or URL (instead of suite.<name>.source)
    sha256: Optional[str] = None  # ... and that tarball's sha256
    # report: which runs, and where the tables go
    of_checkpoint: Optional[str] = None
    of_script: Optional[str] = None
    of_cpu: Optional[str] = None
    out: Optional[Path] = None
    # clean: what to remove
    kind: Optional[str] = None
    artifact: Optional[str] = None
    images: bool = False
    all_owners: bool = False
    yes: bool = False

    def forced(self, step: str) -> bool:
        return self.force and self.target == step


class Step:
    """A step of the pipeline. Subclasses set `name` and `needs` and implement ensure."""

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    # False for the tasks that only read or remove (report, checkpoints, clean,
    # image --check): they run alone, plan their own dry run, and reap nothing.
    builds: ClassVar[bool] = True
    verb: ClassVar[str] = "build"  # what a dry run says it would do

    def refuse(self, req: Request) -> None:
        """What is wrong with the request itself, before the config is even read (a missing script)."""

    def check(self, ctx: StepContext, req: Request) -> None:
        """What can be refused before any step builds (as the target: its own input)."""

    def given(self, ctx: StepContext, req: Request) -> Optional[Any]:
        """What the request hands over (or the work dir holds) instead of building this step; None: build it."""
        return None

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> Any:
        """Bring the step up to date (a no-op when its manifest says so) and return its record."""
        raise NotImplementedError


def check_files(req: Request) -> None:
    """--kernel and --image name files that exist (before the env step can start a gem5 build)."""
    for what, path in (("--kernel", req.kernel), ("--image", req.disk)):
        if path is not None and not path.is_file():
            raise UsageError(f"{what} {path} does not exist", f"give the file the checkpoint was taken with, or leave {what} off")
