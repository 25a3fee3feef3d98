"""gem5's stats.txt, every dump, by name; and the figures a run reports from it:
the whole run's (its dumps added up) and the region of interest's (the dump
made at `m5 workend`, which holds the ROI alone: the run script resets the
stats at workbegin after dumping what came before)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

from ..base.errors import ArtifactError
from ..store.records import Gem5Result, Measured, Part, Roi

BEGIN = "---------- Begin Simulation Statistics ----------"
END = "---------- End Simulation Statistics   ----------"  # gem5's src/base/stats/text.cc spells it so
# Counts that add up across dumps (each holds what came since the last reset).
# gem5's simInsts/simOps do not reset (they count from the start of the run):
# a dump's instructions are its cores' committed ones.
COUNTS = ("simSeconds", "simTicks", "hostSeconds")
CUMULATIVE = ("simInsts", "simOps")
_CORE_INSTS = re.compile(r"^board\.processor\..*\.commitStats0\.numInsts$")
CORE = "board.processor.cores.core"  # one core; with several, gem5 numbers them (cores0.core, ...)
CACHES = {"l1d_miss_rate": "board.cache_hierarchy.l1d-cache-0.overallMissRate::total",
          "l2_miss_rate": "board.cache_hierarchy.l2-cache-0.overallMissRate::total"}
_LINE = re.compile(r"^(\S+)\s+(\S+)")


def dumps(path: Path) -> list[dict[str, str]]:
    """Every dump in stats.txt, each as {name: first value}; [] if there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for block in text.split(BEGIN)[1:]:
        values: dict[str, str] = {}
        for line in block.splitlines():
            m = _LINE.match(line)
            if m and not line.startswith("-"):
                values.setdefault(m.group(1), m.group(2))
        out.append(values)
    return out


def problem(path: Path, expected: Optional[int]) -> Optional[str]:
    """Why stats.txt cannot be trusted as the run's whole record (None: it can):
    missing, a dump begun and never ended (gem5 killed while writing), or not the
    number of dumps the run script announced (gem5's final one, made at exit, lost)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "gem5 wrote no stats.txt"
    except OSError as e:
        return f"stats.txt cannot be read ({e.strerror})"
    begun, ended = text.count(BEGIN), text.count(END)
    if begun != ended or (begun and not text.rstrip().endswith(END)):
        return f"stats.txt is cut short ({begun} dump(s) begun, {ended} complete)"
    if expected is not None and begun != expected:
        return f"stats.txt holds {begun} dump(s), the run script made {expected}"
    return None


def _num(values: dict[str, str], name: str) -> Optional[float]:
    try:
        return float(values[name])
    except (KeyError, ValueError):
        return None


def _cycles(values: dict[str, str]) -> Optional[float]:
    found = [v for k, v in values.items() if k.startswith("board.processor.") and k.endswith(".numCycles")]
    try:
        return max(float(v) for v in found) if found else None
    except ValueError:
        return None


def _insts(values: dict[str, str]) -> Optional[float]:
    found = [v for k, v in values.items() if _CORE_INSTS.match(k)]
    try:
        return sum(float(v) for v in found) if found else None
    except ValueError:
        return None


def figures(values: dict[str, str]) -> dict[str, float]:
    """The figures a run reports from one dump (missing stats are left out, never 0):
    insts (every core's committed instructions), numCycles (the busiest core's), IPC
    from those, cache miss rates, and gem5's own simInsts (counted from the run's start)."""
    out: dict[str, Optional[float]] = {k: _num(values, k) for k in (*COUNTS, *CUMULATIVE, "hostInstRate")}
    out["numCycles"] = cycles = _cycles(values)
    out["insts"] = insts = _insts(values)
    out["ipc"] = insts / cycles if insts is not None and cycles else None
    for key, name in CACHES.items():
        out[key] = _miss_rate(values, name)
        cache, level = name.rsplit(".overallMissRate", 1)[0], key.split("_")[0]
        # The counts too: a sampled estimate weighs misses and accesses, not rates.
        out[f"{level}_accesses"] = _num(values, f"{cache}.overallAccesses::total")
        out[f"{level}_misses"] = _num(values, f"{cache}.overallMisses::total") if out[f"{level}_accesses"] else None
        if out[f"{level}_accesses"] and out[f"{level}_misses"] is None:
            out[f"{level}_misses"] = 0.0  # gem5 prints no misses when there were none
    return {k: v for k, v in out.items() if v is not None}


def _miss_rate(values: dict[str, str], name: str) -> Optional[float]:
    """gem5's miss rate; gem5 prints none when there were no misses, so with
    accesses counted and no misses it is 0 (no accesses: missing)."""
    rate = _num(values, name)
    if rate is not None:
        return rate
    cache = name.rsplit(".overallMissRate", 1)[0]
    accesses = _num(values, f"{cache}.overallAccesses::total")
    if not accesses:
        return None
    return (_num(values, f"{cache}.overallMisses::total") or 0.0) / accesses


def region(values: dict[str, str]) -> dict[str, float]:
    """One dump's own figures: without gem5's counts from the run's start."""
    return {k: v for k, v in figures(values).items() if k not in (*CUMULATIVE, "hostInstRate")}


