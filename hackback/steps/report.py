"""`hackback report`: the runs in a work dir as one table (terminal, CSV,
Markdown) and plots (PNG).

Each run's figures are read again from its own stats.txt, every dump by name
(hackback.services.stats): the whole run's (its dumps added up) and, where the run has
one, its region of interest's (the dump its manifest names). A stat gem5 did
not print is missing in the table (empty in the CSV, "-" on screen), never 0.
Which run is which (checkpoint, script, CPU, caches, payload) comes from its
manifest. rich (the table) and matplotlib (the plots) are imported only here,
when a report is asked for, so the other tasks start as fast as before."""
from __future__ import annotations

import csv
import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..base import log
from ..services import stats
from ..store.layout import Layout, make_dir
from ..store.manifest import Manifest
from ..base.errors import HackbackError, UsageError
from ..protocol.context import StepContext
from ..store.records import CPU_JOIN, BenchInfo, EstimateInfo, RunInfo, RunRecord, checkpoint_name_of
from ..protocol.step import Request, Step

# (column, what it is); the figures' columns are read from stats.txt.
COLUMNS = (
    ("run", "run id"), ("checkpoint", "checkpoint restored"), ("script", "script"), ("cpu", "CPU (fast one first when switching)"),
    ("caches", "caches"), ("l1d", "L1D size"), ("l2", "L2 size"), ("payload", "payload directories"), ("status", "script exit status"),
    ("sim_seconds", "simulated s"), ("host_seconds", "host s"), ("insts", "instructions"), ("ipc", "IPC"),
    ("l1d_miss_rate", "L1D miss rate (last dump with one)"), ("l2_miss_rate", "L2 miss rate"),
    ("roi_insts", "ROI instructions"), ("roi_ipc", "ROI IPC"), ("roi_l1d_miss_rate", "ROI L1D miss rate"),
    ("roi_l2_miss_rate", "ROI L2 miss rate"), ("roi_sim_seconds", "ROI simulated s"),
    ("benchmark", "suite member (hackback suite)"), ("input", "its class or graph"), ("threads", "its OpenMP threads"),
    ("verification", "its own verdict: PASS or FAIL, and what it printed"),
    ("native_roi_insts", "ROI instructions of the same binary natively (callgrind)"),
)
SWEEPABLE = ("l1d", "l2", "payload")
SIZES = ("l1d", "l2")  # numeric: on a numeric axis, in their own order
# The sampled estimates (hackback sample): one row each, beside the full run it was judged by.
ESTIMATE_COLUMNS = ("checkpoint", "sampling", "cpu", "caches", "l1d", "l2", "k", "samples", "detailed_share", "cpi", "ipc", "ci95_relative",
                    "full_cpi", "error", "covered", "l2_miss_rate", "full_l2_miss_rate", "sample_host_seconds",
                    "full_host_seconds", "full_run", "estimate")
# The suite view: one row per benchmark x CPU x caches x input.
SUITE_COLUMNS = ("benchmark", "input", "threads", "cpu", "caches", "l1d", "l2", "verification", "roi_insts", "native_roi_insts",
                 "roi_ipc", "roi_l1d_miss_rate", "roi_l2_miss_rate", "sim_seconds", "host_seconds", "run")


@dataclass(frozen=True)
class Selection:
    checkpoint: Optional[str] = None
    script: Optional[str] = None  # a script's file name or stem
    cpu: Optional[str] = None


@dataclass(frozen=True)
class Report:
    rows: list[dict[str, Any]]
    directory: Path
    files: list[Path]


