"""How an OSError from a store write reaches the user: a StoreError naming the cause and the fix
(full disk, read-only store, anything else)."""

from __future__ import annotations

import errno
from pathlib import Path

from itictl.errors import StoreError

NOT_WRITABLE_HINT = "pass --store PATH or set ITICTL_HOME to a writable directory"


def store_os_error(e: OSError, root: Path) -> StoreError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StoreError("the store's disk is full", f"free space under {root} or run `itictl store gc`")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreError(f"the store at {root} is not writable", NOT_WRITABLE_HINT)
    return StoreError(f"store write failed: {e.strerror or e}", "check the store directory and free space")
