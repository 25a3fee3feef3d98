"""The benchmark suites hackback knows, as data: hackback/suites/<name>/
(suite.toml says what the suite is, how a member runs and what its own verdict
looks like; beside it the build script, make.def, patches and ROI hooks). A
member's run is judged here, by the suite's own verification, matched whole,
and by gem5's work items (its ROI really began and ended): both suites exit 0
when they fail, so a run passes only on its verdict."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..store.hashes import digest_of, sha256_file
from ..base.errors import UsageError
from ..store.records import Member, Verdict, WorkItem
from ..base.resources import package_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - older Pythons only
    import tomli as tomllib

SUITES = ("npb", "gapbs")
GRAPH = re.compile(r"^([gu])(\d{1,2})$")  # GAPBS: g<N> Kronecker, u<N> uniform, 2^N vertices


@dataclass(frozen=True)
class SuiteDef:
    name: str
    title: str
    home: str
    marker: str  # a file every tree of the suite has (finds its top in a tarball)
    members: tuple[str, ...]
    optional_members: tuple[str, ...]
    inputs: tuple[str, ...]  # classes, or patterns (g*: a graph)
    default_input: str
    build: str  # the build script, in the suite's folder
    command: str  # how the guest runs a member: {binary}, {kind}, {scale}, {trials}
    pass_line: str
    fail_line: str
    verdicts: str  # one | per-trial
    directory: Path

    @classmethod
    def load(cls, name: str) -> "SuiteDef":
        if name not in SUITES:
            raise UsageError(f"no benchmark suite {name!r}", f"hackback knows: {', '.join(SUITES)}")
        directory = package_file(f"suites/{name}")
        raw = tomllib.loads((directory / "suite.toml").read_text())
        return cls(raw["name"], raw["title"], raw["home"], raw["marker"], tuple(raw["members"]),
                   tuple(raw["optional_members"]), tuple(raw["inputs"]), raw["default_input"], raw["build"],
                   raw["command"], raw["pass_line"], raw["fail_line"], raw["verdicts"], directory)

    def digest(self) -> str:
        """What a build of this suite is made from on hackback's side: every file of its folder."""
        return digest_of({p.name: sha256_file(p) for p in sorted(self.directory.iterdir()) if p.is_file()})

    def chosen(self, asked: Sequence[str]) -> tuple[str, ...]:
        """The members asked for (all of the usual set when none is), each checked."""
        known = (*self.members, *self.optional_members)
        for m in asked:
            if m not in known:
                raise UsageError(f"{self.name} has no member {m!r}", f"its members: {', '.join(known)}")
        return tuple(dict.fromkeys(m.lower() for m in asked)) or self.members

    def input_of(self, asked: str) -> str:
        value = asked or self.default_input
        if self.name == "gapbs":
            if not GRAPH.match(value):
                raise UsageError(f"gapbs input {value!r} is not a synthetic graph",
                                 "give g<N> (Kronecker) or u<N> (uniform), 2^N vertices, e.g. g10")
            return value
        value = value.upper()
        if value not in self.inputs:
            raise UsageError(f"{self.name} has no class {asked!r}", f"its classes: {', '.join(self.inputs)}")
        return value

    def binary(self, member: str, input: str) -> str:
        """The file name of a member's binary (NPB's bin/<member>.<class>.x)."""
        return f"{member}.{input}.x" if self.name == "npb" else member

    def guest_command(self, m: Member) -> str:
        graph = GRAPH.match(m.input)
        kind, scale = (graph.group(1), graph.group(2)) if graph else ("", "")
        return self.command.format(binary=self.binary(m.member, m.input), kind=kind, scale=scale, trials=m.trials)

    def script(self, m: Member) -> str:
        """The restore script a member runs in the guest (its binary is in the payload, the working directory)."""
        return ("#!/bin/sh\n"
                f"# hackback suite {self.name}: {m.member}, input {m.input}, {m.threads} OpenMP thread(s)\n"
                f"export OMP_NUM_THREADS={m.threads}\n"
                f"exec {self.guest_command(m)}\n")

    def owed(self, m: Member) -> int:
        """Verdicts (and regions of interest) a run of the member owes."""
        return m.trials if self.verdicts == "per-trial" else 1

    def judge(self, m: Member, output: str, items: Sequence[WorkItem] = (), began_before: bool = False,
              roi_from_gem5: bool = True) -> Verdict:
        """The member's own verdict in its output, and whether gem5 saw its ROI
        (began_before: the run was restored inside it). roi_from_gem5=False
        judges a native run, which has no work items."""
        passed = [ln.strip() for ln in output.splitlines() if re.match(self.pass_line, ln)]
        failed = [ln.strip() for ln in output.splitlines() if re.match(self.fail_line, ln)]
        owed = self.owed(m)
        begins = sum(i.kind == "workbegin" for i in items) + int(began_before)
        ends = sum(i.kind == "workend" for i in items)
        said = (failed or passed or [""])[0]
        if failed:
            return Verdict(False, said, f"{m.label}: its verification failed ({said!r})")
        if len(passed) < owed:
            return Verdict(False, said, f"{m.label}: printed {len(passed)} of the {owed} verification verdict(s) it owes")
        if roi_from_gem5 and (begins < owed or ends < owed):
            return Verdict(False, said, f"{m.label}: gem5 saw {begins} m5 workbegin and {ends} workend, not the {owed} "
                                        "region(s) of interest it marks")
        return Verdict(True, said, "")


def native_roi_insts(callgrind_out: Path) -> Optional[int]:
    """The instructions callgrind collected (its totals: the ROI alone, collection toggled by the hooks)."""
    try:
        text = callgrind_out.read_text(errors="replace")
    except OSError:
        return None
    found = re.findall(r"^(?:totals|summary):\s+(\d+)", text, re.M)
    return int(found[-1]) if found else None