def report(layout: Layout, select: Selection, out: Optional[Path] = None, dry: bool = False) -> Report:
    every = [r for r in (_row(d) for d in sorted((layout.work_dir / "runs").glob("*/"))) if r is not None]
    for what, asked in (("checkpoint", select.checkpoint), ("cpu", select.cpu)):
        known = sorted({part for r in every for part in str(r[what]).split(CPU_JOIN)})
        if asked is not None and asked not in known:
            raise UsageError(f"no run in {layout.work_dir / 'runs'} has {what} {asked!r}", f"known: {', '.join(known) or 'none'}")
    rows = sorted((r for r in every if _wanted(r, select)), key=lambda r: (str(r["checkpoint"]), r["script"], str(r["cpu"])))
    if not rows and dry:
        log.info(f"plan: nothing to report: no runs in {layout.work_dir / 'runs'} match")
        return Report([], out or layout.work_dir / "reports", [])
    if not rows:
        raise UsageError(f"no runs in {layout.work_dir / 'runs'} match", "run some with `hackback restore`, or select fewer")
    directory = out or layout.work_dir / "reports" / time.strftime("%Y%m%d-%H%M%S")
    if dry:  # a dry run writes nothing: it says what it would
        log.info(f"plan: would write runs.csv, runs.md and plots of {len(rows)} run(s) into {directory}")
        return Report(rows, directory, [])
    make_dir(directory, "the report")
    files = [_write_csv(rows, directory / "runs.csv"), _write_markdown(rows, directory / "runs.md")]
    members = [r for r in rows if r["benchmark"]]
    if members:
        files += [_write_suite(members, directory / "suite.csv", "csv"), _write_suite(members, directory / "suite.md", "md")]
    estimates = _estimates(layout, select)
    if estimates:
        files += [_write_table(estimates, ESTIMATE_COLUMNS, directory / "estimates.csv", "csv", ESTIMATES_NOTE),
                  _write_table(estimates, ESTIMATE_COLUMNS, directory / "estimates.md", "md", ESTIMATES_NOTE)]
    files += _plots(rows, directory)
    _show(rows)
    for f in files:
        log.info(f"wrote {f}")
    return Report(rows, directory, files)


def _row(run_dir: Path) -> Optional[dict[str, Any]]:
    try:
        run = RunRecord.read(run_dir)
    except HackbackError as e:
        log.warn(f"{run_dir.name} left out of the report: {e.message}")
        return None
    if run is None:
        return None
    info, board = run.info, run.info.board
    every = stats.dumps(run_dir / "stats.txt")
    whole = stats.whole_run(every)
    per_dump = [stats.figures(values) for values in every]  # once, for the rates below
    roi_n = info.measured.roi.dump if info.measured.roi else None
    roi = stats.region(every[roi_n - 1]) if roi_n is not None and 0 < roi_n <= len(every) else {}
    row: dict[str, Any] = {
        "run": run_dir.name, "checkpoint": info.checkpoint.name, "script": info.script.path.name,
        "cpu": board.cpu_label, "caches": board.caches, "l1d": board.l1d or None, "l2": board.l2 or None,
        "payload": " ".join(d.name for d in info.payload.dirs) if info.payload and info.payload.dirs else None,
        "status": info.script_status, "sim_seconds": info.sim_seconds, "host_seconds": info.host_seconds,
        "insts": whole.get("insts"), "ipc": whole.get("ipc"),
        "l1d_miss_rate": _last(per_dump, "l1d_miss_rate"), "l2_miss_rate": _last(per_dump, "l2_miss_rate"),
        **{f"roi_{k}": roi.get(k) for k in ("insts", "ipc", "l1d_miss_rate", "l2_miss_rate")},
        "roi_sim_seconds": roi.get("simSeconds"),
        **_member(info, run_dir.parent.parent),
    }
    return row


def _member(info: RunInfo, work: Path) -> dict[str, Any]:
    """A suite member's columns: what it is, its verdict, and the native ROI count of its binary."""
    m, v = info.member, info.verdict
    if m is None:
        return {"benchmark": None, "input": None, "threads": None, "verification": None, "native_roi_insts": None}
    return {"benchmark": f"{m.suite} {m.member}", "input": m.input, "threads": m.threads,
            "verification": f"{'PASS' if v.passed else 'FAIL'}: {v.said or v.why}" if v else None,
            "native_roi_insts": _native(work / "benchmarks" / f"{m.suite}-{m.member}-{m.input}-{m.threads}t")}


def _native(directory: Path) -> Optional[int]:
    """The native ROI count of the binary a run ran (its benchmarks/ artifact), if it is still there."""
    try:
        manifest = Manifest.read(directory)
    except HackbackError:
        return None
    if manifest is None or not manifest.has("benchmark"):
        return None
    try:
        return BenchInfo.of(manifest).native_roi_insts
    except HackbackError:
        return None


