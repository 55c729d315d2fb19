"""What the store hands out: `Artifact` (one committed object: its manifest and digest-checked
payload files) and `BuildContext` (what a build function gets while an object is being made)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itictl.errors import CorruptObjectError
from itictl.store.digests import entry_matches
from itictl.store.manifest import Manifest

if TYPE_CHECKING:
    from itictl.store.store import Store

VERIFY_ON_READ_MAX = 64 * 1024 * 1024  # files up to this size are digest-checked on every read


@dataclass
class BuildContext:
    """What a build function gets: `out` (fresh dir for the payload), `work` (persistent across
    crashes, for resumable steps), the key being built, and a dict to fill with extra metadata."""

    key: str
    out: Path
    work: Path
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Artifact:
    store: "Store"
    key: str
    path: Path
    manifest: Manifest

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def params(self) -> dict[str, Any]:
        return self.manifest.params

    @property
    def parents(self) -> dict[str, str]:
        return self.manifest.parents

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest.meta

    def file(self, name: str, verify: bool = True) -> Path:
        """Path of a payload file, checked against the manifest (full digest for files up to
        64 MiB, size for larger ones; `itictl store verify` checks those fully)."""
        entry = self.manifest.files.get(name)
        p = self.path / name
        fix = f"run `itictl store rm {self.key[:12]}` and rerun the command that made it"
        if entry is None:
            raise CorruptObjectError(f"object {self.key[:12]} ({self.kind}) has no file {name!r}", fix)
        if not p.is_file():
            raise CorruptObjectError(f"object {self.key[:12]} ({self.kind}) is missing {name}", fix)
        if verify:
            size = p.stat().st_size
            if size != entry["size"]:
                raise CorruptObjectError(f"object {self.key[:12]} ({self.kind}): {name} has the wrong size", fix)
            if size <= VERIFY_ON_READ_MAX and not entry_matches(p, entry):
                raise CorruptObjectError(f"object {self.key[:12]} ({self.kind}): {name} digest mismatch", fix)
        return p

    def read_json(self, name: str) -> Any:
        return json.loads(self.file(name).read_text(encoding="utf-8"))

    def summary(self) -> dict[str, Any]:
        d = self.manifest.doc
        return {
            "key": self.key,
            "kind": self.kind,
            "path": str(self.path),
            "created": d.get("created"),
            "size": sum(f["size"] for f in self.manifest.files.values()),
            "parents": self.parents,
        }