def whole_run(all_dumps: Sequence[dict[str, str]]) -> dict[str, float]:
    """The run from restore to exit: counts added over its dumps, IPC over the sum."""
    parts = [figures(d) for d in all_dumps]
    if not parts:
        return {}
    if len(parts) == 1:
        return parts[0]
    out: dict[str, float] = {}
    for key in (*COUNTS, "numCycles", "insts", "l1d_accesses", "l1d_misses", "l2_accesses", "l2_misses"):
        vals = [p[key] for p in parts if key in p]
        if vals:
            out[key] = sum(vals)
    for key in CUMULATIVE:  # the last dump's: they count from the start
        if key in parts[-1]:
            out[key] = parts[-1][key]
    if "insts" in out and out.get("numCycles"):
        out["ipc"] = out["insts"] / out["numCycles"]
    return out


def core_insts(values: dict[str, str]) -> dict[str, float]:
    """Each core's committed instructions in one dump, by its path under
    board.processor (cores.core; cores0.core, ...; switch.core after a switch)."""
    out = {}
    for k, v in values.items():
        if _CORE_INSTS.match(k):
            try:
                out[k[len("board.processor."):-len(".commitStats0.numInsts")]] = float(v)
            except ValueError:
                pass
    return out


def parts(all_dumps: Sequence[dict[str, str]], result: Gem5Result) -> tuple[Part, ...]:
    """Every dump's own figures, with what ended it (the work item the run script
    dumped at, or the run's end) and the CPU it ran on: a switching run's fast and
    measured parts side by side."""
    ended = {i.dump: i for i in result.work_items if i.dump is not None}
    out = []
    for n, values in enumerate(all_dumps, 1):
        item = ended.get(n)
        if item is not None:
            kind, cpu = item.kind, item.cpu
        else:
            kind, cpu = "end", (result.cpu_at_end or None) if n == len(all_dumps) else None
        out.append(Part(n, kind, region(values), core_insts(values), cpu))
    return tuple(out)


def roi_dump(result: Gem5Result) -> Optional[int]:
    """Which dump (0-based) holds the region of interest. The run script names it
    (roi_dump, 1-based: in a switching run the measured part, after the switch and
    its warm-up); a result without it (an older run script, a user's copy): the
    dump made at the first workend after a workbegin. None if the run had none."""
    if result.roi_named:
        n = result.roi_dump
        return n - 1 if n is not None and n > 0 else None
    begun = False
    for item in result.work_items:
        if item.kind == "workbegin":
            begun = True
        elif item.kind == "workend" and begun and item.dump is not None:
            return item.dump - 1
    return None


def measured(path: Path, result: Gem5Result) -> Measured:
    """What a run measured: the whole run's figures (all its stats dumps) and,
    when the script marked one (m5 workbegin/workend), the region of interest's
    apart; each dump's own when there are several; the switch."""
    every = dumps(path)
    roi = roi_dump(result)
    if roi is not None and roi >= len(every):
        raise ArtifactError(f"the run script names stats dump {roi + 1} as the region of interest; {path} has {len(every)}",
                            "see gem5.log; run it again")
    return Measured(stats=whole_run(every), stats_dumps=len(every),
                    roi=Roi(roi + 1, region(every[roi])) if roi is not None else None,
                    parts=parts(every, result) if len(every) > 1 else (), switch=result.switch)
