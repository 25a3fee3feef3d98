"""Layered configuration: shipped defaults < user file < environment < flags,
merged once into a frozen, validated object."""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import json
import os
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from . import elf, resources
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons only
    import tomli as tomllib

DEFAULTS_FILE = resources.package_file("defaults.toml")
USER_FILE_NAME = "hackback.toml"
ENV_PREFIX = "HACKBACK_"

BaseMode = Literal["auto", "pull", "bootstrap"]
Gem5Variant = Literal["opt", "fast", "debug"]
Gem5Linker = Literal["", "bfd", "gold", "lld", "mold"]


@dataclass(frozen=True)
class Gem5Config:
    version: str
    repo: str
    src: Optional[Path]
    binary: Optional[Path]  # a gem5.<variant> built elsewhere, packaged instead of building one
    clone_timeout: int
    variant: Gem5Variant
    build_options: Mapping[str, str]
    jobs: int
    linker: Gem5Linker


@dataclass(frozen=True)
class BaseConfig:
    mode: BaseMode
    image: str
    distribution: str
    suite: str
    mirror: str


Accel = Literal["auto", "kvm", "tcg"]


@dataclass(frozen=True)
class ImageConfig:
    distribution: str
    suite: str
    mirror: str
    packages: tuple[str, ...]
    size_mib: int
    accel: Accel
    stall_timeout: int
    memory_mib: int
    m5: Optional[Path]
    # The user layer, provisioned on a copy of the base after hackback's own
    # provisioning and before the lock-down (relative paths: from the config file).
    user_packages: tuple[str, ...]
    user_files: Mapping[str, Path]  # guest path = host file or directory
    user_scripts: tuple[Path, ...]


KernelSourceKind = Literal["debian", "tarball", "prebuilt"]


@dataclass(frozen=True)
class KernelConfig:
    source: KernelSourceKind
    package: str
    mirror: str
    suite: str
    url: str
    sha256: str
    base_config: str
    fragment: Optional[Path]


BootCpu = Literal["atomic", "timing", "kvm"]
BootMode = Literal["fast", "full"]
# derived: timing constants on the kernel command line from the board's clock and
#          the kernel's HZ (lpj, tsc_early_khz) and no timer check;
# x86board: gem5's X86Board default (lpj=7999923: a 2 GHz CPU at HZ=250), the baseline.
BootTiming = Literal["derived", "x86board"]
RestoreCpu = Literal["atomic", "timing", "o3"]
SwitchFrom = Literal["", "atomic", "timing"]  # the fast CPU a switching restore starts on ("": none)
RunsOn = Literal["local", "slurm"]
SaveAt = Literal["guest", "workbegin"]  # a child checkpoint at the guest's hackback-checkpoint, or at its first m5 workbegin
_SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")  # sbatch --time
Caches = Literal["none", "l1", "l1l2", "l1l2walk"]
Allocation = Literal["proportional", "equal"]  # samples a cluster: by its weight (2 at least), or the same to each
WITH_L2: tuple[str, ...] = ("l1l2", "l1l2walk")  # the presets that take an L2 size


@dataclass(frozen=True)
class CheckpointConfig:
    memory: str
    cores: int
    cpu: BootCpu
    boot: BootMode
    timing: BootTiming
    kernel_args: str
    kernel_symbols: bool
    max_sim_seconds: int
    max_wall_seconds: int


@dataclass(frozen=True)
class RestoreConfig:
    cpu: RestoreCpu
    caches: Caches
    l1d: str
    l1i: str
    l2: str
    jobs: int
    on: RunsOn
    payload: tuple[str, ...]
    payload_max_bytes: int
    save_checkpoint: str
    save_at: SaveAt
    switch_from: SwitchFrom
    switch_after_insts: int
    warmup_insts: int
    gem5_config: Optional[Path]
    gem5_args: tuple[str, ...]
    max_sim_seconds: int
    max_wall_seconds: int


@dataclass(frozen=True)
class SuiteSource:
    source: str  # a tarball or a tree (a path), or a URL (with sha256); "": none given
    sha256: str  # the tarball's (a URL needs it; a local tarball is checked against it when given)


SuiteName = Literal["", "npb", "gapbs"]


