"""The gem5 run contract (configs/hackback_contract.json) from both sides: the
file itself, hackback/gem5run.py's reading of it, and configs/hackback_fs.py,
checked by its source text and run for real with stand-ins for gem5's Python
modules (no gem5, no Docker)."""
from __future__ import annotations

import ast
import json
import runpy
import sys
import types
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import pytest

from hackback.services import gem5run
from hackback.base import log, resources
from conftest import result_of
from hackback.store.records import Board

CONFIGS = resources.configs_dir()
RUN_SCRIPT = CONFIGS / gem5run.RUN_SCRIPT
CONTRACT = json.loads((CONFIGS / gem5run.CONTRACT_FILE).read_text())
CAUSES = {k: v for k, v in CONTRACT["causes"].items() if k != "_doc"}
# gem5's exit events as the run script handles them, by the contract's cause names
EXIT_EVENTS = {"CHECKPOINT": "checkpoint", "EXIT": "exit", "FAIL": "fail", "KERNEL_PANIC": "kernel_panic",
               "KERNEL_OOPS": "kernel_oops", "MAX_TICK": "slice", "USER_INTERRUPT": "interrupted"}
WORK_ITEMS = ("WORKBEGIN", "WORKEND", "MAX_INSTS")  # handled, and the run goes on (MAX_INSTS: a switch or warm-up count)


def test_the_contract_file_has_every_key_and_a_doc_for_each_section() -> None:
    assert CONTRACT["version"] == 1 and CONTRACT["_doc"]
    want = {
        "markers": {"progress", "checkpoint", "result", "script_exit"},
        "files": {"result", "result_tmp", "console", "console_copy"},
        "causes": {"checkpoint", "exit", "fail", "kernel_panic", "kernel_oops", "max_sim_seconds", "max_wall_seconds",
                   "interrupted", "no_switch", "no_measure", "roi_end", "measured", "slice", "unknown"},
        "expected": {"boot", "restore", "restore_saving", "restore_profile", "restore_sample"},
        "exit_status": {"wrong_ending"},
        "cache_defaults": {"l1d", "l1i", "l2"},
    }
    assert set(CONTRACT) == {"_doc", "version", *want}
    for section, keys in want.items():
        assert set(CONTRACT[section]) == keys | {"_doc"}, section
        assert isinstance(CONTRACT[section]["_doc"], str) and CONTRACT[section]["_doc"], section
    assert CONTRACT["files"] == {"_doc": CONTRACT["files"]["_doc"], "result": "hackback-result.json",
                                 "result_tmp": "hackback-result.json.tmp", "console": "board.pc.com_1.device",
                                 "console_copy": "console.log"}
    assert set(CAUSES.values()) == {"checkpoint", "exit", "fail", "kernel-panic", "kernel-oops", "max-sim-seconds",
                                    "max-wall-seconds", "interrupted", "no-switch", "no-measure", "roi-end", "measured",
                                    "slice", "unknown"}
    assert {k: v for k, v in CONTRACT["expected"].items() if k != "_doc"} == {
        "boot": "checkpoint", "restore": "exit", "restore_saving": "checkpoint", "restore_profile": "roi-end",
        "restore_sample": "measured"}
    assert set(CONTRACT["expected"].values()) - {CONTRACT["expected"]["_doc"]} <= set(CAUSES.values())
    assert CONTRACT["exit_status"]["wrong_ending"] == 3
    assert [CONTRACT["cache_defaults"][k] for k in ("l1d", "l1i", "l2")] == ["32KiB", "32KiB", "512KiB"]