def _last(per_dump: Sequence[dict[str, Any]], key: str) -> Optional[float]:
    """A rate does not add up over dumps: the last dump's that has it (the run's end)."""
    for figures in reversed(per_dump):
        v = figures.get(key)
        if v is not None:
            return float(v)
    return None


def _wanted(row: dict[str, Any], s: Selection) -> bool:
    return ((s.checkpoint is None or row["checkpoint"] == s.checkpoint)
            and (s.script is None or s.script in (row["script"], Path(row["script"]).stem))
            and (s.cpu is None or s.cpu in str(row["cpu"]).split(CPU_JOIN)))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    return _write_table(rows, [c for c, _ in COLUMNS], path, "csv", "")


def _write_suite(rows: Sequence[dict[str, Any]], path: Path, form: str) -> Path:
    """The suite view: one row per benchmark x CPU x caches x input (its latest run), verdict and ROI figures."""
    latest = {tuple(str(r[k]) for k in ("benchmark", "input", "threads", "cpu", "caches", "l1d", "l2")): r for r in rows}
    return _write_table([latest[k] for k in sorted(latest)], SUITE_COLUMNS, path, form, SUITE_NOTE)


SUITE_NOTE = ("One row per benchmark, input, CPU and caches (its latest run). verification: the benchmark's own verdict "
              "line. native_roi_insts: the same binary's region of interest counted natively under callgrind; gem5's "
              "roi_insts are more by the kernel's share (interrupts, page faults, console output).")


ESTIMATES_NOTE = ("One row per sampled estimate (hackback sample). cpi: the weighted CPI of the samples; ci95_relative: "
                  "its 95% interval over cpi; full_cpi: the full detailed run from the same ROI checkpoint, on the same "
                  "CPU and caches (empty when there is none: hackback sample --reference runs one); error: (cpi - "
                  "full_cpi) / full_cpi; covered: whether the interval holds full_cpi.")


def _estimates(layout: Layout, select: Selection) -> list[dict[str, object]]:
    """Each estimate under estimates/, judged only by a full run from its own checkpoint: one an
    earlier hackback recorded from another (the suite's switching run) is left out of its row."""
    rows: list[dict[str, object]] = []
    for d in sorted((layout.work_dir / "estimates").glob("*/")):
        try:
            manifest = Manifest.read(d)
            if manifest is None:
                continue
            e = EstimateInfo.of(manifest)
        except HackbackError as err:
            log.warn(f"{d.name} left out of the report: {err.message}")
            continue
        if select.checkpoint not in (None, e.sampled) or (select.cpu is not None and not e.board.runs_on(select.cpu)):
            continue
        if e.full_run and not _same_checkpoint(layout, e):  # from elsewhere: none of its figures shown
            log.warn(f"estimate {d.name}: its full run {e.full_run} is not from checkpoint '{e.sampled}': not compared "
                     f"(hackback sample --checkpoint {e.sampled} --reference judges it again)")
            e = dataclasses.replace(e, full_cpi=None, full_host_seconds=None, full_run=None, full_l1d_miss_rate=None,
                                    full_l2_miss_rate=None)
        b = e.board
        rows.append({
            "checkpoint": e.sampled, "sampling": e.sampling, "cpu": b.cpu_label, "caches": b.caches, "l1d": b.l1d or None, "l2": b.l2 or None,
            "k": e.k, "samples": e.samples, "detailed_share": e.detailed_insts / e.roi_insts, "cpi": e.cpi, "ipc": 1 / e.cpi,
            "ci95_relative": e.half_width / e.cpi, "full_cpi": e.full_cpi, "error": e.error,
            "covered": {True: "yes", False: "no"}.get(e.covered) if e.covered is not None else None,
            "l2_miss_rate": e.l2_miss_rate, "full_l2_miss_rate": e.full_l2_miss_rate,
            "sample_host_seconds": e.sample_host_seconds, "full_host_seconds": e.full_host_seconds,
            "full_run": e.full_run, "estimate": d.name})
    return rows


