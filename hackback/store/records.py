"""The artifact records every step reads and returns: the tools image, the gem5
source, env, image, kernel, checkpoint and run, and the typed records inside
their manifests (a checkpoint's info, a run's info, the gem5 build, the run
script's result, the board a run simulates). A step takes the records of the
steps it needs (never the steps themselves) and returns its own; the order the
steps run in lives in the pipeline alone. Manifests are read into records here,
so no step walks another step's manifest as a dict.

Each record writes itself as JSON (`to_json`) and reads itself back
(`from_json`): fields by name, None-valued optional fields left out, and a
field an older hackback did not write read as its default. Infos carry a
schema number (INFO_SCHEMA); the previous version's (no number: 1) have the
same names and read the same way.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import enum
import functools
import typing
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, Optional, TypeVar

from .hashes import digest_of
from .layout import Layout
from .manifest import Manifest
from ..base.config import WITH_L2
from ..base.errors import ArtifactError, UsageError

FASTINIT = "/sbin/hackback-fastinit"  # in every image: init= for a fast boot (no init system)
DISK = "disk.img"  # an image's raw disk, in its directory
GEM5_KERNEL = "vmlinux"  # in a checkpoint's directory: the kernel gem5 booted, without its symbol table
CPU_JOIN = "-to-"  # a switching run's CPU label joins its two CPUs with it: atomic-to-o3
INFO_SCHEMA = 2  # what this hackback writes in a checkpoint's or run's info; 1: the previous version's

Json = Any  # what json.loads gives: the records' own types say what is inside
Figures = Mapping[str, float]  # a dump's figures (hackback.services.stats.figures): insts, ipc, miss rates, ...
R = TypeVar("R", bound="Record")


# ---------------------------------------------------------------- the JSON codec


class Record:
    """A frozen dataclass that reads and writes itself as JSON by its fields' types.
    None-valued and empty fields are left out; a field left out reads as its default."""

    _renamed: ClassVar[Mapping[str, str]] = MappingProxyType({})  # field -> JSON key, where they differ
    _nullable: ClassVar[frozenset[str]] = frozenset()  # fields written as null when None (not left out)
    PART: ClassVar[str] = ""  # the manifest part whose info this record is, if it is one

    @classmethod
    def of(cls: type[R], manifest: Manifest, part: str = "") -> R:
        """The record in the info of a manifest's part (its PART unless named)."""
        info = manifest.info(part or cls.PART)
        if info is None:
            raise ArtifactError(f"{manifest.kind}/{manifest.name} has no '{part or cls.PART}' part",
                                "the artifact is damaged or was made by another tool: build it again with --force")
        return cls.from_json(info)

    def to_json(self) -> dict[str, Json]:
        out: dict[str, Json] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name not in self._nullable and (value is None or (isinstance(value, (tuple, Mapping)) and not value)):
                continue  # None and empty are left out (and read back as the default)
            out[self._renamed.get(f.name, f.name)] = _encode(value)
        return out

    @classmethod
    def from_json(cls: type[R], data: Json) -> R:
        if not isinstance(data, Mapping):
            raise ArtifactError(f"a {cls.__name__} record is {type(data).__name__}, not a JSON object",
                                "the manifest is damaged: build the artifact again with --force")
        hints = _hints(typing.cast(type, cls))
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            key = cls._renamed.get(f.name, f.name)
            if key in data:
                kwargs[f.name] = _decode(hints[f.name], data[key], f"{cls.__name__}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ArtifactError(f"a {cls.__name__} record has no '{key}'",
                                    "the manifest was written by another tool or is damaged: build it again with --force")
        return cls(**kwargs)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _encode(value: Any) -> Json:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _decode(tp: Any, raw: Json, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        if raw is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for alternative in inner[:-1]:  # the first of the union's types that takes it
            try:
                return _decode(alternative, raw, where)
            except ArtifactError:
                pass
        return _decode(inner[-1], raw, where)
    if tp is Any:
        return raw
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_json(raw)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(raw)
    if origin in (tuple, list):
        if not isinstance(raw, list):
            raise _wrong(where, raw)
        return tuple(_decode(args[0], v, where) for v in raw)
    if origin in (collections.abc.Mapping, dict):
        if not isinstance(raw, Mapping):
            raise _wrong(where, raw)
        return MappingProxyType({str(k): _decode(args[1], v, where) for k, v in raw.items()})
    if tp is Path:
        return Path(str(raw))
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise _wrong(where, raw)
        return float(raw)
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _wrong(where, raw)
        return raw
    if tp is bool:
        if not isinstance(raw, bool):
            raise _wrong(where, raw)
        return raw
    if tp is str:
        if not isinstance(raw, str):
            raise _wrong(where, raw)
        return raw
    raise AssertionError(f"no JSON decoding for {tp} ({where})")  # a record's own type, not input


def _wrong(where: str, raw: Json) -> ArtifactError:
    return ArtifactError(f"{where} is {raw!r} in a manifest, not what hackback writes there",
                         "the manifest is damaged: build the artifact again with --force")


# ---------------------------------------------------------------- small records


@dataclass(frozen=True)
class FileRef(Record):
    path: Path
    sha256: str


@dataclass(frozen=True)
class ImageRef(Record):
    path: Path
    sha256: str
    partuuid: str = ""


@dataclass(frozen=True)
class Gem5Build(Record):
    """The gem5 inside an env image, as its manifest recorded it."""

    release: str  # e.g. "24.0.0.1"
    version_tags: tuple[str, ...]  # sorted; the binary's own (probed) where known
    tree_sha256: str
    binary_sha256: str
    env_image: str
    binary: str  # its path inside the env image
    origin: str = "built"  # built | brought
    commit: Optional[str] = None

    def differs_from(self, other: "Gem5Build") -> bool:
        """Another tree or binary of the same release: a researcher's modified gem5."""
        return self.tree_sha256 != other.tree_sha256 or self.binary_sha256 != other.binary_sha256


class ScriptEnd(enum.Enum):
    """How the guest said the restored script ended (its HACKBACK-SCRIPT-EXIT line)."""

    EXITED = "exited"  # with an exit status
    EMPTY = "empty"  # the readfile was empty: nothing ran
    PAYLOAD = "payload"  # its payload could not be unpacked (or arrived cut short): it did not run
    UNREADABLE = "unreadable"  # m5 readfile failed
    UNREPORTED = "unreported"  # no line: the run ended elsewhere (m5 exit in the script, an instruction count)


@dataclass(frozen=True)
class ScriptStatus:
    end: ScriptEnd
    code: Optional[int] = None  # the exit status, when EXITED

    @classmethod
    def parse(cls, said: Optional[str]) -> "ScriptStatus":
        """From the guest's word (a number, empty, payload, unreadable) or None."""
        if said is None:
            return cls(ScriptEnd.UNREPORTED)
        if said.isdigit():
            return cls(ScriptEnd.EXITED, int(said))
        try:
            return cls(ScriptEnd(said))
        except ValueError:
            return cls(ScriptEnd.UNREADABLE)

    def word(self) -> Optional[str]:
        """As the guest said it (and manifests keep it): "0", "empty", ...; None if it said nothing."""
        if self.end is ScriptEnd.EXITED:
            return str(self.code)
        return None if self.end is ScriptEnd.UNREPORTED else self.end.value

    @property
    def exit_code(self) -> int:
        """The exit status a failed run's restore exits with (1 when the script never gave one)."""
        return self.code if self.code is not None and 0 < self.code < 126 else 1

    def __str__(self) -> str:
        return self.word() or "not reported"


@dataclass(frozen=True)
class BootBoard(Record):
    """The machine a checkpoint was booted on; restores inherit memory and cores."""

    memory: str
    cores: int
    cpu: str


@dataclass(frozen=True)
class Board(Record):
    """What a run simulates: the checkpoint's memory and cores, and what the run
    chooses (CPU, caches, a switch). Built once (from the config, or a manifest);
    it gives the run's inputs, its id part, its label and gem5's arguments.
    Sizes a run does not use (no caches, no switch) are kept empty, so two
    boards that simulate the same are equal."""

    memory: str
    cores: int
    cpu: str
    caches: str = "none"
    l1d: str = ""
    l1i: str = ""
    l2: str = ""
    switch_from: str = ""  # a run that starts on this CPU and switches to `cpu` ("": no switch)
    switch_after_insts: int = 0  # 0: at the guest's m5 workbegin
    warmup_insts: int = 0
    in_roi: bool = False  # restored from a checkpoint saved at the ROI's start: measured from the first instruction
    measure_insts: int = 0  # a sample: exactly this many instructions measured (after the switch and warm-up), then the end

    def __post_init__(self) -> None:
        if self.caches == "none":
            object.__setattr__(self, "l1d", "")
            object.__setattr__(self, "l1i", "")
        if self.caches not in WITH_L2:
            object.__setattr__(self, "l2", "")
        if not self.switch_from:
            object.__setattr__(self, "switch_after_insts", 0)
            if not self.in_roi:
                object.__setattr__(self, "warmup_insts", 0)

    def inputs(self) -> dict[str, Json]:
        """What a run's manifest records as the board among its inputs."""
        return {"cpu": self.cpu, "caches": self.caches,
                **({"l1d": self.l1d, "l1i": self.l1i} if self.caches != "none" else {}),
                **({"l2": self.l2} if self.caches in WITH_L2 else {}),
                **({"switch_from": self.switch_from, "switch_after_insts": self.switch_after_insts,
                    "warmup_insts": self.warmup_insts} if self.switch_from else {}),
                **({"in_roi": True, "warmup_insts": self.warmup_insts} if self.in_roi else {}),
                **({"measure_insts": self.measure_insts} if self.measure_insts else {})}

    def to_json(self) -> dict[str, Json]:
        return {**self.inputs(), "memory": self.memory, "cores": self.cores}

    @property
    def cpu_label(self) -> str:
        """The CPU as every listing spells it: o3, or atomic-to-o3 for a switching run."""
        return f"{self.switch_from}{CPU_JOIN}{self.cpu}" if self.switch_from else self.cpu

    def id_part(self) -> str:
        return self.cpu_label + (f"-{self.caches}" if self.caches != "none" else "")

    def label(self) -> str:
        return (f"{self.cpu_label} CPU" + (f", {self.caches} caches" if self.caches != "none" else "")
                + (", from its region of interest" if self.in_roi else ""))

    def runs_on(self, cpu: str) -> bool:
        return cpu in (self.cpu, self.switch_from)

    def args(self) -> list[str]:
        """gem5's run script arguments for it (configs/hackback_fs.py)."""
        out = ["--memory", self.memory, "--cores", str(self.cores), "--cpu", self.cpu, "--caches", self.caches]
        if self.caches != "none":
            out += ["--l1d", self.l1d, "--l1i", self.l1i]
        if self.caches in WITH_L2:
            out += ["--l2", self.l2]
        if self.switch_from:
            out += ["--switch-from", self.switch_from, "--switch-after-insts", str(self.switch_after_insts),
                    "--warmup-insts", str(self.warmup_insts)]
        if self.in_roi:
            out += ["--in-roi", "--warmup-insts", str(self.warmup_insts)]
        if self.measure_insts:
            out += ["--measure-insts", str(self.measure_insts)]
        return out

    @classmethod
    def for_boot(cls, boot: BootBoard) -> "Board":
        return cls(boot.memory, boot.cores, boot.cpu)


@dataclass(frozen=True)
class Member(Record):
    """A benchmark suite's member as a run runs it."""

    suite: str  # npb | gapbs
    member: str  # is, mg, bfs, ...
    input: str  # NPB's class (S, W, A), GAPBS's graph (g10)
    threads: int  # OpenMP threads
    trials: int = 1  # GAPBS's -n

    @property
    def label(self) -> str:
        return f"{self.suite} {self.member} ({self.input}, {self.threads} thread{'s' if self.threads > 1 else ''})"


@dataclass(frozen=True)
class Verdict(Record):
    """A benchmark's own verdict on a run, and gem5's word that its ROI ran."""

    passed: bool
    said: str  # its verdict line, as printed ("" if none)
    why: str = ""  # what failed, or was missing, in one line


@dataclass(frozen=True)
class BenchInfo(Record):
    """A built suite member's manifest info: what it is, its native verdict and ROI count."""
    PART: ClassVar[str] = "benchmark"

    member: Member
    verdict: Verdict  # its native run's
    source: str = ""  # the suite's source, as handed over
    native_roi_insts: Optional[int] = None  # callgrind's count of its ROI (suite.native_counts)
    suite_tools: str = ""  # the image it was built in
    build_seconds: Optional[float] = None  # the build and the native run, host seconds


@dataclass(frozen=True)
class WorkItem(Record):
    """A stats dump the run script made (or a marker it only noted, dump None)."""

    kind: str  # workbegin, workend, switch, warmup-end, measure-end
    tick: int
    dump: Optional[int] = None  # 1-based
    cpu: Optional[str] = None
    insts: Optional[int] = None  # core 0's committed instructions since the run started, on the cores then running


@dataclass(frozen=True)
class Saved(Record):
    """A checkpoint a run saved, and after how many of core 0's instructions."""

    cpt: str
    insts: Optional[int] = None


@dataclass(frozen=True)
class Switch(Record):
    tick: int
    host_seconds: float
    from_: str
    to: str
    after_insts: int = 0
    warmup_insts: int = 0
    _renamed: ClassVar[Mapping[str, str]] = MappingProxyType({"from_": "from"})


@dataclass(frozen=True)
class Gem5Result(Record):
    """hackback-result.json: how the run script says a gem5 run ended."""

    mode: str  # boot | restore
    cause: str  # a contract cause
    expected: str
    ok: bool
    sim_seconds: float
    host_seconds: float
    final_tick: int
    start_tick: int = 0
    cpu: str = ""
    caches: str = ""
    memory: str = ""
    cores: int = 0
    gem5_exit_cause: str = ""
    phases: Figures = field(default_factory=dict)
    console_last_line: str = ""
    panic_line: str = ""
    work_items: tuple[WorkItem, ...] = ()
    stats_dumps: Optional[int] = None  # the dumps it made, gem5's own at exit included
    roi_dump: Optional[int] = None  # 1-based: the dump holding the measured part
    roi_named: bool = False  # the run script said which dump (roi_dump, None included); older ones did not
    cpu_at_end: str = ""
    switch: Optional[Switch] = None
    checkpoint: Optional[str] = None  # the (last) cpt.<tick> it saved
    checkpoints: tuple[Saved, ...] = ()  # every one it saved, in order
    container_wall_seconds: Optional[float] = None  # the host's: the container's whole life

    @classmethod
    def from_json(cls, data: Json) -> "Gem5Result":
        result = super().from_json(data)
        return dataclasses.replace(result, roi_named=isinstance(data, Mapping) and "roi_dump" in data)

    def to_json(self) -> dict[str, Json]:
        out = super().to_json()
        out.pop("roi_named", None)
        if self.roi_named:
            out["roi_dump"] = self.roi_dump
        return out


@dataclass(frozen=True)
class Roi(Record):
    """The region of interest's own figures, and which dump they are (1-based)."""

    dump: int
    figures: Figures = field(default_factory=dict)

    def to_json(self) -> dict[str, Json]:
        return {**dict(self.figures), "dump": self.dump}

    @classmethod
    def from_json(cls, data: Json) -> "Roi":
        if not isinstance(data, Mapping) or not isinstance(data.get("dump"), int):
            raise _wrong("Roi", data)
        return cls(data["dump"], _figures({k: v for k, v in data.items() if k != "dump"}, "Roi"))


@dataclass(frozen=True)
class Part(Record):
    """One stats dump of a run: what ended it, the CPU it ran on, its figures."""

    dump: int
    ended_by: str
    figures: Figures = field(default_factory=dict)
    core_insts: Figures = field(default_factory=dict)
    cpu: Optional[str] = None

    def to_json(self) -> dict[str, Json]:
        return {"dump": self.dump, "ended_by": self.ended_by, **({"cpu": self.cpu} if self.cpu else {}),
                **dict(self.figures), "core_insts": dict(self.core_insts)}

    @classmethod
    def from_json(cls, data: Json) -> "Part":
        if not isinstance(data, Mapping) or not isinstance(data.get("dump"), int):
            raise _wrong("Part", data)
        rest = {k: v for k, v in data.items() if k not in ("dump", "ended_by", "cpu", "core_insts")}
        return cls(data["dump"], str(data.get("ended_by", "end")), _figures(rest, "Part"),
                   _figures(data.get("core_insts", {}), "Part.core_insts"), data.get("cpu"))


def _figures(raw: Json, where: str) -> Figures:
    return _decode(Figures, {k: v for k, v in raw.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}, where)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Measured(Record):
    """What a gem5 run measured, from its stats.txt: the whole run, its stats
    dumps apart, the region of interest, and the switch (a switching run)."""

    stats: Figures = field(default_factory=dict)
    stats_dumps: int = 0
    roi: Optional[Roi] = None
    parts: tuple[Part, ...] = ()
    switch: Optional[Switch] = None


@dataclass(frozen=True)
class GuestRoom(Record):
    mem_available_kib: int = -1
    root_free_kib: int = -1


@dataclass(frozen=True)
class Timing(Record):
    """The boot's timing constants and what they were derived from."""

    mode: str  # derived | x86board
    lpj: int
    args: tuple[str, ...]
    clock_hz: int
    kernel_hz: Optional[int] = None
    lapic_timer_period: Optional[int] = None


@dataclass(frozen=True)
class Parent(Record):
    name: str
    directory: Path
    cpt: str
    identity: str


@dataclass(frozen=True)
class MadeBy(Record):
    """The restore that saved a child checkpoint: its script, payload and board
    (the board's fields beside the script in JSON, as the previous version wrote them)."""

    script: FileRef
    board: Board
    payload_sha256: Optional[str] = None
    member: Optional[Member] = None  # the suite member it ran

    def to_json(self) -> dict[str, Json]:
        return {"script": self.script.to_json(), "payload_sha256": self.payload_sha256, **self.board.to_json(),
                **({"member": self.member.to_json()} if self.member else {})}

    @classmethod
    def from_json(cls, data: Json) -> "MadeBy":
        if not isinstance(data, Mapping):
            raise _wrong("MadeBy", data)
        member = Member.from_json(data["member"]) if data.get("member") else None
        return cls(FileRef.from_json(data.get("script")), Board.from_json(data), data.get("payload_sha256"), member)


@dataclass(frozen=True)
class SampleAt(Record):
    """A sample checkpoint: where it sits in its ROI, and the run that measures it."""

    interval: int  # the interval's index among the ROI's
    cluster: int
    weight: float  # its cluster's share of the ROI's instructions
    start: int  # the interval's first instruction, counted from the ROI's start
    length: int  # instructions measured: the interval's own
    at: int  # where the checkpoint is: start less the warm-ups (instructions from the ROI's start)
    functional_warmup: int  # instructions on atomic with the caches, from the checkpoint
    detailed_warmup: int  # then on the detailed CPU before the measured part
    nearest: bool = False  # the interval nearest its cluster's centroid


@dataclass(frozen=True)
class CheckpointInfo(Record):
    """A checkpoint's manifest info: what a restore must match, and how it was made
    (a boot; or, for a child, the restore of its parent that saved it)."""
    PART: ClassVar[str] = "checkpoint"

    cpt: str  # the cpt.<tick> directory
    tick: int
    sim_seconds: float
    host_seconds: float
    gem5: Gem5Build
    kernel: FileRef
    image: ImageRef
    board: BootBoard
    boot: str
    kernel_args: str
    timing: Optional[Timing] = None
    gem5_kernel: Optional[str] = None  # the stripped kernel gem5 booted, beside the checkpoint
    phases: Figures = field(default_factory=dict)
    console_last_line: str = ""
    guest: Optional[GuestRoom] = None  # what the guest could hold: payloads are checked against it
    parent: Optional[Parent] = None  # a child's
    made_by: Optional[MadeBy] = None
    measured: Optional[Measured] = None  # a child's run up to it
    saved_at: str = "guest"  # guest: its hackback-checkpoint (or a boot's); workbegin: the ROI's start; insts: a sample's
    sample: Optional[SampleAt] = None  # a sample checkpoint's place and measure
    schema: int = 1

    @property
    def in_roi(self) -> bool:
        """Saved at a region of interest's start: a restore measures from its first instruction."""
        return self.saved_at == "workbegin"

    @property
    def resumes_inside(self) -> bool:
        """Saved inside the script that made it (at its ROI, or in it): a restore reads no new script."""
        return self.saved_at != "guest"

    def to_json(self) -> dict[str, Json]:
        out = super().to_json()
        out["schema"] = INFO_SCHEMA
        if self.saved_at == "guest":
            out.pop("saved_at")
        out.update(out.pop("measured", {}))  # the previous layout: stats, roi, parts at the top
        return out

    @classmethod
    def from_json(cls, data: Json) -> "CheckpointInfo":
        info = super().from_json(data)
        if "stats" in data:
            info = dataclasses.replace(info, measured=Measured.from_json(data))
        return info


@dataclass(frozen=True)
class CheckpointRef(Record):
    name: str
    directory: Path
    cpt: str


@dataclass(frozen=True)
class PayloadRef(Record):
    dirs: tuple[Path, ...]
    files: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class RunInfo(Record):
    """A run's manifest info: what it restored, ran and measured, and how it ended."""
    PART: ClassVar[str] = "run"

    checkpoint: CheckpointRef
    script: FileRef
    gem5: Gem5Build
    board: Board
    cause: str
    script_status: Optional[str]  # as the guest said it (ScriptStatus.word); see status
    sim_seconds: float
    host_seconds: float
    measured: Measured = field(default_factory=Measured)
    gem5_warnings: tuple[str, ...] = ()
    phases: Figures = field(default_factory=dict)
    container_wall_seconds: Optional[float] = None
    payload: Optional[PayloadRef] = None
    work_items: tuple[WorkItem, ...] = ()  # every m5 work item gem5 saw
    member: Optional[Member] = None  # a suite member's run
    verdict: Optional[Verdict] = None  # its own verdict
    schema: int = 1
    _nullable: ClassVar[frozenset[str]] = frozenset({"script_status"})

    @property
    def status(self) -> ScriptStatus:
        return ScriptStatus.parse(self.script_status)

    def to_json(self) -> dict[str, Json]:
        out = super().to_json()
        out["schema"] = INFO_SCHEMA
        out.update(out.pop("measured", {}))
        return out

    @classmethod
    def from_json(cls, data: Json) -> "RunInfo":
        info = super().from_json(data)
        return dataclasses.replace(info, measured=Measured.from_json(data))


@dataclass(frozen=True)
class ProfileInfo(Record):
    """A ROI profiled on atomic: gem5's basic-block vectors, and the ROI's length."""
    PART: ClassVar[str] = "profile"

    checkpoint: CheckpointRef
    base_interval: int
    roi_insts: int  # core 0's instructions from the checkpoint to the ROI's m5 workend
    profiled_insts: int  # in the intervals gem5 wrote (its last partial one it does not)
    intervals: int
    sim_seconds: float
    host_seconds: float


@dataclass(frozen=True)
class SamplingInfo(Record):
    """The choice (SimPoint's, from a profile) and the sample checkpoints taken for it."""
    PART: ClassVar[str] = "sampling"

    checkpoint: CheckpointRef
    interval: int  # instructions an interval (a multiple of the profile's base interval)
    intervals: int
    k: int
    weights: tuple[float, ...]  # per cluster: its share of the profiled instructions
    bics: tuple[float, ...]  # per k tried
    samples: tuple[SampleAt, ...]
    cpts: tuple[str, ...]  # per sample: its cpt.<tick> in the sampling's directory
    roi_insts: int
    rule: Mapping[str, typing.Union[int, float, str]]  # sampling.Rule's fields: numbers, and the allocation's name
    pass_host_seconds: float
    profile_host_seconds: float


@dataclass(frozen=True)
class EstimateInfo(Record):
    """A sampled estimate of one ROI on one CPU and caches, and the full detailed run's figures when there is one."""
    PART: ClassVar[str] = "estimate"

    sampling: str
    board: Board
    cpi: float
    half_width: float  # 95%: cpi +- half_width
    samples: int
    k: int
    detailed_insts: int  # warm-up and measured on the detailed CPU, every sample
    roi_insts: int
    sample_host_seconds: float  # summed over the samples' runs
    sample_wall_seconds: float  # the batch, as it ran (-j)
    one_off_host_seconds: float  # the profile and the checkpoint pass (every configuration reuses them)
    runs: tuple[str, ...]
    l1d_miss_rate: Optional[float] = None
    l2_miss_rate: Optional[float] = None
    full_cpi: Optional[float] = None  # the full detailed run of the same ROI
    full_host_seconds: Optional[float] = None
    full_run: Optional[str] = None
    full_l1d_miss_rate: Optional[float] = None
    full_l2_miss_rate: Optional[float] = None
    checkpoint: str = ""  # the checkpoint sampled ("": an estimate from before samplings were named by rule)

    @property
    def sampled(self) -> str:
        """The name of the checkpoint sampled (an older estimate's sampling was named after it alone)."""
        return self.checkpoint or self.sampling

    @property
    def error(self) -> Optional[float]:
        return (self.cpi - self.full_cpi) / self.full_cpi if self.full_cpi else None

    @property
    def covered(self) -> Optional[bool]:
        return abs(self.cpi - self.full_cpi) <= self.half_width if self.full_cpi else None


# ---------------------------------------------------------------- artifacts


@dataclass(frozen=True)
class BaseInfo(Record):
    """An image's base part (stages 1 and 2: the bootstrapped, provisioned disk): what its layer and checks need."""
    PART: ClassVar[str] = "base"

    partuuid: str
    fs_uuid: str
    disk_id: str
    accelerator: str = "tcg"
    packages: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Origin(Record):
    origin: str = ""


@dataclass(frozen=True)
class Brought(Record):
    path: str = ""


@dataclass(frozen=True)
class Gem5PartInfo(Record):
    """What an env's gem5 part says of how it was made: what refusing a silent rebuild compares."""
    PART: ClassVar[str] = "gem5"

    origin: str = "built"  # or "brought" (--gem5-binary)
    brought: Optional[Brought] = None
    gem5_source: Origin = field(default_factory=Origin)
    build_options: Optional[Mapping[str, Any]] = None


@dataclass(frozen=True)
class Gem5Image(Record):
    """An env's gem5 part's output: the env image and the gem5 binary inside it."""

    ref: str
    id: str = ""
    binary: str = ""

    @classmethod
    def in_env(cls, manifest: Manifest) -> Optional["Gem5Image"]:
        out = manifest.outputs_of("gem5").get("image")
        return cls.from_json(out) if out is not None else None


@dataclass(frozen=True)
class BaseImage(Record):
    ref: str
    id: str
    origin: str  # "pulled", "local", "bootstrapped from <mirror>"


@dataclass(frozen=True)
class ToolsImage(Record):
    ref: str
    id: str
    base: BaseImage
    versions: Mapping[str, str]


@dataclass(frozen=True)
class Gem5Source(Record):
    path: Path
    origin: str
    release: str  # e.g. "24.0.0.1"
    commit: Optional[str]
    dirty: Optional[bool]
    tree_sha256: str  # whole tree: decides whether gem5 must be rebuilt
    m5_sha256: str  # util/m5 + include: decides whether m5 must be rebuilt
    version_tags: tuple[str, ...]  # checkpoint version tags compiled into gem5
    _nullable: ClassVar[frozenset[str]] = frozenset({"commit", "dirty"})

    def identity(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "release": self.release,
            "commit": self.commit,
            "dirty": self.dirty,
            "tree_sha256": self.tree_sha256,
            "version_tags": list(self.version_tags),
        }


@dataclass(frozen=True)
class EnvArtifact:
    name: str
    directory: Path
    image: Optional[str]  # None until the gem5 part is built
    m5: Path
    manifest: Manifest
    tools: ToolsImage
    source: Gem5Source

    def gem5(self) -> Gem5Build:
        """The gem5 inside the env image, as its manifest recorded it."""
        part = self.manifest.part("gem5")
        if part is None or self.image is None:
            raise ArtifactError(f"env '{self.name}' has no gem5 build", "build it with `hackback env`")
        info, src = part["info"], part["info"]["gem5_source"]
        return Gem5Build(
            release=src["release"],
            # The binary's own tags (probed); envs made before probing have the source's.
            version_tags=tuple(sorted(info.get("version_tags") or src["version_tags"])),
            origin=info.get("origin", "built"), commit=src.get("commit"), tree_sha256=src["tree_sha256"],
            binary_sha256=info["gem5_binary_sha256"], env_image=self.image, binary=part["outputs"]["image"]["binary"])

    def to_json(self, saved_image: Path) -> dict[str, Json]:
        """What a cluster node needs to use this env (its manifest is read there from the shared work dir)."""
        return {"name": self.name, "directory": str(self.directory), "image": self.image, "m5": str(self.m5),
                "tools": self.tools.to_json(), "source": self.source.to_json(), "saved_image": str(saved_image)}

    @classmethod
    def from_json(cls, data: Json, manifest: Manifest) -> "EnvArtifact":
        return cls(str(data["name"]), Path(data["directory"]), data.get("image"), Path(data["m5"]), manifest,
                   ToolsImage.from_json(data["tools"]), Gem5Source.from_json(data["source"]))


@dataclass(frozen=True)
class ImageArtifact:
    name: str
    directory: Path
    disk: Path
    kernel: Path  # the image's own kernel and initrd, for trying it under QEMU
    initrd: Path
    partuuid: str  # root=PARTUUID=<this> finds the root partition without an initrd
    fs_uuid: str
    manifest: Manifest

    @classmethod
    def read(cls, directory: Path) -> "ImageArtifact":
        """A built image from its directory, without checking it is up to date."""
        manifest = Manifest.read(directory)
        if manifest is None or "image" not in manifest.parts:
            raise UsageError(f"{directory} holds no hackback image (no manifest)", "build one with `hackback image`")
        return cls.of(manifest.name, directory, manifest)

    @classmethod
    def of(cls, name: str, directory: Path, manifest: Manifest) -> "ImageArtifact":
        info = manifest.parts["image"]["info"]
        return cls(name, directory, directory / DISK, directory / "vmlinuz", directory / "initrd.img",
                   info["partuuid"], info["fs_uuid"], manifest)

    @property
    def disk_sha256(self) -> str:
        return str(self.manifest.parts["image"]["outputs"][DISK]["sha256"])


@dataclass(frozen=True)
class KernelArtifact:
    name: str
    directory: Path
    vmlinux: Path  # for gem5
    bzimage: Optional[Path]  # for QEMU; None for a prebuilt vmlinux
    config: Optional[Path]
    manifest: Manifest

    @classmethod
    def of(cls, name: str, directory: Path, manifest: Manifest) -> "KernelArtifact":
        outputs = manifest.parts["kernel"]["outputs"]
        return cls(name, directory, directory / "vmlinux",
                   directory / "bzImage" if "bzImage" in outputs else None,
                   directory / "config" if "config" in outputs else None, manifest)

    @property
    def vmlinux_sha256(self) -> str:
        return str(self.manifest.parts["kernel"]["outputs"]["vmlinux"]["sha256"])

    @property
    def patch_names(self) -> tuple[str, ...]:
        patches = self.manifest.parts["kernel"].get("info", {}).get("patches", [])
        return tuple(str(p.get("name", "")) for p in patches if isinstance(p, Mapping))


@dataclass(frozen=True)
class CheckpointArtifact:
    name: str
    directory: Path
    cpt: Path  # the cpt.<tick> directory
    manifest: Manifest
    info: CheckpointInfo

    def identity_digest(self) -> str:
        """What a run restored from: the checkpoint's inputs and its files."""
        rec = self.manifest.parts["checkpoint"]
        return digest_of({"inputs": rec["inputs_digest"], "outputs": rec["outputs"]})

    @property
    def outputs(self) -> Mapping[str, Json]:
        return MappingProxyType(self.manifest.parts["checkpoint"]["outputs"])

    def gem5_kernel(self, kernel: Path) -> Path:
        """The kernel file a restore hands gem5: the stripped copy the boot used, if it used one."""
        name = self.info.gem5_kernel
        return self.directory / name if name and "/" not in name else kernel

    def ref(self) -> CheckpointRef:
        return CheckpointRef(self.name, self.directory, self.cpt.name)

    @classmethod
    def read(cls, directory: Path) -> "CheckpointArtifact":
        """A checkpoint from its directory (the built one, or one named with --checkpoint)."""
        if not directory.is_dir():
            raise UsageError(f"checkpoint {directory} does not exist",
                             "give a directory under <work_dir>/checkpoints/, or take one with `hackback checkpoint`")
        manifest = Manifest.read(directory)
        if manifest is None or "checkpoint" not in manifest.parts:
            raise UsageError(f"{directory} holds no hackback checkpoint (no manifest)", "take one with `hackback checkpoint`")
        name = manifest.parts["checkpoint"].get("info", {}).get("cpt")
        if not isinstance(name, str) or not name.startswith("cpt.") or "/" in name:
            # A manifest that does not say which cpt.<tick> is the checkpoint (damaged, or hand-edited).
            raise ArtifactError(f"{directory / 'manifest.json'} names no checkpoint (its info has no cpt.<tick>: {name!r})",
                                "take the checkpoint again with `hackback checkpoint --force`")
        cpt = directory / name
        if not (cpt / "m5.cpt").is_file():
            raise ArtifactError(f"{cpt} is missing or incomplete", "take the checkpoint again with `hackback checkpoint --force`")
        try:
            info = CheckpointInfo.from_json(manifest.parts["checkpoint"]["info"])
        except ArtifactError as e:
            raise ArtifactError(f"{directory / 'manifest.json'}: {e.message}", e.hint) from None
        return cls(manifest.name, directory, cpt, manifest, info)

    @classmethod
    def of_sample(cls, parent: "CheckpointArtifact", directory: Path, info: SamplingInfo, i: int) -> "CheckpointArtifact":
        """Sample i of a sampling as a checkpoint any restore takes: its cpt in the
        sampling's directory, its system its parent's, its place and measure in its info."""
        manifest = Manifest.read(directory)
        assert manifest is not None
        cpt, at = info.cpts[i], info.samples[i]
        name = f"{parent.name}-s{i:02d}"
        child = dataclasses.replace(parent.info, cpt=cpt, tick=int(cpt.split(".")[1]), saved_at="insts", sample=at,
                                    parent=None, measured=None, gem5_kernel=GEM5_KERNEL if parent.info.gem5_kernel else None)
        own = Manifest("checkpoints", name)
        own.set_part("checkpoint", {"sampling": manifest.inputs_digest("sampling"), "sample": i},
                     {k: v for k, v in manifest.outputs_of("sampling").items() if k.startswith(f"{cpt}/") or k == GEM5_KERNEL},
                     child.to_json())
        return cls(name, directory, directory / cpt, own, CheckpointInfo.of(own))



@dataclass(frozen=True)
class SampleRef(Record):
    """Where sample `index` of a sampling is, by directories alone (what a Slurm task is given)."""

    parent: Path  # the checkpoint sampled from
    sampling: Path  # the sampling's directory, which holds the sample checkpoints
    index: int
    digest: str  # the sampling's inputs digest when the task was planned

    def checkpoint(self) -> CheckpointArtifact:
        manifest = Manifest.read(self.sampling)
        if manifest is None or "sampling" not in manifest.parts:
            raise ArtifactError(f"{self.sampling} holds no sampling", "sample again on the submitting machine: hackback sample")
        if manifest.inputs_digest("sampling") != self.digest:  # rebuilt since (a new profile, gem5 or run script): sample i is another sample
            raise ArtifactError(f"the sampling {self.sampling} was made again after this job was submitted",
                                "submit its samples again: hackback sample --on slurm")
        return CheckpointArtifact.of_sample(CheckpointArtifact.read(self.parent), self.sampling, SamplingInfo.of(manifest),
                                            self.index)


@dataclass(frozen=True)
class RunRecord:
    """A finished run as its directory holds it."""

    directory: Path
    manifest: Manifest
    info: RunInfo

    @classmethod
    def read(cls, directory: Path) -> Optional["RunRecord"]:
        """The run in `directory`, or None when it holds no finished run."""
        manifest = Manifest.read(directory)
        if manifest is None or "run" not in manifest.parts:
            return None
        try:
            return cls(directory, manifest, RunInfo.from_json(manifest.parts["run"]["info"]))
        except ArtifactError as e:
            raise ArtifactError(f"{directory / 'manifest.json'}: {e.message}", e.hint) from None

    @property
    def outputs(self) -> Mapping[str, Json]:
        return MappingProxyType(self.manifest.parts["run"]["outputs"])


def checkpoint_info(manifest: Manifest) -> Optional[CheckpointInfo]:
    """A checkpoint manifest's info (None for a manifest of another kind)."""
    part = manifest.part("checkpoint")
    return CheckpointInfo.from_json(part["info"]) if part is not None else None


_CAUSES = {"exit": "the guest's m5 exit"}


def _shown(values: Figures) -> str:
    shown = {"insts": "instructions={:.0f}", "ipc": "IPC={:.3f}", "l1d_miss_rate": "L1D miss rate={:.4f}",
             "l2_miss_rate": "L2 miss rate={:.4f}"}
    return ", ".join(fmt.format(float(values[k])) for k, fmt in shown.items() if k in values)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    directory: Path
    cause: str
    status: ScriptStatus
    sim_seconds: float
    host_seconds: float
    stats: Figures  # the whole run's figures (hackback.services.stats.figures)
    reused: bool = False
    roi: Optional[Roi] = None  # the region of interest's, if the script marked one
    verdict: Optional[Verdict] = None  # a suite member's own
    member: Optional[Member] = None

    @classmethod
    def of(cls, rid: str, run: RunRecord, reused: bool = False) -> "RunResult":
        info = run.info
        return cls(rid, run.directory, info.cause, info.status, info.sim_seconds, info.host_seconds,
                   info.measured.stats, reused, info.measured.roi, info.verdict, info.member)

    @property
    def ok(self) -> bool:
        """The script exited 0 (or ended the simulation itself with m5 exit)."""
        s = self.status
        return (s.end is ScriptEnd.EXITED and s.code == 0) or (s.end is ScriptEnd.UNREPORTED and self.cause in ("exit", "measured"))

    def summary(self) -> str:
        stats = _shown(self.stats)
        if self.roi is not None:
            stats = f"{stats}; region of interest: {_shown(self.roi.figures)}"
        s = self.status
        if self.verdict is not None and self.member is not None:
            said = f"{self.member.label} {'verified' if self.verdict.passed else 'FAILED'} ({self.verdict.said or self.verdict.why}); "
        else:
            said = ""
        return (f"run {self.run_id}{' (up to date, not rerun)' if self.reused else ''}: {said}"
                + (f"script exit status {s}; " if s.end is not ScriptEnd.UNREPORTED else
                   "the script ended the simulation itself (m5 exit); " if self.cause == "exit" else
                   "script exit status not reported; ")
                + f"ended by {_CAUSES.get(self.cause, self.cause)}; {self.sim_seconds:.4f} simulated s, {self.host_seconds:.1f} host s"
                + (f"; {stats}" if stats else "") + f"\n    {self.directory}")


def checkpoint_name_of(layout: Layout, ref: str) -> str:
    """A checkpoint's name from a NAME or a DIR (the report selects runs by name)."""
    path = Path(ref).expanduser()
    if ("/" in ref or not layout.artifact_dir("checkpoints", ref).is_dir()) and path.is_dir():
        return CheckpointArtifact.read(path).name
    return ref