def test_gem5run_reads_the_same_values() -> None:
    c = gem5run.CONTRACT
    m, f = CONTRACT["markers"], CONTRACT["files"]
    assert (c.progress_mark, c.checkpoint_mark, c.result_mark, c.script_exit_mark) == (
        m["progress"], m["checkpoint"], m["result"], m["script_exit"])
    assert (gem5run.CONSOLE, gem5run.CONSOLE_COPY, gem5run.RESULT_FILE, c.result_tmp) == (
        f["console"], f["console_copy"], f["result"], f["result_tmp"])
    assert dict(c.causes) == CAUSES
    assert dict(c.expected) == {k: v for k, v in CONTRACT["expected"].items() if k != "_doc"}
    assert c.wrong_ending_status == CONTRACT["exit_status"]["wrong_ending"]
    # The shipped config's cache sizes are the run script's defaults, and reach it as arguments.
    from hackback.base import config
    from hackback.store.records import Board

    r = config.load(environ={}).restore
    assert (r.l1d, r.l1i, r.l2) == tuple(CONTRACT["cache_defaults"][k] for k in ("l1d", "l1i", "l2"))
    args = Board("2GiB", 1, "atomic", caches="l1l2", l1d=r.l1d, l1i=r.l1i, l2=r.l2).args()
    assert [args[args.index(f"--{k}") + 1] for k in ("l1d", "l1i", "l2")] == [
        CONTRACT["cache_defaults"][k] for k in ("l1d", "l1i", "l2")]
    exits = gem5run.SCRIPT_EXIT.findall(f"hi\n{m['script_exit']} 0\nx {m['script_exit']} empty\n{m['script_exit']}\n")
    assert exits == ["0", "empty"]


def test_gem5run_describes_every_final_cause_and_names_the_limit_to_raise(tmp_path: Path) -> None:
    for name, cause in CAUSES.items():
        text = gem5run.describe_ending(result_of(cause=cause, expected=cause, gem5_exit_cause="gem5 said so"))
        generic = text.startswith("gem5 stopped (gem5 said so)")
        assert generic == (name in ("slice", "unknown")), (cause, text)  # slice is never final; unknown is generic
    job = gem5run.Gem5Job(label="t", env_image="e", binary="g", mode="boot", kernel=tmp_path, disk=tmp_path,
                          kernel_args="", board=Board("2GiB", 1, "atomic"), out=tmp_path, max_sim_seconds=7)
    hint = gem5run._hint(result_of(cause=CAUSES["max_sim_seconds"]), job)
    assert "checkpoint.max_sim_seconds (now 7;" in hint and "HACKBACK_CHECKPOINT_MAX_SIM_SECONDS" in hint


