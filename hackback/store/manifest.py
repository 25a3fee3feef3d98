"""An artifact's manifest.json: its parts, each with the inputs it was made from and its outputs' hashes."""
from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..base.errors import ArtifactError
from .hashes import HashCache, digest_of

SCHEMA_VERSION = 1


MANIFEST = "manifest.json"


@dataclass
class Manifest:
    """What an artifact was made from (inputs, whose digest decides staleness),
    what it is (outputs with sha256), and facts worth keeping (info).
    `parts` lets one artifact be brought up to date piece by piece (env: m5, gem5)."""

    kind: str
    name: str
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def part(self, part: str) -> Optional[dict[str, Any]]:
        return self.parts.get(part)

    def has(self, part: str) -> bool:
        return part in self.parts

    # The typed reads of a part: steps use these (and records' Record.of for its
    # info), never walk the part's dict themselves.

    def info(self, part: str) -> Optional[Mapping[str, Any]]:
        """The part's info, for a record to read (records.Record.of); None without the part."""
        p = self.parts.get(part)
        return p.get("info", {}) if p is not None else None

    def inputs_of(self, part: str) -> Mapping[str, Any]:
        """The inputs the part was made from ({} without the part)."""
        return dict(self.parts.get(part, {}).get("inputs", {}))

    def outputs_of(self, part: str) -> Mapping[str, Any]:
        """The part's outputs, name -> record ({} without the part)."""
        return dict(self.parts.get(part, {}).get("outputs", {}))

    def inputs_digest(self, part: str) -> str:
        return str(self.parts[part]["inputs_digest"])

    def built_at(self, part: str) -> float:
        """When the part was written (seconds since the epoch, to the second)."""
        return _dt.datetime.fromisoformat(str(self.parts[part]["built_at"])).timestamp()

    def output_sha256(self, part: str, name: str) -> Optional[str]:
        out = self.parts.get(part, {}).get("outputs", {}).get(name)
        return str(out["sha256"]) if isinstance(out, Mapping) and "sha256" in out else None

    def identity(self, part: str) -> str:
        """What the part is, whole: its inputs' digest and its outputs (what a dependant keys on)."""
        p = self.parts[part]
        return digest_of({"inputs": p["inputs_digest"], "outputs": p["outputs"]})

    def put_part(self, part: str, record: dict[str, Any]) -> None:
        """A whole part record as part_record() made it."""
        self.parts[part] = record

    def set_part(self, part: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any], info: Mapping[str, Any]) -> None:
        self.parts[part] = part_record(inputs, outputs, info)

    def is_fresh(self, part: str, inputs: Mapping[str, Any], directory: Path, hashes: "HashCache") -> bool:
        """Same inputs as recorded, and every recorded output file still there with
        its sha256: a file changed in place at the same size is seen. The hash cache
        (size, mtime, inode) means an unchanged file is not read again."""
        return self.staleness(part, inputs, directory, hashes) is None

    def staleness(self, part: str, inputs: Mapping[str, Any], directory: Path, hashes: "HashCache") -> Optional[str]:
        """Why `part` would be built again, in words (None: it is up to date)."""
        rec = self.parts.get(part)
        if rec is None:
            return "not built yet"
        if rec.get("inputs_digest") != digest_of(inputs):
            old = rec.get("inputs", {})
            changed = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
            return f"its inputs changed ({', '.join(changed) or 'their form'})"
        for rel, out in rec.get("outputs", {}).items():
            if isinstance(out, dict) and "size" in out:
                p = directory / rel
                if not p.is_file() or p.stat().st_size != out["size"]:
                    return f"its output {rel} is missing or has another size"
                if "sha256" in out and hashes.sha256(p) != out["sha256"]:
                    return f"its output {rel} was changed"
        return None

    def to_json(self) -> str:
        return json.dumps({"schema": self.schema, "kind": self.kind, "name": self.name, "parts": self.parts}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, directory: Path) -> Optional["Manifest"]:
        path = directory / MANIFEST
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            # `clean` leaves a directory whose manifest it cannot read: it may not be ours.
            raise ArtifactError(f"{path} is unreadable ({e})", f"delete {directory} yourself and rebuild") from None
        if not isinstance(raw, dict):
            raise ArtifactError(f"{path} is not a hackback manifest (JSON {type(raw).__name__}, not an object)",
                                f"delete {directory} yourself and rebuild")
        if raw.get("schema") != SCHEMA_VERSION:
            raise ArtifactError(
                f"{path} has manifest schema {raw.get('schema')}, this hackback writes {SCHEMA_VERSION}",
                "rebuild it with --force",
            )
        problem = cls._shape_problem(raw)
        if problem:
            raise ArtifactError(f"{path} is not a hackback manifest: {problem}", f"delete {directory} yourself and rebuild")
        return cls(kind=raw["kind"], name=raw["name"], parts=raw.get("parts", {}), schema=raw["schema"])

    @staticmethod
    def _shape_problem(raw: dict[str, Any]) -> str:
        """What is missing or of the wrong type in well-formed JSON, "" when it has a manifest's shape
        (every reader indexes parts[...]["inputs"/"outputs"/"info"] without looking first)."""
        for key in ("kind", "name"):
            if not isinstance(raw.get(key), str):
                return f"'{key}' is {raw.get(key)!r}, not a string"
        parts = raw.get("parts", {})
        if not isinstance(parts, dict):
            return f"'parts' is a {type(parts).__name__}, not an object"
        for part, rec in parts.items():
            if not isinstance(rec, dict):
                return f"part '{part}' is a {type(rec).__name__}, not an object"
            for key in ("inputs", "outputs", "info"):
                if not isinstance(rec.get(key), dict):
                    return f"part '{part}' has no '{key}' object"
            if not isinstance(rec.get("inputs_digest"), str):
                return f"part '{part}' has no 'inputs_digest'"
        return ""


def part_record(inputs: Mapping[str, Any], outputs: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "inputs": dict(inputs),
        "inputs_digest": digest_of(inputs),
        "outputs": dict(outputs),
        "info": dict(info),
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "built_on": socket.gethostname(),
    }


def write_atomically(path: Path, text: str) -> None:
    """path holds text whole or not at all (a reader never sees half of it): written beside it, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_manifest(directory: Path, manifest: Manifest) -> None:
    write_atomically(directory / MANIFEST, manifest.to_json())
