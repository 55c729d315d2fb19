"""Work the store finishes after a step returns: `later(fn, *args)` runs fn in a non-daemon thread
and `wait()` joins every such thread of this process.

Used for the slow tail of a commit that nothing in the step waits on: the objects directory's fsync
after an object is renamed into place (atomic.commit_dir) and the deletion of a finished step's work
folder (gc.remove_later). Python joins non-daemon threads at exit, and the CLI's fast exit
(cli/app.fast_exit) and `store gc` call `wait()` first, so a finished command has done all of it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

_THREADS: list[threading.Thread] = []
_LOCK = threading.Lock()


def later(fn: Callable[..., Any], *args: Any, name: str = "itictl-later") -> None:
    """Run fn(*args) in a new non-daemon thread now; `wait()` joins it."""
    t = threading.Thread(target=fn, args=args, name=name, daemon=False)
    with _LOCK:
        _THREADS.append(t)
    t.start()


def pending() -> list[threading.Thread]:
    """The threads started by `later` that `wait` has not joined yet."""
    with _LOCK:
        return list(_THREADS)


def wait() -> None:
    """Join every thread started by `later` in this process."""
    while True:
        with _LOCK:
            if not _THREADS:
                return
            t = _THREADS.pop()
        t.join()
