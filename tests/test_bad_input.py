"""Bad input at the edge: each is one line on stderr with a hint, a non-zero exit,
no traceback, and nothing built or created (the work dir does not even appear).
Unit tier: every case here is refused before an engine is asked for."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hackback.store.records import CheckpointArtifact
from hackback.store.manifest import Manifest, write_manifest
from hackback.base.errors import ArtifactError

REPO = Path(__file__).resolve().parent.parent


def _invoke(tmp_path: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HACKBACK_")}
    env.update(HACKBACK_WORK_DIR=str(tmp_path / "work"), **env_extra)
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def _one_line(out: subprocess.CompletedProcess[str], code: int, *says: str) -> None:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code, out.stdout[-2000:] + out.stderr
    assert len(lines) == 1 and lines[0].startswith("hackback: error: "), lines
    assert "Traceback" not in out.stderr and "(" in lines[0]  # a hint in brackets
    for s in says:
        assert s in lines[0], lines[0]


class TestRefusedAtTheEdge:
    def test_m5_missing(self, tmp_path: Path) -> None:
        out = _invoke(tmp_path, "image", "--m5", str(tmp_path / "nope"))
        _one_line(out, 2, "--m5", "does not exist")
        assert not (tmp_path / "work").exists()

    def test_m5_a_directory_for_the_check_too(self, tmp_path: Path) -> None:
        out = _invoke(tmp_path, "image", "--check", "--m5", str(tmp_path))
        _one_line(out, 2, "is a directory")
        assert not (tmp_path / "work").exists()

    def test_m5_a_script(self, tmp_path: Path) -> None:
        script = tmp_path / "m5"
        script.write_text("#!/bin/sh\n")
        _one_line(_invoke(tmp_path, "image", "--m5", str(script)), 2, "not an ELF file")

    def test_a_payload_that_cannot_be_carried_before_anything_is_built(self, tmp_path: Path) -> None:
        script = tmp_path / "run.sh"
        script.write_text("#!/bin/sh\ntrue\n")
        _one_line(_invoke(tmp_path, "restore", "--script", str(script), "--payload", str(tmp_path / "nope")), 2,
                  "is not a directory")
        fifo_dir = tmp_path / "with-fifo"
        fifo_dir.mkdir()
        os.mkfifo(fifo_dir / "pipe")
        _one_line(_invoke(tmp_path, "restore", "--script", str(script), "--payload", str(fifo_dir)), 2, "special file")
        big = tmp_path / "big"
        big.mkdir()
        (big / "f").write_bytes(b"x" * 4096)
        _one_line(_invoke(tmp_path, "restore", "--script", str(script), "--payload", str(big),
                          HACKBACK_RESTORE_PAYLOAD_MAX_BYTES="1000"), 2, "over restore.payload_max_bytes")
        assert not (tmp_path / "work").exists()

    def test_a_user_layer_file_that_does_not_exist(self, tmp_path: Path) -> None:
        conf = tmp_path / "layer.toml"
        conf.write_text('[image]\nuser_scripts = ["missing.sh"]\n')
        _one_line(_invoke(tmp_path, "image", "--config", str(conf)), 2, "user_scripts", "missing.sh")
        conf.write_text('[image.user_files]\n"relative/path" = "layer.toml"\n')
        _one_line(_invoke(tmp_path, "image", "--config", str(conf)), 2, "not an absolute guest path")
        conf.write_text('[image.user_files]\n"/opt/x" = "gone.txt"\n')
        _one_line(_invoke(tmp_path, "checkpoint", "--config", str(conf)), 2, "gone.txt", "does not exist")
        assert not (tmp_path / "work").exists()

    def test_config_not_utf8(self, tmp_path: Path) -> None:
        conf = tmp_path / "latin1.toml"
        conf.write_bytes(b'name = "caf\xe9"\n')
        _one_line(_invoke(tmp_path, "kernel", "--config", str(conf)), 2, "is not UTF-8")
        assert not (tmp_path / "work").exists()

    def test_config_a_directory(self, tmp_path: Path) -> None:
        _one_line(_invoke(tmp_path, "env", "--config", str(tmp_path)), 2, "is a directory")

    def test_cache_size_and_digest_from_the_environment(self, tmp_path: Path) -> None:
        script = tmp_path / "s.rcS"
        script.write_text("echo hi\n")
        _one_line(_invoke(tmp_path, "restore", "--script", str(script), HACKBACK_RESTORE_L2="0"), 2, "restore.l2", "power of two")
        _one_line(_invoke(tmp_path, "kernel", HACKBACK_KERNEL_SHA256="abc"), 2, "kernel.sha256")
        assert not (tmp_path / "work").exists()

    def test_build_option_not_a_string(self, tmp_path: Path) -> None:
        conf = tmp_path / "hb.toml"
        conf.write_text("[gem5]\nbuild_options = { RUBY = false }\n")
        _one_line(_invoke(tmp_path, "env", "--config", str(conf)), 2, "RUBY = false is not a string")


class TestCheckpointManifestWithoutItsInfo:
    def _dir(self, tmp_path: Path, info: dict) -> Path:  # type: ignore[type-arg]
        d = tmp_path / "checkpoints" / "default"
        (d / "cpt.100").mkdir(parents=True)
        (d / "cpt.100" / "m5.cpt").write_text("")
        m = Manifest("checkpoints", "default")
        m.set_part("checkpoint", {}, {}, info)
        write_manifest(d, m)
        return d

    @pytest.mark.parametrize("info", [{}, {"cpt": None}, {"cpt": 100}, {"cpt": "../../elsewhere"}, {"cpt": "board"}])
    def test_one_line_naming_the_manifest(self, tmp_path: Path, info: dict) -> None:  # type: ignore[type-arg]
        d = self._dir(tmp_path, info)
        with pytest.raises(ArtifactError) as e:
            CheckpointArtifact.read(d)
        line = e.value.one_line()
        assert str(d / "manifest.json") in line and "names no checkpoint" in line and "\n" not in line

    def test_a_part_without_info_at_all(self, tmp_path: Path) -> None:
        d = self._dir(tmp_path, {"cpt": "cpt.100"})
        raw = json.loads((d / "manifest.json").read_text())
        del raw["parts"]["checkpoint"]["info"]
        (d / "manifest.json").write_text(json.dumps(raw))
        with pytest.raises(ArtifactError, match="has no 'info' object"):
            CheckpointArtifact.read(d)

    GOOD = {"cpt": "cpt.100", "tick": 100, "sim_seconds": 0.5, "host_seconds": 9.0,
            "gem5": {"release": "24.0.0.1", "version_tags": ["t"], "tree_sha256": "t", "binary_sha256": "b",
                     "env_image": "e", "binary": "/g"},
            "kernel": {"path": "/k", "sha256": "k"}, "image": {"path": "/d", "sha256": "d", "partuuid": "p-01"},
            "board": {"memory": "2GiB", "cores": 1, "cpu": "atomic"}, "boot": "fast", "kernel_args": "console=ttyS0"}

    def test_the_good_one_loads(self, tmp_path: Path) -> None:
        cpt = CheckpointArtifact.read(self._dir(tmp_path, self.GOOD))
        assert cpt.cpt.name == "cpt.100" and cpt.info.board.memory == "2GiB" and cpt.info.image.partuuid == "p-01"

    @pytest.mark.parametrize("damage", [("tick", None), ("board", {"memory": "2GiB"}), ("sim_seconds", "soon")])
    def test_a_manifest_missing_or_misspelling_a_field_is_one_line_naming_it(self, tmp_path: Path, damage) -> None:  # type: ignore[no-untyped-def]
        key, value = damage
        info = {k: v for k, v in self.GOOD.items() if k != key}
        if value is not None:
            info[key] = value
        d = self._dir(tmp_path, info)
        with pytest.raises(ArtifactError) as e:
            CheckpointArtifact.read(d)
        line = e.value.one_line()
        assert str(d / "manifest.json") in line and "\n" not in line and ("tick" in line or "cores" in line or "soon" in line)
