"""The typed records of manifests and results: each reads what the previous
hackback wrote (its info had no schema number), writes the same layout back
(with the schema number), and refuses a damaged one in one line."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from hackback.base.config import WITH_L2
from hackback.base.errors import ArtifactError
from hackback.store.records import (Board, CheckpointInfo, Gem5Result, RunInfo, RunResult, RunRecord, ScriptEnd,
                                    ScriptStatus)

GEM5 = {"release": "24.0.0.1", "version_tags": ["a", "b"], "origin": "built", "commit": None, "tree_sha256": "t",
        "binary_sha256": "b", "env_image": "hackback-env:1", "binary": "/opt/hackback/bin/gem5.opt"}
# A child checkpoint's info as the previous version wrote it (restore._save_child, at 9c38529).
PREVIOUS_CHILD = {
    "gem5": GEM5, "kernel": {"path": "/w/kernels/default/vmlinux", "sha256": "k"},
    "image": {"path": "/w/images/default/disk.img", "sha256": "d", "partuuid": "abcd-01"},
    "board": {"memory": "2GiB", "cores": 1, "cpu": "atomic"}, "boot": "fast", "kernel_args": "console=ttyS0 lpj=3000000",
    "timing": {"mode": "derived", "lpj": 3000000, "kernel_hz": 1000, "clock_hz": 3000000000,
               "lapic_timer_period": 187500, "args": ["lpj=3000000", "tsc_early_khz=3000000", "no_timer_check"]},
    "gem5_kernel": "vmlinux",
    "stats": {"insts": 5000.0, "ipc": 1.0}, "stats_dumps": 2, "roi": {"insts": 300.0, "ipc": 0.5, "dump": 2},
    "parts": [{"dump": 1, "ended_by": "switch", "cpu": "atomic", "insts": 4700.0, "core_insts": {"cores.core": 4700.0}},
              {"dump": 2, "ended_by": "end", "cpu": "o3", "insts": 300.0, "core_insts": {"switch.core": 300.0}}],
    "switch": {"tick": 5, "host_seconds": 1.5, "from": "atomic", "to": "o3", "after_insts": 0, "warmup_insts": 0},
    "cpt": "cpt.200", "tick": 200, "sim_seconds": 0.01, "host_seconds": 3.0, "console_last_line": "x",
    "parent": {"name": "default", "directory": "/w/checkpoints/default", "cpt": "cpt.100", "identity": "i"},
    "made_by": {"script": {"path": "/s/setup.sh", "sha256": "s"}, "payload_sha256": None, "memory": "2GiB", "cores": 1,
                "cpu": "o3", "caches": "l1l2", "l1d": "32KiB", "l1i": "32KiB", "l2": "512KiB", "switch_from": "atomic",
                "switch_after_insts": 0, "warmup_insts": 0},
    "guest": {"mem_available_kib": 1000, "root_free_kib": 2000},
}
# A run's info as the previous version wrote it (restore._info).
PREVIOUS_RUN = {
    "checkpoint": {"name": "default", "directory": "/w/checkpoints/default", "cpt": "cpt.100"},
    "script": {"path": "/s/hello.rcS", "sha256": "s"}, "gem5": GEM5, "gem5_warnings": [],
    "board": {"cpu": "o3", "caches": "l1l2", "l1d": "32KiB", "l1i": "32KiB", "l2": "512KiB", "memory": "2GiB", "cores": 1},
    "cause": "exit", "script_status": None, "sim_seconds": 0.02, "host_seconds": 4.5,
    "phases": {"board_seconds": 1.0}, "container_wall_seconds": 6.1,
    "stats": {"insts": 10.0}, "stats_dumps": 1,
    "payload": {"dirs": ["/p/a", "/p/b"], "files": 2, "bytes": 10, "sha256": "p"},
}


def test_a_previous_child_checkpoint_info_reads_as_it_meant_and_writes_back_the_same() -> None:
    info = CheckpointInfo.from_json(PREVIOUS_CHILD)
    assert info.schema == 1 and info.gem5.commit is None and info.gem5.version_tags == ("a", "b")
    assert info.image.partuuid == "abcd-01" and info.timing is not None and info.timing.lapic_timer_period == 187500
    assert info.parent is not None and info.parent.cpt == "cpt.100"
    made = info.made_by
    assert made is not None and made.board.cpu_label == "atomic-to-o3" and made.board.l2 == "512KiB"
    m = info.measured
    assert m is not None and m.roi is not None and m.roi.dump == 2 and m.roi.figures["insts"] == 300
    assert [p.cpu for p in m.parts] == ["atomic", "o3"] and m.switch is not None and m.switch.from_ == "atomic"
    again = info.to_json()
    assert again.pop("schema") == 2
    assert again == {k: v for k, v in PREVIOUS_CHILD.items() if k != "gem5"} | {"gem5": {k: v for k, v in GEM5.items() if v is not None}}


def test_a_previous_run_info_reads_as_it_meant_and_writes_back_the_same() -> None:
    info = RunInfo.from_json(PREVIOUS_RUN)
    assert info.status == ScriptStatus(ScriptEnd.UNREPORTED) and info.board.caches == "l1l2"
    assert info.payload is not None and [d.name for d in info.payload.dirs] == ["a", "b"] and info.measured.roi is None
    again = info.to_json()
    assert again.pop("schema") == 2 and "parts" not in again  # one dump: no parts apart
    # The same layout; empty lists are left out now (they read back as empty).
    assert again == {k: v for k, v in PREVIOUS_RUN.items() if k != "gem5" and v != []} | {"gem5": {k: v for k, v in GEM5.items() if v is not None}}
    assert json.loads(json.dumps(again))["script_status"] is None  # nullable: said "not reported", not left out


@pytest.mark.parametrize("said,end,code,exit_code", [("0", ScriptEnd.EXITED, 0, 1), ("3", ScriptEnd.EXITED, 3, 3),
                                                     ("200", ScriptEnd.EXITED, 200, 1), ("empty", ScriptEnd.EMPTY, None, 1),
                                                     ("payload", ScriptEnd.PAYLOAD, None, 1), (None, ScriptEnd.UNREPORTED, None, 1)])
def test_a_scripts_status_is_one_of_its_endings(said, end, code, exit_code) -> None:  # type: ignore[no-untyped-def]
    s = ScriptStatus.parse(said)
    assert (s.end, s.code, s.exit_code, s.word()) == (end, code, exit_code, said)


def test_one_board_gives_the_runs_inputs_id_part_label_and_gem5_arguments() -> None:
    b = Board("2GiB", 1, "o3", caches="l1", l1d="64KiB", l1i="32KiB", l2="1MiB", switch_from="atomic", warmup_insts=7)
    assert b.l2 == "" and b.inputs() == {"cpu": "o3", "caches": "l1", "l1d": "64KiB", "l1i": "32KiB",
                                         "switch_from": "atomic", "switch_after_insts": 0, "warmup_insts": 7}
    assert b.id_part() == "atomic-to-o3-l1" and b.label() == "atomic-to-o3 CPU, l1 caches"
    assert "--l2" not in b.args() and b.args()[b.args().index("--warmup-insts") + 1] == "7"
    plain = Board("2GiB", 1, "atomic", l1d="64KiB", switch_after_insts=5)
    assert plain == Board("2GiB", 1, "atomic") and plain.inputs() == {"cpu": "atomic", "caches": "none"}
    assert Board.from_json(b.to_json()) == b


def test_the_walk_cache_preset_keeps_its_l2_and_the_run_script_takes_it() -> None:
    from hackback.base import resources

    w = Board("2GiB", 1, "o3", caches="l1l2walk", l1d="32KiB", l1i="32KiB", l2="256KiB")
    assert w.inputs()["l2"] == "256KiB" and w.id_part() == "o3-l1l2walk"
    assert w.args()[w.args().index("--l2") + 1] == "256KiB" and w.args()[w.args().index("--caches") + 1] == "l1l2walk"
    # The run script's presets with an L2 (it imports gem5, so read, not imported) are the config's.
    tree = ast.parse((resources.configs_dir() / "hackback_fs.py").read_text())
    presets = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                   and isinstance(n.targets[0], ast.Name) and n.targets[0].id == "WITH_L2")
    assert isinstance(presets, ast.Dict)
    assert [k.value for k in presets.keys if isinstance(k, ast.Constant)] == list(WITH_L2)
    assert [v.id for v in presets.values if isinstance(v, ast.Name)] == [
        "PrivateL1PrivateL2CacheHierarchy", "PrivateL1PrivateL2WalkCacheHierarchy"]


def test_a_result_says_whether_it_named_its_roi_dump() -> None:
    base = {"mode": "restore", "cause": "exit", "expected": "exit", "ok": True, "sim_seconds": 1.0, "host_seconds": 1.0,
            "final_tick": 1}
    assert Gem5Result.from_json({**base, "roi_dump": None}).roi_named
    assert not Gem5Result.from_json(base).roi_named
    assert Gem5Result.from_json({**base, "roi_dump": None}).to_json()["roi_dump"] is None


@pytest.mark.parametrize("damage", [{"sim_seconds": "0.02"}, {"board": {"cpu": "o3"}}, {"cause": None}])
def test_a_damaged_run_manifest_is_one_line_naming_it(tmp_path: Path, damage: dict) -> None:  # type: ignore[type-arg]
    from hackback.store.manifest import Manifest, write_manifest

    m = Manifest("runs", "r")
    m.set_part("run", {}, {}, {**PREVIOUS_RUN, **damage})
    write_manifest(tmp_path, m)
    with pytest.raises(ArtifactError) as e:
        RunRecord.read(tmp_path)
    assert str(tmp_path / "manifest.json") in e.value.one_line() and "\n" not in e.value.one_line()


def test_a_run_result_summary_names_its_roi(tmp_path: Path) -> None:
    from hackback.store.manifest import Manifest, write_manifest

    m = Manifest("runs", "r")
    m.set_part("run", {}, {}, {**PREVIOUS_RUN, "script_status": "0", "roi": {"insts": 3.0, "ipc": 0.25, "dump": 1}})
    write_manifest(tmp_path, m)
    run = RunRecord.read(tmp_path)
    assert run is not None
    r = RunResult.of("r", run)
    assert r.ok and "region of interest: instructions=3, IPC=0.250" in r.summary()


def test_a_union_field_takes_the_first_of_its_types_that_fits_and_refuses_what_none_does() -> None:
    from hackback.store.records import SamplingInfo

    raw = {"checkpoint": {"name": "is-roi", "directory": "/w/checkpoints/is-roi", "cpt": "cpt.1"}, "interval": 40000,
           "intervals": 396, "k": 1, "weights": [1.0], "bics": [0.0], "cpts": ["cpt.2"],
           "samples": [{"at": 1, "cluster": 0, "detailed_warmup": 8000, "functional_warmup": 0, "interval": 0, "length": 40001,
                        "nearest": True, "start": 8001, "weight": 1.0}], "roi_insts": 15859101,
           "rule": {"max_k": 10, "detailed_budget": 0.1, "allocation": "proportional"},
           "pass_host_seconds": 58.3, "profile_host_seconds": 16.3}
    info = SamplingInfo.from_json(raw)
    assert info.rule == {"max_k": 10, "detailed_budget": 0.1, "allocation": "proportional"}
    assert [type(v) for v in info.rule.values()] == [int, float, str]  # a whole number stays an int
    assert SamplingInfo.from_json(info.to_json()) == info
    with pytest.raises(ArtifactError, match="SamplingInfo.rule is"):
        SamplingInfo.from_json({**raw, "rule": {"max_k": [10]}})
