"""Writing the big arrays of activations.h5 fast: each dataset is created with its chunks allocated
at once and never filled (HDF5 writes only metadata), the chunks' file addresses are recorded, and
once the file is closed every chunk's bytes go in with parallel pwritev calls (the strided gather
of a chunk's rows runs on the writing threads too). Where the h5py / HDF5 in use cannot allocate
early or report chunk addresses, a dataset is written through h5py as before (`create_dataset(data=)`).
The bytes are those HDF5 would write: the rows of a partial last chunk are zero-padded, like
HDF5's default fill value."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

# an array, its chunk shape, and (origin, file address, bytes) of each chunk (as extract.h5._raw_chunks lists them)
ChunkJob = tuple[np.ndarray, tuple[int, ...], list[tuple[tuple[int, ...], int, int]]]


def raw_supported() -> bool:
    """True when this h5py / HDF5 can allocate a dataset's chunks early and report their addresses."""
    import h5py

    return (hasattr(h5py.h5p.PropDCID, "set_alloc_time") and hasattr(h5py.h5d, "FILL_TIME_NEVER")
            and hasattr(h5py.h5d.DatasetID, "get_chunk_info"))


def create_big(f: Any, name: str, full: np.ndarray, chunks: tuple[int, ...]) -> ChunkJob | None:
    """Create dataset `name` holding `full` (chunked as `chunks`, unfiltered) in the open h5py file
    `f`. -> the job for `write_chunks` (to run after the file is closed), or None when the data was
    written through h5py here."""
    import h5py

    if (not raw_supported() or full.size == 0 or f.driver != "sec2" or f.userblock_size
            or not full.dtype.isnative):
        f.create_dataset(name, data=full, chunks=chunks)
        return None
    from itictl.extract.h5 import _raw_chunks

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)   # every chunk gets its file space now
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)     # and HDF5 writes none of it
    ds = f.create_dataset(name, shape=full.shape, dtype=full.dtype, chunks=chunks, dcpl=dcpl)
    plan = _raw_chunks(ds)
    if plan is None:  # chunks not all allocated at full size after all: the plain dataset instead
        del f[name]     # (HDF5 writing into never-filled chunks would leave a partial one's padding undefined)
        f.create_dataset(name, data=full, chunks=chunks)
        return None
    return full, tuple(chunks), plan


def write_chunks(path: Path, jobs: list[ChunkJob], threads: int | None = None) -> None:
    """Write each job's array (from `create_big`) into its chunks' file space in the closed HDF5
    file `path`, with parallel pwritev calls (min(8, cores) threads unless `threads`)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    work = [(full, shape, item) for full, shape, plan in jobs for item in plan]
    if not work:
        return
    work.sort(key=lambda w: w[2][1])  # in file order
    local = threading.local()
    fd = os.open(path, os.O_WRONLY)

    def write(job) -> None:
        full, shape, (origin, addr, size) = job
        key = (shape, full.dtype.str)
        bufs = local.__dict__.setdefault("bufs", {})
        if key not in bufs:
            bufs[key] = np.empty(shape, dtype=full.dtype)
        buf = bufs[key]
        region = tuple(slice(o, min(o + c, n)) for o, c, n in zip(origin, shape, full.shape))
        block = full[region]
        if block.shape != shape:
            buf.fill(0)  # the part of a partial chunk outside the dataset: HDF5's fill value
        buf[tuple(slice(0, s) for s in block.shape)] = block
        _pwrite_all(fd, buf.reshape(-1).view(np.uint8), addr, size, path)

    try:
        from itictl.config import cores

        with ThreadPoolExecutor(threads or min(8, cores())) as pool:
            list(pool.map(write, work))
    finally:
        os.close(fd)


def _pwrite_all(fd: int, view: np.ndarray, addr: int, size: int, path: Path) -> None:
    if view.nbytes != size:
        raise ValueError(f"an HDF5 chunk of {size} bytes in {path} for a buffer of {view.nbytes}")
    done = 0
    while done < size:
        k = os.pwritev(fd, [view[done:]], addr + done)
        if k <= 0:
            raise OSError(f"short write of an HDF5 chunk in {path}")
        done += k

