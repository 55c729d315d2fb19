"""Resumable work of the extract step: chunk folders of .npy files (written atomically as
partial_N -> chunk_N), the background chunk writer, and resuming from completed chunks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from itictl import hooks

CHUNK_PROMPTS = 512  # prompts per resumable chunk



def chunk_dirs(work: Path) -> list[Path]:
    """Completed chunks (folders): a single process's (work/chunk_N) and every rank's (work/rankR/)."""
    if not work.is_dir():
        return []
    found = sorted(work.glob("chunk_*")) + sorted(work.glob("rank*/chunk_*"))
    return [p for p in found if p.is_dir()]


def rank_work_dir(work: Path, dist) -> Path:
    """Where this rank writes its chunks: `work` itself for a single process, else work/rankR."""
    return work / f"rank{dist.rank}" if dist.distributed else work


def load_done(work: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Completed chunks of an earlier, interrupted run with the same plan (else start afresh);
    half-written chunks (partial_N) and unreadable ones are removed (their prompts are redone)."""
    import shutil

    from itictl.store.atomic import write_text_atomic

    plan_file = work / "plan.json"
    if work.is_dir():
        try:
            same = json.loads(plan_file.read_text()) == plan
        except (OSError, ValueError):
            same = False
        for p in work.iterdir():
            if not same or p.name.startswith("partial_"):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
            elif p.is_dir() and p.name.startswith("rank"):
                for q in p.glob("partial_*"):
                    shutil.rmtree(q, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    write_text_atomic(plan_file, json.dumps(plan, sort_keys=True))
    files = []
    done: set[int] = set()
    for f in chunk_dirs(work):
        try:
            idx = read_chunk(f, plan["layer_wise"])
        except (OSError, ValueError, KeyError, EOFError):
            shutil.rmtree(f, ignore_errors=True)  # unreadable: recompute its prompts
            continue
        files.append(f)
        done.update(int(i) for i in idx)
    return {"files": files, "done": done}


def read_chunk(f: Path, layer_wise: bool) -> np.ndarray:
    """A chunk's prompt indices, after checking that its arrays are complete (memory-mapped headers:
    a short file fails here). No pickle: object arrays are refused."""
    idx = np.load(f / "idx.npy", allow_pickle=False)
    names = ["head"] + (["resid"] if layer_wise else [])
    for name in names:
        a = np.load(f / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        if a.shape[0] != idx.shape[0]:
            raise ValueError(f"{f.name}/{name}.npy has {a.shape[0]} rows for {idx.shape[0]} prompts")
    return idx


def save_npy(path: Path, parts: list[np.ndarray]) -> None:
    """Row-blocks `parts` as one .npy file, written block by block (no concatenated copy)."""
    import numpy.lib.format as fmt

    shape = (sum(len(a) for a in parts), *parts[0].shape[1:])
    with open(path, "wb") as fh:
        fmt.write_array_header_1_0(fh, {"descr": fmt.dtype_to_descr(parts[0].dtype), "fortran_order": False,
                                        "shape": shape})
        for a in parts:
            np.ascontiguousarray(a).tofile(fh)


def save_chunk(work: Path, seq: int, idx: list[np.ndarray], head: list[np.ndarray],
                resid: list[np.ndarray] | None) -> Path:
    """One chunk folder (idx.npy, head.npy[, resid.npy]), written as partial_N and renamed to
    chunk_N when complete, so a chunk that exists is whole. Plain .npy: fast to write, read back
    without pickle, memory-mapped when merged."""
    import shutil

    final = work / f"chunk_{seq:06d}"
    tmp = work / f"partial_{seq:06d}"  # not matched by chunk_* until complete
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_npy(tmp / "idx.npy", idx)
    save_npy(tmp / "head.npy", head)
    if resid:
        save_npy(tmp / "resid.npy", resid)
    os.replace(tmp, final)
    hooks.fire("extract.chunk_saved", path=final)
    return final


class ChunkWriter:
    """Saves batches as resumable chunks while the device keeps computing: each batch is copied to
    page-locked host memory on a side stream as soon as it is done (host.HostCopies), and the
    worker thread gathers batches until a chunk holds CHUNK_PROMPTS prompts, then writes it. Chunks
    end at batch boundaries in submission order, so a resumed run continues the same plan. The
    first failure stops later writes (no chunk after a failed one is written) and is re-raised in
    the caller; a dying run writes nothing more (its partial chunk is lost, its batches redone).
    With an `assembly` (single process) the worker also scatters each batch into its arrays."""

    def __init__(self, work: Path, seq: int, device: Any = "cpu", assembly: Assembly | None = None):
        from itictl.extract.host import HostCopies

        self.work, self.seq, self.assembly = work, seq, assembly
        self.copies = HostCopies(device)
        self.failed = False
        self.idx: list[np.ndarray] = []   # worker thread only
        self.head: list[np.ndarray] = []
        self.resid: list[np.ndarray] = []

    def put(self, rows: list[int], head, resid) -> None:
        idx = np.asarray(rows, dtype=np.int64)

        def gather(arrs: list) -> None:
            if self.assembly is not None:
                self.assembly.put(idx, arrs[0], arrs[1])
            self.idx.append(idx)
            self.head.append(arrs[0])
            if arrs[1] is not None:
                self.resid.append(arrs[1])
            if sum(len(i) for i in self.idx) >= CHUNK_PROMPTS:
                self._write()

        self.copies.submit([head, resid], self._guarded(gather))

    def _guarded(self, fn):
        def run(arrs: list) -> None:
            if self.failed:
                return
            try:
                fn(arrs)
            except BaseException:
                self.failed = True
                raise
        return run

    def _write(self) -> None:
        if not self.idx:
            return
        path = save_chunk(self.work, self.seq, self.idx, self.head, self.resid or None)
        if self.assembly is not None:
            self.assembly.saved.add(path)
        self.seq += 1
        self.idx, self.head, self.resid = [], [], []

    def __enter__(self) -> "ChunkWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.failed = True  # the run is dying: write nothing more
            self.copies.__exit__(exc_type, *exc)
            return
        try:
            self.copies.submit([], self._guarded(lambda arrs: self._write()))  # the last, short chunk
        except BaseException as e:  # an earlier chunk failed: stop the worker, then raise that
            self.failed = True
            self.copies.__exit__(type(e), e, e.__traceback__)
            raise
        self.copies.__exit__(None, None, None)


class Assembly:
    """A single-process extraction's result arrays, filled in memory while it computes: the
    ChunkWriter's worker thread scatters each batch's rows into `arrays` ("head" [n, L, W], and
    "resid" [n, L+1, hidden] when layer-wise) besides writing them to chunk folders (which stay the
    resume mechanism); `complete` adds the rows of earlier runs' folders, so activations.h5 is
    written without reading this run's chunks back."""

    def __init__(self, n: int, shapes: dict[str, tuple[int, ...]], dtype: Any):
        # np.empty: pages are first touched by the worker's scatter, while the device computes
        self.arrays = {k: np.empty((n, *s), dtype=dtype) for k, s in shapes.items()}
        self.seen = np.zeros(n, dtype=bool)  # [n] rows put by this run
        self.saved: set[Path] = set()        # chunk folders this run wrote: their rows are in memory

    def put(self, idx: np.ndarray, head: np.ndarray, resid: np.ndarray | None) -> None:
        self.arrays["head"][idx] = head
        if "resid" in self.arrays:
            self.arrays["resid"][idx] = resid
        self.seen[idx] = True

    def complete(self, files: list[Path]) -> dict[str, np.ndarray]:
        """The arrays with every row, equal to merging the chunk folders `files` in order (h5's
        merge_chunk_files: a prompt in several folders, redone after a resume with another batch
        size, takes the last one's rows). Folders this run wrote are not read; of the others,
        only those holding rows not yet filled (idx.npy tells) have their arrays read."""
        n = len(self.seen)
        filled = np.zeros(n, dtype=bool)
        for f in reversed(files):
            idx = np.load(f / "idx.npy", allow_pickle=False)
            if f in self.saved:
                if not self.seen[idx].all():
                    raise RuntimeError(f"{f.name} holds rows this extraction did not keep in memory")
            else:
                new = ~filled[idx]
                if new.any():
                    for key, full in self.arrays.items():
                        data = np.load(f / f"{key}.npy", mmap_mode="r", allow_pickle=False)
                        full[idx[new]] = data if new.all() else data[new]
            filled[idx] = True
        if not filled.all():
            raise RuntimeError(f"extraction incomplete: {int((~filled).sum())} prompts missing")
        return self.arrays