@dataclass(frozen=True)
class SuiteConfig:
    name: SuiteName
    members: tuple[str, ...]  # () : the suite's usual set
    input: str  # NPB's class, GAPBS's graph; "": the suite's default (S, g10)
    threads: int  # OpenMP threads; 0: the checkpoint's cores
    trials: int  # GAPBS trials (-n)
    native_counts: bool  # count each member's ROI instructions natively under callgrind (the sanity figure)
    npb: SuiteSource
    gapbs: SuiteSource


@dataclass(frozen=True)
class SampleConfig:
    base_interval: int
    intervals: int
    max_k: int
    per_cluster: int
    allocation: Allocation
    detailed_warmup_percent: int
    functional_warmup: int
    functional_intervals: int
    seed: int
    reference: bool


@dataclass(frozen=True)
class SlurmConfig:
    partition: str
    time: str
    cpus_per_task: int
    mem: str
    array_throttle: int
    stop_grace_seconds: int
    extra_args: tuple[str, ...]
    python: str
    wait: bool
    rerun_failed: bool
    poll_seconds: int


@dataclass(frozen=True)
class Config:
    name: str
    work_dir: Path
    gem5: Gem5Config
    base: BaseConfig
    image: ImageConfig
    kernel: KernelConfig
    checkpoint: CheckpointConfig
    restore: RestoreConfig
    suite: SuiteConfig
    sample: SampleConfig
    slurm: SlurmConfig

    @property
    def jobs(self) -> int:
        return self.gem5.jobs or (os.cpu_count() or 1)


# A raw layer is a nested dict as TOML gives it, plus where it came from and
# the directory its relative paths are taken from.
@dataclass
class _Layer:
    origin: str
    data: dict[str, Any]
    base_dir: Path


def _schema(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _known_keys(cls: type = Config, prefix: str = "") -> list[str]:
    keys = []
    for key, tp in _schema(cls).items():
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            keys += _known_keys(tp, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def choices(key: str) -> tuple[str, ...]:
    """The values a Literal-typed key takes (() for any other key)."""
    cls: Any = Config
    *sections, leaf = key.split(".")
    for section in sections:
        cls = _schema(cls)[section]
    tp = _schema(cls).get(leaf)
    return tuple(typing.get_args(tp)) if typing.get_origin(tp) is Literal else ()


def _unknown(key: str, origin: str) -> ConfigError:
    close = difflib.get_close_matches(key, _known_keys(), n=1)
    hint = f"did you mean '{close[0]}'?" if close else "see hackback/defaults.toml for the known keys"
    return ConfigError(f"unknown config key '{key}' in {origin}", hint)


def _flatten(data: Mapping[str, Any], origin: str, cls: type = Config, prefix: str = "") -> dict[str, Any]:
    """Nested TOML dict -> {'gem5.version': value}, rejecting unknown keys."""
    schema = _schema(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = prefix + key
        if key not in schema:
            raise _unknown(dotted, origin)
        tp = schema[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"'{dotted}' in {origin} must be a table", f"write it as [{dotted}]")
            out.update(_flatten(value, origin, tp, dotted + "."))  # type: ignore[arg-type]
        else:
            out[dotted] = value
    return out


_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _coerce(key: str, tp: Any, value: Any, layer: _Layer) -> Any:
    """Check one value against its declared type; strings from the environment are converted."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    where = f"'{key}' in {layer.origin}"
    if origin is typing.Union and type(None) in args:  # Optional[Path]: "" means unset
        if value in ("", None):
            return None
        return _coerce(key, args[0], value, layer)
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where} must be a path string, got {value!r}")
        if isinstance(value, str) and not value.strip():
            # "" would silently mean the current directory (where `clean` deletes).
            raise ConfigError(f"{where} is empty", "name a directory, or leave it unset for the default")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (layer.base_dir / path).resolve()
    if origin is Literal:
        if value not in args:
            choices = ", ".join('""' if a == "" else str(a) for a in args)
            raise ConfigError(f"{where} is {value!r}", f"choose one of: {choices}")
        return value
    if tp is bool:
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(f"{where} must be a whole number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where} must be a whole number >= 0, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if origin in (tuple, collections.abc.Mapping):
        return _coerce_collection(key, tp, value, layer)
    raise AssertionError(f"no coercion for {tp}")  # a schema bug, not user input


def _coerce_collection(key: str, tp: Any, value: Any, layer: _Layer) -> Any:
    """tuple[str|Path, ...]: a TOML array, or comma-separated from the environment;
    Mapping[str, str|Path]: a table. Paths are relative to the file that names them."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    where = f"'{key}' in {layer.origin}"
    if origin is collections.abc.Mapping:
        table = _coerce_map(where, value)
        if args and args[1] is Path:
            return _FrozenMap({k: _coerce(f"{key}.{k}", Path, v, layer) for k, v in table.items()})
        return table
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, Path)) for v in value):
        raise ConfigError(f"{where} must be a list of strings, got {value!r}")
    if args and args[0] is Path:
        return tuple(_coerce(key, Path, v, layer) for v in value)
    return tuple(str(v) for v in value)


