"""Named instrumentation points, for crash/concurrency tests and debugging.

Library code calls `fire(name, **info)` at a few documented points; nothing happens unless a
callback was registered (`register(name, fn)`), so the cost is one dict lookup. Tests use these
instead of replacing private functions.

Points:
  extract.chunk_saved   path: Path        after a resumable chunk folder is committed
  store.build_start     kind, key         before an artifact's build runs
  store.built           kind, key         after the build returned, before the object is sealed
  store.sealing         kind, key         while the object is being sealed (made read-only)
  probe.start           key               before the probe step computes
  timing.start / timing.end   phase       around a timed phase (`timed(name)`: identity_hash,
                                          model_load, extract:FORMAT; evaluate/timings.py collects them)
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

_HOOKS: dict[str, list[Callable[..., Any]]] = {}


def register(name: str, fn: Callable[..., Any]) -> Callable[[], None]:
    """Call fn(**info) whenever `name` fires; returns a function that removes it again."""
    _HOOKS.setdefault(name, []).append(fn)

    def remove() -> None:
        if fn in _HOOKS.get(name, []):
            _HOOKS[name].remove(fn)

    return remove


def fire(name: str, **info: Any) -> None:
    for fn in list(_HOOKS.get(name, ())):
        fn(**info)


def clear() -> None:
    _HOOKS.clear()


@contextlib.contextmanager
def timed(name: str) -> Iterator[None]:
    """Fire `timing.start` and `timing.end` (phase=name) around the block; a listener reads the clock."""
    fire("timing.start", phase=name)
    try:
        yield
    finally:
        fire("timing.end", phase=name)
