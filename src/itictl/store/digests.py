"""Cached digests of external files (a GGUF, a model folder's weight files, a --text file):
`file_digest`, `file_digests` (several files, the missing ones hashed in parallel) and `content_digests`.

A file under 1 GiB is identified by its sha256 (the hex string `sha256sum` prints). A larger file
(a model's weight shard) by its block digest `sha256-blocks64m:HEX`: the sha256 of the concatenated
32-byte sha256 digests of its consecutive 64 MiB blocks (the last one shorter). It is as exact as
the plain sha256 (every byte is hashed; a collision needs one in sha256), but the blocks are hashed
on all cores: one file's plain sha256 is sequential (12.9 s for a 13.76 GB Llama-2-7B-shaped file on
the H200 host, measured as eval's identity_hash phase), the block digest took 1.5 s there (16 cores,
file in the page cache; docs/benchmarks.md). The prefix says which
digest a value is, so `itictl store show` readers and other tools can tell them apart.

Digests are cached in cache/digests-v2.json by resolved path, size, mtime and inode (a changed or
replaced file gets a new entry; the v1 cache held plain sha256 values for every size and is not
read). The cache is only an accelerator: an unreadable cache is ignored, a failed write is harmless.
hashlib releases the GIL on large buffers, so threads hash concurrently.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Iterator, Sequence

from itictl.store.atomic import write_text_atomic
from itictl.store.keys import sha256_file as _sha256

CACHE_FILE = "digests-v2.json"
BLOCKS_MIN = 1 << 30  # files from this size on get the block digest
BLOCK = 64 << 20
BLOCKS_PREFIX = "sha256-blocks64m:"


def _cores() -> int:
    """Cores the hashing threads may use: this process's, less those `leaving_cores` reserves (≥ 1)."""
    from itictl.config import cores

    return max(1, cores() - _RESERVED)


_RESERVED = 0


@contextlib.contextmanager
def leaving_cores(n: int) -> Iterator[None]:
    """Within the block, hashes leave `n` cores to other work of this process. The eval hashes a cold
    model folder while a thread imports torch and transformers and reads the weights (models/preload.py),
    and that thread, not the hash, is the critical path: on the 16-core H200 host its torch import
    took 3.4-4.3 s beside 14-16 hashing threads and 1.7 s beside 8 (docs/benchmarks.md)."""
    global _RESERVED
    before, _RESERVED = _RESERVED, max(0, int(n))
    try:
        yield
    finally:
        _RESERVED = before


def block_digest(path: Path, threads: int | None = None, block: int | None = None) -> str:
    """`sha256-blocks64m:HEX` of `path` (see the module docstring); blocks hashed on `threads` threads
    (default: every core less those `leaving_cores` reserves), each from a zero-copy slice of one read-only mapping (reads
    into per-thread buffers instead measured 3.2 s against 1.3-1.6 s for the 13.76 GB folder on the
    GPU host: the extra copy competes with everything else for memory bandwidth)."""
    import mmap
    from concurrent.futures import ThreadPoolExecutor

    block = block or BLOCK
    with open(path, "rb", buffering=0) as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        view = memoryview(m)

        def one(start: int) -> bytes:
            with view[start:start + block] as part:
                return hashlib.sha256(part).digest()

        try:
            with ThreadPoolExecutor(max(1, threads or _cores())) as pool:
                parts = list(pool.map(one, range(0, len(view), block)))
        finally:
            view.release()
    return BLOCKS_PREFIX + hashlib.sha256(b"".join(parts)).hexdigest()


BLOCKS_FIELD = "sha256-blocks64m"  # a manifest entry's digest field for files from BLOCKS_MIN on


def file_entry(path: Path) -> dict:
    """A manifest's record of one payload file: {"sha256", "size"} under 1 GiB, else
    {"sha256-blocks64m": HEX, "size"} (the block digest, hashed on every core; for a 1.5 GB
    activations file on the GPU host ~0.2 s is expected from the identity's measured 13.76 GB in
    1.5 s, against the ~1.3 s per file its plain sha256 took in a profile — not timed separately)."""
    path = Path(path)
    size = path.stat().st_size
    if size >= BLOCKS_MIN:
        return {BLOCKS_FIELD: block_digest(path)[len(BLOCKS_PREFIX):], "size": size}
    return {"sha256": _sha256(path), "size": size}


def entry_matches(path: Path, entry: dict) -> bool:
    """Does `path` still have the digest its manifest entry records (either field)?"""
    if "sha256" in entry:
        return _sha256(Path(path)) == entry["sha256"]
    want = entry.get(BLOCKS_FIELD)
    return want is not None and block_digest(Path(path)) == BLOCKS_PREFIX + want


def content_digests(paths: Sequence[Path | str], threads: int | None = None) -> list[str]:
    """The identity digest of every file (plain sha256 hex under BLOCKS_MIN, else the block digest):
    the small ones one thread per file (at most `threads`, default min(8, cores)), then each large
    one with its blocks spread over every core."""
    paths = [Path(p) for p in paths]
    big = [p.stat().st_size >= BLOCKS_MIN for p in paths]
    out: dict[int, str] = {i: block_digest(p) for i, (p, b) in enumerate(zip(paths, big)) if b}
    small = [i for i, b in enumerate(big) if not b]
    if len(small) <= 1:
        out.update({i: _sha256(paths[i]) for i in small})
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, min(threads or 8, _cores(), len(small)))) as pool:
            out.update(zip(small, pool.map(_sha256, [paths[i] for i in small])))
    return [out[i] for i in range(len(paths))]


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
    """content_digests of every path, cached under `cache_dir` by path, size, mtime and inode; the files not
    in the cache are hashed concurrently (content_digests) and the cache is written once."""
    resolved = [Path(p).resolve() for p in paths]
    idents = [_ident(p) for p in resolved]
    cache_file = cache_dir / CACHE_FILE
    cache = _read_cache(cache_file)
    missing = [i for i, ident in enumerate(idents) if ident not in cache]
    if not missing:
        return [cache[ident] for ident in idents]
    for i, d in zip(missing, content_digests([resolved[i] for i in missing], threads)):
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
    """content_digests of `path`, cached under `cache_dir` (see file_digests)."""
    return file_digests(cache_dir, [path])[0]