def _coerce_map(where: str, value: Any) -> "_FrozenMap":
    """A table of strings: from TOML as it is, from the environment as KEY=VALUE,KEY=VALUE."""
    if isinstance(value, str):
        pairs = [p for p in value.split(",") if p.strip()]
        if not all("=" in p for p in pairs):
            raise ConfigError(f"{where} must look like KEY=VALUE,KEY=VALUE, got {value!r}")
        value = dict(p.strip().split("=", 1) for p in pairs)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of KEY = \"VALUE\"")
    for k, v in value.items():
        if not isinstance(v, str):
            # A TOML false or 1 would be str()'d into "False" or "1", which Kconfig does not mean.
            raise ConfigError(f"{where}: {k} = {json.dumps(v, default=str)} is not a string",
                              f'quote it as Kconfig takes it, e.g. {k} = "n"')
    return _FrozenMap({str(k): v for k, v in value.items()})


class _FrozenMap(Mapping[str, Any]):
    """A read-only, hashable mapping so Config stays frozen all the way down."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(sorted(data.items()))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> typing.Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._data) == dict(other)

    def __repr__(self) -> str:
        return repr(self._data)


def _read_toml(path: Path, origin: str) -> dict[str, Any]:
    hint = "fix HACKBACK_CONFIG or --config"
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = tomllib.load(f)
            return data
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", hint) from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory", f"{hint}: name a TOML file") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read ({e.strerror})", hint) from None
    except UnicodeDecodeError as e:
        # TOML is UTF-8 by definition; tomllib reports a bad byte as a bare codec error.
        raise ConfigError(f"{origin} is not UTF-8 text (byte {e.start}: {e.reason})", "save it as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{origin} is not valid TOML: {e}") from None


# HACKBACK_* variables that are switches of their own, not config keys: the
# config layer leaves them alone (what each does, and who reads it).
NOT_CONFIG = {
    "CONFIG": "the user config file (instead of ./hackback.toml)",
    "PLAIN": "plain progress lines instead of bars on a terminal (hackback.base.log)",
    "NODE_CACHE": "a Slurm node's own hash-cache directory (hackback.steps.cluster; default /var/tmp/hackback-node-<uid>)",
    "NO_REAPER": "1: no guard process that removes a killed task's containers (hackback.base.reaper; for debugging)",
    # The guest's own, read by hackback-guest and the rcS when the tests run them on a host.
    "STATE": "guest side: the rcS state directory (tests only)",
    "GUEST": "guest side: the hackback-guest binary the rcS runs (tests only)",
    "M5": "guest side: an m5 command instead of the m5 MMIO page (tests only)",
    "CMDLINE": "guest side: a file read instead of /proc/cmdline (tests only)",
    "PAYLOAD_DIR": "guest side: where the payload is unpacked (tests only)",
    "RESULTS_DIR": "guest side: what is sent back as results (tests only)",
    "CONSOLE": "guest side: the console the .bashrc hook runs on (tests only)",
}


def _env_layer(environ: Mapping[str, str], cwd: Path) -> _Layer:
    data: dict[str, Any] = {}
    wanted = {ENV_PREFIX + k.replace(".", "_").upper(): k for k in _known_keys()}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or var[len(ENV_PREFIX):] in NOT_CONFIG:
            continue
        if var in wanted:
            data[wanted[var]] = value
        elif var.startswith(ENV_PREFIX + "TEST_"):
            continue  # test-suite switches, not config
        else:
            raise _unknown(var[len(ENV_PREFIX):].lower().replace("_", ".", 1), "the environment")
    return _Layer("the environment", data, cwd)


def load(
    flags: Optional[Mapping[str, Any]] = None,
    user_file: Optional[Path] = None,
    environ: Optional[Mapping[str, str]] = None,
    cwd: Optional[Path] = None,
) -> Config:
    """Merge every layer into one validated Config.

    flags: dotted keys ('gem5.src') to values; a value of None means "not given".
    """
    environ = os.environ if environ is None else environ
    cwd = (cwd or Path.cwd()).resolve()
    layers = [_Layer(str(DEFAULTS_FILE), _flatten(_read_toml(DEFAULTS_FILE, "defaults"), "defaults"), cwd)]
    if user_file is None and environ.get(ENV_PREFIX + "CONFIG"):
        user_file = Path(environ[ENV_PREFIX + "CONFIG"])
    if user_file is None and (cwd / USER_FILE_NAME).is_file():
        user_file = cwd / USER_FILE_NAME
    if user_file is not None:
        user_file = (cwd / user_file).resolve()
        layers.append(_Layer(str(user_file), _flatten(_read_toml(user_file, str(user_file)), str(user_file)), user_file.parent))
    layers.append(_env_layer(environ, cwd))
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    for key in given:
        if key not in _known_keys():
            raise _unknown(key, "the task flags")
    layers.append(_Layer("the task flags", given, cwd))

    merged: dict[str, tuple[Any, _Layer]] = {}
    for layer in layers:
        for key, value in layer.data.items():
            merged[key] = (value, layer)
    cfg: Config = _build(Config, merged, "")
    return cfg


def _build(cls: type, merged: Mapping[str, tuple[Any, _Layer]], prefix: str) -> Any:
    kwargs: dict[str, Any] = {}
    for key, tp in _schema(cls).items():
        dotted = prefix + key
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, merged, dotted + ".")  # type: ignore[arg-type]
        else:
            if dotted not in merged:
                raise ConfigError(f"'{dotted}' has no value", "the shipped defaults.toml is incomplete")
            value, layer = merged[dotted]
            kwargs[key] = _coerce(dotted, tp, value, layer)
    if cls is Config:
        _validate(kwargs)
    return cls(**kwargs)


def _validate(kw: Mapping[str, Any]) -> None:
    name = kw["name"]
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ConfigError(f"name {name!r} is not usable as a directory name", "use letters, digits, '-', '_' and '.'")
    image = kw["image"]
    if image.size_mib < 1024:
        raise ConfigError(f"image.size_mib = {image.size_mib} is too small for a Debian system", "use at least 1024 (MiB)")
    if image.stall_timeout < 30:
        raise ConfigError(f"image.stall_timeout = {image.stall_timeout}s would fail healthy builds", "use at least 30")
    cpt = kw["checkpoint"]
    mem = memory_bytes(cpt.memory)
    if mem is None or not (256 << 20) <= mem <= (3 << 30):
        raise ConfigError(f"checkpoint.memory = {cpt.memory!r} is not a size gem5's X86Board takes",
                          "give 256MiB to 3GiB, e.g. \"2GiB\" (X86Board caps memory at 3 GiB)")
    if cpt.cores < 1:
        raise ConfigError("checkpoint.cores must be at least 1")
    res = kw["restore"]
    _validate_caches(res)
    if res.jobs < 1:
        raise ConfigError("restore.jobs must be at least 1")
    _validate_switch(res)
    _validate_gem5_config(res)
    _validate_slurm(kw["slurm"], res)
    child = res.save_checkpoint
    if child and (not all(c.isalnum() or c in "-_." for c in child) or child.startswith(".")):
        raise ConfigError(f"restore.save_checkpoint {child!r} is not usable as a checkpoint name", "use letters, digits, '-', '_' and '.'")
    _validate_build_options(kw["gem5"].build_options)
    _validate_sources(kw)
    _validate_suite(kw["suite"])
    _validate_sample(kw["sample"])
    _validate_m5(image.m5)
    _validate_user_layer(image)


def _validate_suite(suite: SuiteConfig) -> None:
    if suite.trials < 1:
        raise ConfigError("suite.trials must be at least 1", "GAPBS runs this many trials of its kernel (-n)")
    for name in ("npb", "gapbs"):
        src: SuiteSource = getattr(suite, name)
        if src.sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", src.sha256):
            raise ConfigError(f"suite.{name}.sha256 = {src.sha256!r} is not a sha256 digest",
                              "give the 64 hex digits the publisher lists, or \"\"")
        if "://" in src.source and not src.sha256:
            raise ConfigError(f"suite.{name}.source is a URL ({src.source}) without suite.{name}.sha256",
                              "a download is checked against its digest: give suite.{name}.sha256 (--sha256)")


def _validate_sample(sample: SampleConfig) -> None:
    for key in ("base_interval", "intervals", "max_k", "per_cluster"):
        if getattr(sample, key) < 1:
            raise ConfigError(f"sample.{key} must be at least 1", "see hackback/defaults.toml [sample]")
    if sample.per_cluster < 2:
        raise ConfigError("sample.per_cluster must be at least 2",
                          "one sample a cluster gives no spread, and so no error bar for the estimate")
    if sample.detailed_warmup_percent > 1000:
        raise ConfigError(f"sample.detailed_warmup_percent = {sample.detailed_warmup_percent} is over 10 intervals",
                          "give a share of an interval in percent, e.g. 20")


def _validate_gem5_config(res: RestoreConfig) -> None:
    if res.gem5_config is not None:
        if not res.gem5_config.is_file():
            raise ConfigError(f"restore.gem5_config {res.gem5_config} does not exist",
                              "give your copy of configs/hackback_fs.py, or leave it unset for the shipped one")
        if res.gem5_config.suffix != ".py":
            raise ConfigError(f"restore.gem5_config {res.gem5_config} is not a Python file", "gem5 runs a .py config")
    for arg in res.gem5_args:
        name = arg.split("=")[0]
        ours = ("--outdir", "--redirect-stdout", "--redirect-stderr", "--stats-file")
        # gem5 parses with optparse: a long option may be abbreviated, a short one glued to its value.
        if arg[:2] in ("-d", "-r", "-e") or (name.startswith("--") and len(name) > 3 and any(o.startswith(name) for o in ours)):
            raise ConfigError(f"restore.gem5_args {arg!r}: hackback sets gem5's output directory and streams",
                              "leave it out; the run directory is gem5's --outdir (a --debug-file lands there)")
        if not arg.startswith("-"):
            raise ConfigError(f"restore.gem5_args {arg!r} is not a gem5 option",
                              "give gem5's own options, each whole: --gem5-args=--debug-flags=Exec")
        if name == "--debug-file" and ("/" in arg.split("=", 1)[-1] or "=" not in arg):
            raise ConfigError(f"restore.gem5_args {arg!r}: the trace goes into the run directory",
                              "give a plain file name, whole: --gem5-args=--debug-file=trace.out")


def _validate_switch(res: RestoreConfig) -> None:
    detail = ("atomic", "timing", "o3")  # fast to detailed
    if res.switch_from and detail.index(res.switch_from) >= detail.index(res.cpu):
        raise ConfigError(f"restore.switch_from = {res.switch_from!r} is not a faster CPU than restore.cpu = {res.cpu!r}",
                          "switch from a faster CPU to the measured one: atomic to timing or o3, timing to o3")
    for key in ("switch_after_insts", "warmup_insts"):
        if getattr(res, key) < 0:
            raise ConfigError(f"restore.{key} = {getattr(res, key)} is negative", "give a number of instructions, or 0")
        if getattr(res, key) and not res.switch_from:
            raise ConfigError(f"restore.{key} is set but restore.switch_from is not",
                              "set restore.switch_from (e.g. \"atomic\", or --switch-from atomic)")


def _validate_slurm(sl: SlurmConfig, res: RestoreConfig) -> None:
    try:
        limit = slurm_time_seconds(sl.time)
    except ValueError:
        raise ConfigError(f"slurm.time = {sl.time!r} is not a time sbatch takes",
                          "write it as MM, HH:MM:SS or D-HH:MM:SS, e.g. \"04:00:00\"") from None
    if res.on == "slurm" and limit and sl.stop_grace_seconds >= limit:  # 0: no limit
        raise ConfigError(f"slurm.stop_grace_seconds = {sl.stop_grace_seconds} leaves no time of slurm.time = {sl.time!r}",
                          "give each task more time, or a shorter grace")
    if sl.cpus_per_task < 1 or sl.poll_seconds < 1:
        raise ConfigError("slurm.cpus_per_task and slurm.poll_seconds must be at least 1")


def slurm_time_seconds(text: str) -> int:
    """sbatch --time as seconds: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""
    m = _SLURM_TIME.match(text.strip())
    if not m:
        raise ValueError(text)
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is None:
        parts = [p for p in (a, b, c) if p is not None]
        if len(parts) == 1:
            return parts[0] * 60
        if len(parts) == 2:
            return parts[0] * 60 + parts[1]
        return parts[0] * 3600 + parts[1] * 60 + parts[2]
    return days * 86400 + (a or 0) * 3600 + (b or 0) * 60 + (c or 0)


