"""Where things live: the store root and the TruthfulQA data directory; and `cores()`, the CPU
cores this process may run on (the one count every thread pool sizes itself by).

Precedence for the store: `--store` > `$ITICTL_HOME` > the platformdirs user data dir.
Precedence for data: `--data` > `$ITICTL_DATA` > the Hugging Face Hub (when online).
"""

from __future__ import annotations

import os
from pathlib import Path


def store_root(cli_value: str | os.PathLike | None = None) -> Path:
    if cli_value:
        return Path(cli_value).expanduser().resolve()
    env = os.environ.get("ITICTL_HOME")
    if env:
        return Path(env).expanduser().resolve()
    from platformdirs import user_data_dir

    return Path(user_data_dir("itictl", appauthor=False)).resolve()


def data_dir(cli_value: str | os.PathLike | None = None) -> Path | None:
    """The local TruthfulQA directory, or None to use the Hub."""
    if cli_value:
        return Path(cli_value).expanduser().resolve()
    env = os.environ.get("ITICTL_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return None


def debug_enabled() -> bool:
    return os.environ.get("ITICTL_DEBUG", "") not in ("", "0", "false", "no")


def cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
