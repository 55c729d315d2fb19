"""Host memory for the probe step: buffers whose pages are faulted in at once, and an HDF5's raw
chunks read through a mapping of the file instead of copies.

On the VMs measured (2-core development machine, loaded), the first touch of fresh `np.empty` pages
costs ~3 CPU s per GB (one fault per 4 KiB page), more than the whole probe solve; a buffer mapped
with transparent huge pages and populated in one madvise call costs ~0.1 s per GB. Likewise
mapping the file and populating its pages in one call costs about half of reading it with preads.

- `populated(shape, dtype)`: like np.empty, its pages already faulted in (np.empty where the
  kernel offers neither, or for small buffers);
- `for_each_chunk(ds, consume, threads)`: consume(region, block) over the blocks tiling an h5py
  dataset, like itictl.extract.h5.read_chunks (same regions, stored dtype), with blocks that are
  views of the mapped file where raw chunks apply; consume runs on `threads` threads.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

MADV_POPULATE_READ, MADV_POPULATE_WRITE = 22, 23  # Linux >= 5.14 (not in Python 3.11's mmap module)
SMALL = 1 << 20  # below this, np.empty


def _advise(m: mmap.mmap, option: int | None, start: int = 0, length: int = 0) -> None:
    if option is None or not hasattr(m, "madvise"):
        return
    try:
        m.madvise(option, start, length) if length else m.madvise(option)
    except (OSError, ValueError):  # an older kernel or another OS: pages fault in on first touch
        pass


def populated(shape, dtype=np.float32) -> np.ndarray:
    """An uninitialised array of `shape` whose pages are already in memory."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < SMALL or not hasattr(mmap, "MAP_ANONYMOUS") or os.name != "posix":
        return np.empty(shape, dtype)
    m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    _advise(m, getattr(mmap, "MADV_HUGEPAGE", None))
    _advise(m, MADV_POPULATE_WRITE)
    return np.frombuffer(m, dtype=dtype).reshape(shape)  # the array keeps the mapping alive


def mapped_chunks(ds) -> list[tuple[tuple[slice, ...], np.ndarray]] | None:
    """(region, block view) of every chunk of an unfiltered chunked h5py dataset, read through a
    read-only mapping of its file (the chunks' pages populated at once); None where raw chunk
    reads do not apply (itictl.extract.h5's rules) or the file cannot be mapped."""
    from itictl.extract.h5 import _raw_chunks

    chunks = _raw_chunks(ds)
    if not chunks or os.name != "posix":
        return None
    try:
        with open(ds.file.filename, "rb") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    first = min(a for _, a, _ in chunks) // mmap.PAGESIZE * mmap.PAGESIZE
    last = max(a + s for _, a, s in chunks)
    _advise(m, MADV_POPULATE_READ, first, last - first)
    raw = np.frombuffer(m, dtype=np.uint8)
    out = []
    for origin, addr, size in chunks:
        block = raw[addr:addr + size].view(ds.dtype).reshape(ds.chunks)
        region = tuple(slice(o, min(o + c, n)) for o, c, n in zip(origin, ds.chunks, ds.shape))
        out.append((region, block[tuple(slice(0, r.stop - r.start) for r in region)]))
    return out


def for_each_chunk(ds, consume, threads: int | None = None) -> None:
    """consume(region, block) for the blocks tiling `ds` (mapped views, else read_chunks' copies)."""
    from concurrent.futures import ThreadPoolExecutor

    from itictl.extract.h5 import read_chunks

    blocks = mapped_chunks(ds)
    if blocks is None:
        read_chunks(ds, consume, threads)
        return
    from itictl.config import cores

    n = threads or min(8, cores())
    if n <= 1:
        for region, block in blocks:
            consume(region, block)
        return
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda item: consume(*item), blocks))