def _constants(tree: ast.AST) -> Iterator[str]:
    """The run script's string constants, less docstrings and the keys it looks contract values up by."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            skip.add(id(node.slice))
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node) is not None:
            skip.add(id(node.body[0].value))  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.value


def test_the_run_script_spells_no_contract_value_itself() -> None:
    strings = list(_constants(ast.parse(RUN_SCRIPT.read_text())))
    assert "hackback_contract.json" in strings and "--l1d" in strings  # the walk sees the script's strings
    distinct = [*(v for k, v in CONTRACT["markers"].items() if k != "_doc"),
                *(v for k, v in CONTRACT["files"].items() if k != "_doc")]
    words = [*CAUSES.values(), *(v for k, v in CONTRACT["cache_defaults"].items() if k != "_doc")]
    for s in strings:
        assert not any(v in s for v in distinct), f"hackback_fs.py spells {s!r}: use the contract"
        assert s not in words, f"hackback_fs.py spells {s!r}: use the contract"


def _stub_gem5(monkeypatch: pytest.MonkeyPatch, outdir: Path, ends: list[str]) -> dict[str, Any]:
    """Stand-ins for every module the run script imports; its Simulator ends each run() with the next of `ends`
    (gem5 ExitEvent names). Returns what the stand-ins saw."""
    seen: dict[str, Any] = {"ticks": 0}
    names = set()
    for node in ast.walk(ast.parse(RUN_SCRIPT.read_text())):
        mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        for mod in mods:
            parts = mod.split(".")
            names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    roots = {n.split(".")[0] for n in names}
    assert roots - {"argparse", "json", "os", "sys", "time", "pathlib"} == {"m5", "gem5"}
    for name in sorted(n for n in names if n.split(".")[0] in ("m5", "gem5")):
        module = types.ModuleType(name)
        module.__getattr__ = lambda attr: mock.MagicMock(name=attr)  # type: ignore[method-assign]
        monkeypatch.setitem(sys.modules, name, module)
        if "." in name:
            parent, _, leaf = name.rpartition(".")
            setattr(sys.modules[parent], leaf, module)

    def cur_tick() -> int:
        return int(seen["ticks"])

    class Simulator:
        def __init__(self, board: Any, max_ticks: int, on_exit_event: dict[str, Iterator[bool]]) -> None:
            self.handlers, self.max_ticks = on_exit_event, max_ticks

        def _instantiate(self) -> None:
            pass

        def run(self) -> None:
            # gem5's Simulator goes on after a handler yields False, and returns when one yields True.
            while True:
                seen["ticks"] += self.max_ticks
                self.last = ends.pop(0)
                if next(self.handlers[self.last]):
                    return
                # Only work items go on (a count, a checkpoint at workbegin, a profile's workend may also end it).
                assert self.last in WORK_ITEMS

        def save_checkpoint(self, target: Path) -> None:
            seen["saved"] = target
            seen.setdefault("all_saved", []).append(target)

        def get_last_exit_event_cause(self) -> str:
            return f"stand-in {self.last}"

    class SwitchableProcessor:
        """A stand-in with the surface the run script uses: two sets of cores, one active."""

        def __init__(self, switchable_cores: dict[str, list[Any]], starting_cores: str) -> None:
            self._switchable_cores, self._current = switchable_cores, starting_cores

        def __setattr__(self, name: str, value: Any) -> None:
            # As gem5's SimObject: an attribute that is no parameter must be underscored.
            if not name.startswith("_"):
                raise AttributeError(f"Class {type(self).__name__} has no parameter {name}")
            object.__setattr__(self, name, value)

        def incorporate_processor(self, board: Any) -> None:
            pass

        def _all_cores(self) -> Iterator[Any]:
            for cores in self._switchable_cores.values():
                yield from cores

        def get_cores(self) -> list[Any]:
            return self._switchable_cores[self._current]

        def switch_to_processor(self, key: str) -> None:
            seen.setdefault("switches", []).append(key)
            self._current = key

    sys.modules["gem5.components.processors.switchable_processor"].SwitchableProcessor = SwitchableProcessor  # type: ignore[attr-defined]
    m5 = sys.modules["m5"]
    m5.curTick = cur_tick  # type: ignore[attr-defined]
    m5.options = types.SimpleNamespace(outdir=str(outdir))  # type: ignore[attr-defined]
    m5.defines.buildEnv = {"PROTOCOL": "MI_example"}  # type: ignore[attr-defined]
    sys.modules["gem5.simulate.exit_event"].ExitEvent = types.SimpleNamespace(**{e: e for e in (*EXIT_EVENTS, *WORK_ITEMS)})  # type: ignore[attr-defined]
    sys.modules["gem5.simulate.simulator"].Simulator = Simulator  # type: ignore[attr-defined]
    return seen


def _run_script(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> dict[str, Any]:
    monkeypatch.setattr(sys, "argv", [str(RUN_SCRIPT), *argv])
    return runpy.run_path(str(RUN_SCRIPT), run_name="hackback_fs")  # not __m5_main__: main() is called by the test


def test_the_run_scripts_cache_defaults_come_from_the_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _stub_gem5(monkeypatch, tmp_path, [])
    script = _run_script(monkeypatch, ["restore", "--kernel", "k", "--disk", "d", "--kernel-args", "x",
                                       "--checkpoint", "cpt.1", "--script", "s"])
    args = script["parse"]()
    assert (args.l1d, args.l1i, args.l2) == tuple(CONTRACT["cache_defaults"][k] for k in ("l1d", "l1i", "l2"))
    with mock.patch.dict(CONTRACT["cache_defaults"], l2="1MiB"):  # a different contract, a different default
        other = tmp_path / "configs"
        other.mkdir()
        (other / RUN_SCRIPT.name).write_text(RUN_SCRIPT.read_text())
        (other / gem5run.CONTRACT_FILE).write_text(json.dumps(CONTRACT))
        monkeypatch.setattr(sys, "argv", [str(other / RUN_SCRIPT.name), *sys.argv[1:]])
        assert runpy.run_path(str(other / RUN_SCRIPT.name), run_name="hackback_fs")["parse"]().l2 == "1MiB"


def test_a_boot_run_speaks_the_contract_hackback_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    seen = _stub_gem5(monkeypatch, out, ["MAX_TICK", "CHECKPOINT"])
    script = _run_script(monkeypatch, ["boot", "--kernel", "k", "--disk", "d", "--kernel-args", "console=ttyS0",
                                       "--checkpoint-dir", str(out), "--progress-every", "0"])
    assert script["main"]() == 0
    lines = capsys.readouterr().out.splitlines()
    shown: list[str] = []
    printer = gem5run._Printer("boot", shown.append)
    for line in lines:
        printer(line)
    assert shown == [f"[boot] simulated 0.050 s in {log.format_seconds(0.0)}; console: ", f"[boot] saving {seen['saved']}"]
    result = gem5run._read_result(out)
    assert result is not None and not (out / gem5run.CONTRACT.result_tmp).exists()
    assert (result.cause, result.expected, result.ok) == (CAUSES["checkpoint"], gem5run.CONTRACT.expected["boot"], True)
    assert result.checkpoint == seen["saved"].name
    raw = json.loads((out / gem5run.RESULT_FILE).read_text())
    assert lines[-1] == f"{gem5run.CONTRACT.result_mark} {json.dumps(raw, sort_keys=True)}"


def test_a_wrong_ending_exits_with_the_contracts_status(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / gem5run.CONSOLE).write_text("booting\nKernel panic - not syncing: VFS: Unable to mount root fs\n")
    _stub_gem5(monkeypatch, tmp_path, ["MAX_TICK"])
    script = _run_script(monkeypatch, ["restore", "--kernel", "k", "--disk", "d", "--kernel-args", "x",
                                       "--checkpoint", str(tmp_path / "cpt.1000"), "--script", "s"])
    assert script["main"]() == gem5run.CONTRACT.wrong_ending_status
    result = gem5run._read_result(tmp_path)
    assert result is not None and (result.cause, result.ok) == (CAUSES["kernel_panic"], False)
    assert result.expected == gem5run.CONTRACT.expected["restore"] and result.start_tick == 1000
    text = gem5run.describe_ending(result)
    assert "kernel panicked" in text and "VFS: Unable to mount root fs" in text and "expected the guest to call m5 exit" in text
    gem5run._keep_console(tmp_path)
    assert "Kernel panic" in (tmp_path / gem5run.CONSOLE_COPY).read_text()


def test_a_region_of_interest_is_dumped_apart_and_the_run_goes_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _stub_gem5(monkeypatch, out, ["MAX_TICK", "WORKBEGIN", "WORKEND", "EXIT"])
    sys.modules["m5"].stats = mock.MagicMock()  # type: ignore[attr-defined]
    script = _run_script(monkeypatch, ["restore", "--kernel", "k", "--disk", "d", "--kernel-args", "x",
                                       "--checkpoint", "cpt.1000", "--script", "s", "--progress-every", "1000"])
    assert script["main"]() == 0
    result = gem5run._read_result(out)
    assert result is not None and result.cause == CAUSES["exit"]
    # Dumped then reset at each: dump 1 = up to the ROI, 2 = the ROI, 3 = gem5's own at exit.
    assert [(w.kind, w.dump) for w in result.work_items] == [("workbegin", 1), ("workend", 2)]
    assert result.stats_dumps == 3
    m5 = sys.modules["m5"]
    assert m5.stats.dump.call_count == 2 and m5.stats.reset.call_count == 2  # type: ignore[attr-defined]


def test_a_restore_given_a_checkpoint_dir_saves_the_childs_checkpoint_and_stops(monkeypatch: pytest.MonkeyPatch,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    seen = _stub_gem5(monkeypatch, out, ["MAX_TICK", "CHECKPOINT"])
    script = _run_script(monkeypatch, ["restore", "--kernel", "k", "--disk", "d", "--kernel-args", "x", "--checkpoint", "cpt.1000",
                                       "--script", "s", "--checkpoint-dir", str(out), "--progress-every", "1000"])
    assert script["main"]() == 0
    result = gem5run._read_result(out)
    assert result is not None and result.expected == CAUSES["checkpoint"] == result.cause and result.ok
    assert result.checkpoint == seen["saved"].name and seen["saved"].parent == out


def _restore(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ends: list[str], *flags: str) -> tuple[Any, dict[str, Any], int]:
    """The run script as a restore with these flags, its stand-in gem5 ending each run() with the next of `ends`."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    seen = _stub_gem5(monkeypatch, out, ends)
    sys.modules["m5"].stats = mock.MagicMock()  # type: ignore[attr-defined]
    script = _run_script(monkeypatch, ["restore", "--kernel", "k", "--disk", "d", "--kernel-args", "x",
                                       "--checkpoint", "cpt.1000", "--script", "s", "--progress-every", "1000", *flags])
    status = script["main"]()
    result = gem5run._read_result(out)
    assert result is not None and not ends, ends  # every event the stand-in had was handled
    return result, seen, status


