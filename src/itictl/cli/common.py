"""Shared CLI plumbing: global state (store, output mode), option helpers, artifact results.

Every command gets `AppState` from the Typer context via `state(ctx)`. Commands parse options,
call the library, and hand one result dict to `AppState.out.result`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import typer

from itictl.output import Output


@dataclass
class AppState:
    store_path: str | None = None
    out: Output = field(default_factory=Output)
    _store: Any = None

    @property
    def store(self):
        if self._store is None:
            from itictl.config import store_root
            from itictl.store import Store

            self._store = Store(store_root(self.store_path))
        return self._store


def state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if root.obj is None:
        root.obj = AppState()
    return root.obj


def artifact_doc(art, cached: bool, **extra: Any) -> dict[str, Any]:
    """The JSON every artifact-making command prints: key, kind, cached, path (+ extras)."""
    return {"key": art.key, "kind": art.kind, "cached": cached, "path": str(art.path), **extra}


def split_list(value: str | None) -> list[str]:
    """'a,b , c' -> ['a', 'b', 'c'] (for --model a,b and friends)."""
    if value is None:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def not_built(name: str, issue: str) -> None:
    from itictl.errors import NotBuiltError

    raise NotBuiltError(f"`itictl {name}` is not built yet", f"it is planned ({issue}); see docs/guide.md")
