"""Cached sha256 of external files (a GGUF, a model folder's weight files): `file_digest`,
`file_digests` (several files, the missing ones hashed in parallel threads) and `sha256_files`.

External inputs are keyed by their digest, which is expensive for multi-GB files, so digests are
cached in cache/digests.json by resolved path, size, mtime and inode (a changed or replaced file gets
a new entry). The cache is only an accelerator: an unreadable cache is ignored, a failed write is
harmless. Hashing is hashlib's sha256 (it releases the GIL on large blocks, so the files of a sharded
model folder are hashed concurrently, one thread per file); one file's sha256 is sequential by nature.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

from itictl.store.atomic import write_text_atomic

CACHE_FILE = "digests.json"


def _sha256(path: Path) -> str:
    """One update over a read-only mapping (~12 % faster than buffered reads on the GPU host); the GIL
    is released throughout, so other threads run meanwhile."""
    import mmap

    with open(path, "rb", buffering=0) as f:
        try:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return hashlib.sha256(m).hexdigest()
        except (ValueError, OSError):  # an empty file, or a file system without mmap
            f.seek(0)
            return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_files(paths: Sequence[Path | str], threads: int | None = None) -> list[str]:
    """sha256 of every file, one thread per file (at most `threads`, default min(8, cores))."""
    paths = [Path(p) for p in paths]
    if len(paths) <= 1:
        return [_sha256(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with ThreadPoolExecutor(max(1, min(threads or 8, cores, len(paths)))) as pool:
        return list(pool.map(_sha256, paths))


def _ident(path: Path) -> str:
    st = path.stat()
    return f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"


def _read_cache(cache_file: Path) -> dict:
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def all_cached(cache_dir: Path, paths: Sequence[Path | str]) -> bool:
    """True when every path's digest is in the cache (as the files are now)."""
    cache = _read_cache(cache_dir / CACHE_FILE)
    return all(_ident(Path(p).resolve()) in cache for p in paths)


def file_digests(cache_dir: Path, paths: Sequence[Path | str], threads: int | None = None) -> list[str]:
    """sha256 of every path, cached under `cache_dir` by path, size, mtime and inode; the files not
    in the cache are hashed concurrently (sha256_files) and the cache is written once."""
    resolved = [Path(p).resolve() for p in paths]
    idents = [_ident(p) for p in resolved]
    cache_file = cache_dir / CACHE_FILE
    cache = _read_cache(cache_file)
    missing = [i for i, ident in enumerate(idents) if ident not in cache]
    if not missing:
        return [cache[ident] for ident in idents]
    for i, d in zip(missing, sha256_files([resolved[i] for i in missing], threads)):
        cache[idents[i]] = d
    out = [cache[ident] for ident in idents]
    cache.update(_read_cache(cache_file))  # entries another process added meanwhile
    cache.update({idents[i]: out[i] for i in missing})
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache_file, json.dumps(cache))
    except OSError:
        pass
    return out


def file_digest(cache_dir: Path, path: Path | str) -> str:
    """sha256 of `path`, cached under `cache_dir` (see file_digests)."""
    return file_digests(cache_dir, [path])[0]