def _same_checkpoint(layout: Layout, e: EstimateInfo) -> bool:
    if not e.full_run or e.full_cpi is None:
        return False
    try:
        run = RunRecord.read(layout.work_dir / "runs" / e.full_run)
    except HackbackError:
        return False
    return run is not None and run.info.checkpoint.name == e.sampled


def _write_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str], path: Path, form: str, note: str) -> Path:
    if form == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(columns)
        for r in rows:
            w.writerow([_text(r[c]) for c in columns])
        path.write_text(buf.getvalue())
        return path
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_text(r[c]) or "-" for c in columns) + " |" for r in rows]
    path.write_text("\n".join(lines) + "\n\n" + note + "\n")
    return path


def _write_markdown(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    return _write_table(rows, [c for c, _ in COLUMNS], path, "md", "Missing stats are shown as -, never 0. Columns: "
                        + "; ".join(f"{c}: {what}" for c, what in COLUMNS) + ".")


def _show(rows: Sequence[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    shown = ("checkpoint", "script", "cpu", "caches", "payload", "status", "sim_seconds", "host_seconds", "insts", "ipc",
             "l1d_miss_rate", "l2_miss_rate", "roi_insts", "roi_ipc", "roi_l1d_miss_rate")
    table = Table(title=f"{len(rows)} run(s)")
    for c in shown:
        table.add_column(c, justify="right" if c not in ("checkpoint", "script", "cpu", "caches", "payload") else "left")
    for r in rows:
        table.add_row(*(_text(r[c]) or "-" for c in shown))
    Console(width=200).print(table)


def _plots(rows: Sequence[dict[str, Any]], directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    out = [p for p in (_ipc_by_script(rows, directory), _roi_ipc_by_benchmark(rows, directory)) if p is not None]
    out += _sweeps(rows, directory)
    return out


def _ipc_by_script(rows: Sequence[dict[str, Any]], directory: Path) -> Optional[Path]:
    """IPC per script (and payload input), one bar per CPU model (the ROI's where
    the run has one; the mean over reruns and checkpoints, said on the plot)."""
    import matplotlib.pyplot as plt

    def what(r: dict[str, Any]) -> str:
        return f"{r['script']} [{str(r['payload']).split()[-1]}]" if r["payload"] else str(r["script"])

    rows = [{**r, "script": what(r)} for r in rows]
    scripts = sorted({r["script"] for r in rows})
    cpus = sorted({str(r["cpu"]) for r in rows})
    fig, ax = plt.subplots(figsize=(min(16, max(6, 0.6 * len(scripts) * max(1, len(cpus)))), 4.5))
    width = 0.8 / max(1, len(cpus))
    for i, cpu in enumerate(cpus):
        values = [_mean([r["roi_ipc"] if r["roi_ipc"] is not None else r["ipc"] for r in rows
                         if r["script"] == s and str(r["cpu"]) == cpu]) for s in scripts]
        xs = [j + i * width for j, v in enumerate(values) if v is not None]
        ax.bar(xs, [v for v in values if v is not None], width, label=cpu)
    ax.set_xticks([j + width * (len(cpus) - 1) / 2 for j in range(len(scripts))], scripts, rotation=20, ha="right")
    ax.set_ylabel("IPC (region of interest where marked)")
    ax.set_title("IPC per script and CPU model (mean over its runs)")
    ax.legend()
    return _saved(fig, directory / "ipc_by_script.png")


def _saved(fig: Any, path: Path) -> Path:
    """A finished figure as a PNG at path, its memory freed (every plot ends this way)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _roi_ipc_by_benchmark(rows: Sequence[dict[str, Any]], directory: Path) -> Optional[Path]:
    """Suite members' ROI IPC: a group of bars per benchmark (and input), one bar per CPU and caches."""
    import matplotlib.pyplot as plt

    members = [r for r in rows if r["benchmark"] and r["roi_ipc"] is not None]
    if not members:
        return None
    benches = sorted({f"{r['benchmark']} {r['input']}" for r in members})

    def config_of(r: dict[str, Any]) -> str:
        return f"{r['cpu']}, {r['caches']}" + (f" {r['l1d']}/{r['l2']}" if r["l2"] else "")

    configs = sorted({config_of(r) for r in members})

    fig, ax = plt.subplots(figsize=(min(16, max(6, 0.7 * len(benches) * max(1, len(configs)))), 4.5))
    width = 0.8 / len(configs)
    for i, cfg in enumerate(configs):
        values = [_mean([r["roi_ipc"] for r in members if f"{r['benchmark']} {r['input']}" == b and config_of(r) == cfg])
                  for b in benches]
        xs = [j + i * width for j, v in enumerate(values) if v is not None]
        ax.bar(xs, [v for v in values if v is not None], width, label=cfg)
    ax.set_xticks([j + width * (len(configs) - 1) / 2 for j in range(len(benches))], benches, rotation=20, ha="right")
    ax.set_ylabel("IPC of the region of interest")
    ax.set_title("Suite members: ROI IPC per benchmark and CPU model")
    ax.legend(fontsize="small")
    return _saved(fig, directory / "roi_ipc_by_benchmark.png")


def _sweeps(rows: Sequence[dict[str, Any]], directory: Path) -> list[Path]:
    """For a script whose runs differ in one parameter only: ROI IPC and L1D miss rate against it."""
    import matplotlib.pyplot as plt

    out = []
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:  # the same experiment but for the swept parameters
        groups.setdefault(tuple(str(r[k]) for k in ("checkpoint", "script", "cpu", "caches")), []).append(r)
    for key, mine in sorted(groups.items()):
        script = key[1]
        varying = [p for p in SWEEPABLE if len({str(r[p]) for r in mine}) > 1]
        if len(mine) < 2 or len(varying) != 1:
            continue
        param = varying[0]

        def label(r: dict[str, Any], param: str = param) -> str:
            return str(r[param]).split()[-1] if param == "payload" else str(r[param])

        mine = list({label(r): r for r in mine}.values())  # one point per value (reruns say the same)
        if len(mine) < 2:
            continue
        points = sorted(mine, key=lambda r: _size_key(label(r)))
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, metric in zip(axes, ("roi_ipc", "roi_l1d_miss_rate")):
            fallback = metric[4:]
            got = [(r, r[metric] if r[metric] is not None else r[fallback]) for r in points]
            got = [(r, y) for r, y in got if y is not None]
            _sweep_axis(ax, param, [label(r) for r, _ in got], [y for _, y in got])
            ax.set_ylabel(metric.replace("roi_", "ROI ").replace("_", " "))
        fig.suptitle(f"{script} on {key[2]} ({key[3]} caches): against {param}")
        out.append(_saved(fig, directory / f"{key[0]}-{Path(script).stem}-{key[2]}-{key[3]}_vs_{param}.png"))
    return out


def _sweep_axis(ax: Any, param: str, labels: Sequence[str], ys: Sequence[float]) -> None:
    """A size on a numeric (log 2) axis in its own order, joined by a line; a
    category (a payload's input) as bars, never joined."""
    from ..base.config import memory_bytes

    if param in SIZES:
        xs = [float(memory_bytes(v) or 0) for v in labels]
        ax.plot(xs, ys, marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, labels)
        ax.set_xlabel(f"{param} size")
    else:
        ax.bar(range(len(labels)), ys)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel("payload (its last directory: the input)" if param == "payload" else param)


def _size_key(value: Any) -> tuple[float, str]:
    """Sizes in order (32KiB < 1MiB); anything else by name."""
    from ..base.config import memory_bytes

    n = memory_bytes(str(value)) if value is not None else None
    return (float(n) if n is not None else float("inf"), str(value))


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else None


class ReportStep(Step):
    """`hackback report`: reads runs/, writes tables and plots (a dry run says where)."""

    name = "report"
    builds = False

    def ensure(self, ctx: StepContext, req: Request, deps: Mapping[str, Any]) -> Report:
        # --checkpoint and --script take what they take on restore (a name or a directory; a file), matched by name.
        select = Selection(checkpoint_name_of(ctx.layout, req.of_checkpoint) if req.of_checkpoint else None,
                           Path(req.of_script).name if req.of_script else None, req.of_cpu)
        return report(ctx.layout, select, req.out, ctx.layout.dry_run)


REPORT = ReportStep()
