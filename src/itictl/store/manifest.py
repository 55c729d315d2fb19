"""Manifests: the JSON record of one object (kind, params, parents, file digests, provenance).

A manifest carries its own digest (`manifest_sha256`, over the canonical JSON of every other
field), so a flipped byte anywhere in it is detected on read, and its `key` must equal the key
recomputed from kind/params/parents/versions and the object's directory name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itictl.errors import CorruptObjectError
from itictl.store.digests import file_entry
from itictl.store.keys import canonical_json, compute_key, sha256_text

MANIFEST = "manifest.json"


def seal(doc: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in doc.items() if k != "manifest_sha256"}
    return {**body, "manifest_sha256": sha256_text(canonical_json(body))}


def describe_files(root: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {"sha256" (or "sha256-blocks64m" from 1 GiB on), "size"}} of every payload file."""
    files: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(root).as_posix()
            files[rel] = file_entry(p)
    return files


@dataclass
class Manifest:
    doc: dict[str, Any]

    @property
    def key(self) -> str:
        return self.doc["key"]

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def params(self) -> dict[str, Any]:
        return self.doc["params"]

    @property
    def parents(self) -> dict[str, str]:
        return self.doc["parents"]

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.doc["files"]

    @property
    def meta(self) -> dict[str, Any]:
        return self.doc.get("meta", {})

    @classmethod
    def read(cls, path: Path, expected_key: str | None = None) -> "Manifest":
        key_hint = expected_key or path.parent.name
        fix = f"run `itictl store rm {key_hint[:12]}` and rerun the command that made it"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CorruptObjectError(f"object {key_hint[:12]} has no manifest", fix) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptObjectError(f"object {key_hint[:12]} has an unreadable manifest ({e.__class__.__name__})", fix) from None
        if not isinstance(doc, dict) or "manifest_sha256" not in doc:
            raise CorruptObjectError(f"object {key_hint[:12]} has a malformed manifest", fix)
        if seal(doc)["manifest_sha256"] != doc["manifest_sha256"]:
            raise CorruptObjectError(f"object {key_hint[:12]}: manifest digest mismatch (modified or corrupt)", fix)
        try:
            recomputed = compute_key(doc["kind"], doc["params"], doc["parents"],
                                     schema_version=doc["schema_version"], step_version=doc["step_version"])
        except (KeyError, TypeError):
            raise CorruptObjectError(f"object {key_hint[:12]} has a malformed manifest", fix) from None
        if recomputed != doc.get("key") or (expected_key and expected_key != recomputed):
            raise CorruptObjectError(f"object {key_hint[:12]}: manifest does not match its key", fix)
        return cls(doc)