def as_flags(cfg: Config) -> dict[str, Any]:
    """The config as dotted keys with plain values (paths as strings, tuples as
    lists): fed back to load(flags=...), it gives the same config anywhere."""
    out: dict[str, Any] = {}

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            elif value is not None:
                out[prefix + f.name] = _plain(value)

    walk(cfg, "")
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _validate_user_layer(img: ImageConfig) -> None:
    """The user layer's files exist, when the config is read (before anything is built)."""
    for script in img.user_scripts:
        if not script.is_file():
            raise ConfigError(f"image.user_scripts: {script} does not exist", "fix the path (relative to the config file)")
    for guest, host in img.user_files.items():
        if not guest.startswith("/") or guest.rstrip("/") in ("", "/tmp/hackback"):
            raise ConfigError(f"image.user_files: {guest!r} is not an absolute guest path", 'write it as "/opt/data" = "host/path"')
        if not host.exists():
            raise ConfigError(f"image.user_files: {host} (for {guest}) does not exist", "fix the path (relative to the config file)")


def _validate_caches(res: RestoreConfig) -> None:
    # gem5's classic caches need a power-of-two size; below 1KiB no line set is left.
    for key in ("l1d", "l1i", "l2"):
        size = memory_bytes(getattr(res, key))
        if size is None:
            raise ConfigError(f"restore.{key} = {getattr(res, key)!r} is not a size", "write it like \"32KiB\"")
        if size < 1024 or size & (size - 1):
            raise ConfigError(f"restore.{key} = {getattr(res, key)!r} is not a cache size gem5 takes",
                              "give a power of two of at least 1KiB, e.g. \"32KiB\" or \"512KiB\"")


