"""File locks: one exclusive lock per key, and a store-wide shared/exclusive lease for gc;
`try_flock` tests a key lock without waiting (gc keeps the work of a step whose lock is held).

Both use fcntl.flock, which the kernel releases when the holding process dies, so a lock left by
a killed process never blocks anyone (stale locks recover by themselves). On file systems where
flock is not coherent across hosts (some NFS setups) see docs/scaling.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def flock(path: Path, exclusive: bool = True, timeout: float | None = None,
          on_wait=None) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            start = time.monotonic()
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if timeout is not None and time.monotonic() - start > timeout:
                        raise TimeoutError(f"timed out waiting for lock {path.name}") from None
                    time.sleep(0.05)
        if exclusive:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


@contextlib.contextmanager
def try_flock(path: Path) -> Iterator[bool]:
    """The exclusive lock at `path` without waiting: yields True while this process holds it, or
    False at once when another holder has it (gc uses this to skip work of a running step)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    got = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            got = True
        except BlockingIOError:
            pass
        yield got
    finally:
        try:
            if got:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