def test_a_switching_run_warms_up_measures_to_workend_and_goes_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result, seen, status = _restore(monkeypatch, tmp_path, ["MAX_TICK", "WORKBEGIN", "MAX_INSTS", "WORKEND", "EXIT"],
                                    "--cpu", "o3", "--switch-from", "atomic", "--warmup-insts", "100")
    assert status == 0 and result.ok and result.cause == CAUSES["exit"]
    assert [w.kind for w in result.work_items] == ["workbegin", "warmup-end", "workend"] and result.roi_dump == 3
    assert seen["switches"] == ["switch", "cores"] and result.switch is not None and result.switch.warmup_insts == 100


def test_a_run_in_the_roi_measures_a_count_and_ends_there(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A sample: restored inside the ROI on o3 (its rest would run on atomic), a
    detailed warm-up, then exactly --measure-insts instructions: the run ends there."""
    result, seen, status = _restore(monkeypatch, tmp_path, ["MAX_INSTS", "MAX_INSTS"],
                                    "--cpu", "o3", "--in-roi", "--warmup-insts", "50", "--measure-insts", "1000")
    assert status == 0 and result.cause == result.expected == CAUSES["measured"] and result.ok
    assert [(w.kind, w.dump) for w in result.work_items] == [("warmup-end", 1), ("measure-end", 2)] and result.roi_dump == 2
    assert seen["switches"] == ["switch"]  # the measured cores are the starting ones; after, atomic


def test_sample_checkpoints_are_saved_at_each_count_and_the_run_ends_at_the_last(monkeypatch: pytest.MonkeyPatch,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, seen, status = _restore(monkeypatch, tmp_path, ["MAX_TICK", "MAX_INSTS", "MAX_INSTS", "MAX_INSTS"],
                                    "--checkpoint-dir", str(out), "--checkpoints-at", "100,250,900")
    assert status == 0 and result.ok and result.cause == CAUSES["checkpoint"]
    assert len(seen["all_saved"]) == 3 and [c.cpt for c in result.checkpoints] == [p.name for p in seen["all_saved"]]
    assert result.checkpoint == result.checkpoints[-1].cpt


def test_a_checkpoint_at_the_rois_workbegin_and_a_guests_checkpoint_where_none_was_wanted(monkeypatch: pytest.MonkeyPatch,
                                                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, seen, _ = _restore(monkeypatch, tmp_path, ["MAX_TICK", "WORKBEGIN"], "--checkpoint-dir", str(out),
                               "--checkpoint-at", "workbegin")
    assert result.ok and result.checkpoint == seen["saved"].name and [w.kind for w in result.work_items] == ["workbegin"]
    other = tmp_path / "other"
    other.mkdir()
    result, _, status = _restore(monkeypatch, other, ["CHECKPOINT"], "--checkpoint-dir", str(other / "out"),
                                 "--checkpoint-at", "workbegin")
    assert not result.ok and status == gem5run.CONTRACT.wrong_ending_status and result.checkpoint is None
    assert "but no checkpoint was saved" in gem5run.describe_ending(result)


def test_a_profile_ends_at_the_rois_workend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result, _, status = _restore(monkeypatch, tmp_path, ["MAX_TICK", "WORKEND"], "--in-roi", "--simpoint-interval", "10000",
                                 "--stop-at-workend")
    assert status == 0 and result.ok and result.cause == result.expected == CAUSES["roi_end"] and result.roi_dump == 1
    # It ended in the tick of its workend dump, and gem5 dumps once a tick: its own dump at exit adds none.
    assert result.stats_dumps == 1
