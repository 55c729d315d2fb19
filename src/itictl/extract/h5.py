"""The activations.h5 payload: writing it (from in-memory arrays or chunk folders; raw chunk
writes in h5_write), and the Activations reader
(`keep_loaded()`: one in-memory copy of a file's head-wise activations for a whole block of work)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

H5_NAME = "activations.h5"
CHUNK_ROWS = 512  # prompts per HDF5 chunk of the big datasets (chunks: rows x 1 layer x width)



def digest16(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def np_dtype(store_dtype: str):
    """The numpy dtype activations are stored in for a --store-dtype."""
    return np.float16 if store_dtype == "float16" else np.float32


def write_h5(path: Path, files: list[Path], prompts, n_tokens: np.ndarray, *, fmt: str, dtype: str,
              store_dtype: str, layer_wise: bool, layout, hidden: int, model_key: str,
              arrays: dict[str, np.ndarray] | None = None) -> None:
    """activations.h5 for `prompts`: the big arrays from `arrays` ("head" [N, L, W], "resid"
    [N, L+1, hidden] when layer-wise: complete, in the stored dtype) when given, else merged from
    the chunk folders `files`; written as raw chunks in parallel (h5_write)."""
    import h5py

    from itictl.extract.h5_write import create_big, write_chunks

    n = len(prompts)
    np_dt = np_dtype(store_dtype)
    rows = min(n, CHUNK_ROWS)
    jobs = []
    with h5py.File(path, "w") as f:
        specs = [("head_wise", "head", (n, layout.n_layers, layout.width))]
        if layer_wise:
            specs.append(("layer_wise", "resid", (n, layout.n_layers + 1, hidden)))
        for name, key, shape in specs:
            full = merge_chunk_files(files, key, shape, np_dt) if arrays is None else arrays[key]
            if full.shape != shape or full.dtype != np_dt:
                raise ValueError(f"{key} activations of shape {full.shape} ({full.dtype}), expected {shape}")
            job = create_big(f, name, full, (rows, 1, shape[2]))
            if job is not None:
                jobs.append(job)
            del full
        f.create_dataset("label", data=np.array([int(p.label) for p in prompts], dtype=np.int8))
        f.create_dataset("question_index", data=np.array([p.question_index for p in prompts], dtype=np.int32))
        f.create_dataset("answer_index", data=np.array([p.answer_index for p in prompts], dtype=np.int32))
        f.create_dataset("n_tokens", data=n_tokens)
        cats = [getattr(p, "category", None) for p in prompts]
        if any(c is not None for c in cats):
            f.create_dataset("category", data=[c or "" for c in cats], dtype=h5py.string_dtype())
        f.attrs.update({"model": model_key, "L": layout.n_layers, "H": layout.n_heads, "D": layout.head_dim,
                        "hidden": hidden, "format": fmt, "dtype": dtype,
                        "store_dtype": store_dtype, "n_prompts": n})
    write_chunks(path, jobs)


def merge_chunk_files(files: list[Path], key: str, shape: tuple[int, ...], np_dt) -> np.ndarray:
    """[shape] one array (`key`: "head" | "resid") of every chunk folder in `files`, in prompt order
    (a prompt in several folders takes the last one's rows)."""
    full = np.empty(shape, dtype=np_dt)
    seen = np.zeros(shape[0], dtype=bool)
    for p in files:
        idx = np.load(p / "idx.npy", allow_pickle=False)
        full[idx] = np.load(p / f"{key}.npy", mmap_mode="r", allow_pickle=False)
        seen[idx] = True
    if not seen.all():
        raise RuntimeError(f"extraction incomplete: {int((~seen).sum())} prompts missing")
    return full


# ---- reading ----------------------------------------------------------------------------------

@dataclass
class Activations:
    """An open activations.h5. head_wise / layer_wise are h5py datasets (lazy); the per-prompt
    columns are numpy arrays. Use as a context manager or call close()."""

    file: Any
    head_wise: Any               # h5py.Dataset [N, L, H·D]
    layer_wise: Any | None       # h5py.Dataset [N, L+1, hidden] or None
    label: np.ndarray            # [N] int8 (1 = true answer)
    question_index: np.ndarray   # [N] int32
    answer_index: np.ndarray     # [N] int32
    n_tokens: np.ndarray         # [N] int32
    category: np.ndarray | None  # [N] str or None
    L: int
    H: int
    D: int
    format: str
    model: str

    @property
    def n(self) -> int:
        return int(self.head_wise.shape[0])

    def layer(self, l: int) -> np.ndarray:
        """[N, H·D] head-wise activations of layer l for all prompts."""
        return self.head_wise[:, l, :]

    def heads(self, l: int) -> np.ndarray:
        """[N, H, D] the same, split per head."""
        return self.layer(l).reshape(self.n, self.H, self.D)

    def head(self, l: int, h: int) -> np.ndarray:
        """[N, D] one head of one layer."""
        return self.head_wise[:, l, h * self.D:(h + 1) * self.D]

    def load_head_wise(self, threads: int | None = None) -> np.ndarray:
        """[N, L, H·D] everything in memory, in the stored dtype (see `read_all`); inside
        `keep_loaded()` one shared copy per file (callers must not write into it)."""
        if _KEPT is None:
            return read_all(self.head_wise, threads)
        name = str(Path(self.file.filename).resolve())
        if name not in _KEPT:
            offered = _OFFERED.pop(name, None)
            _KEPT[name] = offered if offered is not None else read_all(self.head_wise, threads)
        return _KEPT[name]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "Activations":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_KEPT: dict[str, np.ndarray] | None = None  # file -> head_wise in memory, while keep_loaded() is active


@contextlib.contextmanager
def keep_loaded() -> Iterator[None]:
    """Within the block, Activations.load_head_wise reads each file once and hands every later
    caller the same array (an eval's probe steps of every fold and its interventions read each
    activations file once). Store objects are immutable, so the file path identifies the data."""
    global _KEPT
    outer = _KEPT
    if outer is None:
        _KEPT = {}
    try:
        yield
    finally:
        if outer is None:
            _KEPT = None


# head_wise arrays an extraction of this process just committed, by the object file's resolved path
# (store objects are immutable, the same reason keep_loaded keys by path); at most 2 (an eval's two
# extractions), taken by the first keep_loaded() read of that file.
_OFFERED: dict[str, np.ndarray] = {}


def offer(path: Path, head_wise: np.ndarray) -> None:
    """Let keep_loaded() readers of the committed activations file `path` use `head_wise`
    [N, L, H·D], the array the extraction wrote there, instead of reading the file back."""
    _OFFERED[str(Path(path).resolve())] = head_wise
    while len(_OFFERED) > 2:
        _OFFERED.pop(next(iter(_OFFERED)))


def keeping() -> bool:
    """True inside keep_loaded()."""
    return _KEPT is not None


def read_all(ds, threads: int | None = None) -> np.ndarray:
    """A whole h5py dataset in memory, in its stored dtype (read as `read_chunks` does)."""
    out = np.empty(ds.shape, dtype=ds.dtype)
    read_chunks(ds, out.__setitem__, threads)
    return out


def read_chunks(ds, consume, threads: int | None = None) -> None:
    """Call consume(region, block) for blocks tiling an h5py dataset: region a tuple of slices, block
    the data there in the stored dtype. An unfiltered chunked dataset in a plain file is read as raw
    chunks with parallel preads, consume running on the reading threads (numpy's and torch's copies
    release the GIL; HDF5 itself reads one chunk at a time under h5py's lock); anything else through
    h5py, a chunk's rows (else 512) at a time, on this thread."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    chunks = _raw_chunks(ds)
    if chunks is None:
        rows = ds.chunks[0] if ds.chunks else 512
        for r0 in range(0, ds.shape[0], rows):
            region = (slice(r0, min(r0 + rows, ds.shape[0])), *(slice(0, n) for n in ds.shape[1:]))
            consume(region, ds[region])
        return
    fd = os.open(ds.file.filename, os.O_RDONLY)

    def read_chunk(item) -> None:
        origin, addr, size = item
        buf = np.empty(ds.chunks, dtype=ds.dtype)
        if os.preadv(fd, [buf.reshape(-1).view(np.uint8)], addr) != size:
            raise OSError(f"short read of an HDF5 chunk in {ds.file.filename}")
        region = tuple(slice(o, min(o + c, n)) for o, c, n in zip(origin, ds.chunks, ds.shape))
        consume(region, buf[tuple(slice(0, r.stop - r.start) for r in region)])

    try:
        from itictl.config import cores

        with ThreadPoolExecutor(threads or min(8, cores())) as pool:
            list(pool.map(read_chunk, chunks))
    finally:
        os.close(fd)


def _raw_chunks(ds) -> list[tuple[tuple[int, ...], int, int]] | None:
    """(chunk origin, file address, bytes) of every chunk, or None when raw reads do not apply
    (contiguous or filtered storage, chunks not all written, another driver, a user block)."""
    import math

    import h5py

    f = ds.file
    if ds.chunks is None or f.driver != "sec2" or f.userblock_size or not ds.dtype.isnative:
        return None
    dcpl = ds.id.get_create_plist()
    if dcpl.get_layout() != h5py.h5d.CHUNKED or dcpl.get_nfilters():
        return None
    n_chunks = math.prod(-(-s // c) for s, c in zip(ds.shape, ds.chunks))
    size = math.prod(ds.chunks) * ds.dtype.itemsize
    if n_chunks == 0 or ds.id.get_num_chunks() != n_chunks:
        return None
    found = [ds.id.get_chunk_info(i) for i in range(n_chunks)]
    if any(c.size != size or c.filter_mask for c in found):
        return None
    return [(tuple(c.chunk_offset), int(c.byte_offset), size) for c in found]


def open_activations(art) -> Activations:
    """Open an `activations` artifact's HDF5 (digest-checked) for reading."""
    return open_activations_file(art.file(H5_NAME))


def open_activations_file(path: Path | str) -> Activations:
    import h5py

    f = h5py.File(path, "r")
    cat = None
    if "category" in f:
        cat = np.array([c.decode() if isinstance(c, bytes) else c for c in f["category"][...]], dtype=object)
    a = f.attrs
    return Activations(file=f, head_wise=f["head_wise"], layer_wise=f["layer_wise"] if "layer_wise" in f else None,
                       label=f["label"][...], question_index=f["question_index"][...],
                       answer_index=f["answer_index"][...], n_tokens=f["n_tokens"][...], category=cat,
                       L=int(a["L"]), H=int(a["H"]), D=int(a["D"]), format=str(a["format"]), model=str(a["model"]))
