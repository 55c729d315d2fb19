"""Shared CLI plumbing: global state (store, output mode), list parsing, artifact results, torchrun sessions.

Every command gets `AppState` from the Typer context via `state(ctx)`. Commands parse options,
call the library, and hand one result dict to `AppState.out.result`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import typer

from itictl.output import Output

_OPEN_LEASES: list[Any] = []


def release_leases() -> None:
    """Release the store leases taken by commands in this process (called by cli.app.main)."""
    while _OPEN_LEASES:
        cm = _OPEN_LEASES.pop()
        cm.__exit__(None, None, None)


@dataclass
class AppState:
    store_path: str | None = None
    out: Output = field(default_factory=Output)
    _store: Any = None
    lease: bool = True  # `store gc` turns this off: it takes the lease exclusively itself

    @property
    def store(self):
        """The store, with a shared lease held for the rest of the command, so that a concurrent
        `itictl store gc` waits instead of deleting what this command has made or is reading."""
        if self._store is None:
            from itictl.config import store_root
            from itictl.errors import StoreError
            from itictl.store import Store

            store = Store(store_root(self.store_path))
            if self.lease:
                try:
                    cm = store.lease()
                    cm.__enter__()
                    _OPEN_LEASES.append(cm)
                except StoreError:
                    pass  # a read-only store: reading still works; writing raises its own error
            self._store = store
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


def rank_session(st: AppState, device: str | None, device_map: str | None):
    """The torch.distributed session of a command started by torchrun (a no-op for one process):
    checks --device-map against it, and makes every rank but 0 quiet (rank 0 alone shows progress
    and prints the result). Use as `with rank_session(st, device, device_map) as dist:`."""
    import contextlib

    from itictl.compute import distributed
    distributed.check_device_map(device_map, distributed.env_context())

    @contextlib.contextmanager
    def run():
        with distributed.session(device) as dist:
            if not dist.is_main:
                from itictl.models.quiet import set_load_quiet

                st.out.quiet = True
                set_load_quiet(True)
            yield dist

    return run()