_BUILD_OPTION_VALUE = re.compile(r"[A-Za-z0-9_.+-]*")  # fullmatch: no trailing newline either


def _validate_build_options(options: Mapping[str, str]) -> None:
    for key, value in options.items():
        if not key.replace("_", "").isalnum() or not key.isupper():
            raise ConfigError(f"gem5.build_options key {key!r} is not a Kconfig name", "use names like RUBY or USE_SYSTEMC")
        if not _BUILD_OPTION_VALUE.fullmatch(value):
            # The values reach a shell command (scons setconfig): plain words only.
            raise ConfigError(f"gem5.build_options {key} = {value!r} is not a plain Kconfig value",
                              "use letters, digits and . _ + - (e.g. \"y\", \"n\", \"X86\")")


def _validate_sources(kw: Mapping[str, Any]) -> None:
    for section in ("base", "image"):
        if not kw[section].suite.strip():
            raise ConfigError(f"{section}.suite is empty", "name a Debian or Ubuntu suite, e.g. \"bookworm\"")
    digest = kw["kernel"].sha256
    if digest and not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
        raise ConfigError(f"kernel.sha256 = {digest!r} is not a sha256 digest", "give the 64 hex digits the publisher lists, or \"\"")


def _validate_m5(m5: Optional[Path]) -> None:
    """A user's m5 is checked here, before any step builds: it goes into the image as it is."""
    if m5 is None:
        return
    problem = elf.static_x86_64_problem(m5)
    if problem:
        raise ConfigError(f"the m5 given by --m5 / image.m5, {m5}, {problem}",
                          "give the static x86-64 m5 that `hackback env` builds (<work_dir>/env/<name>/m5), or leave it unset")


_UNITS = {"": 1, "B": 1, "KIB": 1 << 10, "KB": 1 << 10, "MIB": 1 << 20, "MB": 1 << 20, "GIB": 1 << 30, "GB": 1 << 30}


def memory_bytes(text: str) -> Optional[int]:
    """'2GiB' -> bytes, as gem5 reads sizes (kB/MB/GB are binary there too); None if unreadable."""
    t = text.strip().upper()
    digits = t.rstrip("KMGIB")
    unit = t[len(digits):]
    if not digits.isdigit() or unit not in _UNITS:
        return None
    return int(digits) * _UNITS[unit]
