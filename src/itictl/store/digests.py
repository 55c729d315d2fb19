"""Cached sha256 of external files (a GGUF, a model folder's weight files): `file_digest`.

External inputs are keyed by their digest, which is expensive for multi-GB files, so digests are
cached in cache/digests.json by resolved path, size and mtime (a changed file gets a new entry).
The cache is only an accelerator: an unreadable cache is ignored, a failed write is harmless.
"""

from __future__ import annotations

import json
from pathlib import Path

from itictl.store.atomic import write_text_atomic
from itictl.store.keys import sha256_file

CACHE_FILE = "digests.json"


def file_digest(cache_dir: Path, path: Path | str) -> str:
    """sha256 of `path`, cached under `cache_dir` by path, size and mtime."""
    path = Path(path).resolve()
    st = path.stat()
    cache_file = cache_dir / CACHE_FILE
    ident = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    if ident in cache:
        return cache[ident]
    digest = sha256_file(path)
    cache[ident] = digest
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache_file, json.dumps(cache))
    except OSError:
        pass
    return digest
