"""Head-wise activations staged for the batched probe solver, and the fits and scores made from them.

A `Staged` holds, per part (train, val, test), that part's prompt rows of every head as one float32
tensor XT [P, D, n] (P = L·H heads; each head's features contiguous over the part's n samples, the
layout the solver's bmm wants) on the solver's device, plus the part's labels. Made once per step:

- `stage_h5` on a CPU (the sklearn backend, or files whose chunks cannot be mapped; the torch
  backend's probe step on a CPU skips staging: itictl.probe.blockwise): the HDF5's raw chunks are
  mapped (itictl.probe.mapped) and each chunk is transposed, converted to float32 and written
  straight into its parts' tensors (buffers with their pages populated at once);
- `stage_h5` on a GPU, or inside itictl.extract.h5.keep_loaded() (an eval's folds share one read):
  the stored dtype (float16 from a GPU extraction) is read, moved to the device and laid out there
  (`stage`);
- `stage` from head-wise activations [N, L, H, D] already in memory.

The rows of a part are in ascending file order, so a chunk's rows of one part land in one contiguous
column range of that part's tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PARTS = ("train", "val", "test")


@dataclass
class Staged:
    parts: dict  # name -> torch.Tensor [P, D, n] float32
    part_labels: dict[str, np.ndarray]
    L: int
    H: int
    D: int

    def heads(self, part: str):
        return self.parts[part]

    def labels(self, part: str) -> np.ndarray:
        return self.part_labels[part]


def _sorted_parts(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [k for k in PARTS if k in rows] + [k for k in rows if k not in PARTS]
    return {k: np.sort(np.asarray(rows[k], dtype=np.int64)) for k in names}


def stage(head_wise_NLHD, label_N: np.ndarray, rows: dict[str, np.ndarray], device=None) -> Staged:
    """Lay out `rows` (part name -> prompt rows) of [N, L, H, D] activations (numpy or torch, any
    float dtype) as a Staged on `device` (default CPU)."""
    import torch

    from itictl.probe.mapped import populated

    N, L, H, D = head_wise_NLHD.shape
    dev = torch.device(device) if device is not None else torch.device("cpu")
    src = torch.as_tensor(head_wise_NLHD).reshape(N, L * H, D)  # a numpy array is wrapped, not copied
    rows = _sorted_parts(rows)
    if dev.type != "cpu" and src.device != dev:  # move the stored dtype once, lay out there
        src = src.to(dev)
    parts = {}
    for k, r in rows.items():
        sel = src.index_select(0, torch.as_tensor(r, device=src.device)).to(dev)  # [n, P, D]
        buf = torch.from_numpy(populated((L * H, D, len(r)))) if dev.type == "cpu" else \
            torch.empty(L * H, D, len(r), dtype=torch.float32, device=dev)
        parts[k] = buf.copy_(sel.permute(1, 2, 0))
    label = np.asarray(label_N)
    return Staged(parts, {k: label[r] for k, r in rows.items()}, L, H, D)


def stage_h5(acts, rows: dict[str, np.ndarray], device=None, threads: int | None = None,
             laps: Laps | None = None) -> Staged:
    """Stage `rows` of an open Activations (itictl.extract.h5) on `device` (default CPU); laps gets
    'read' (on a CPU: read, conversion and layout at once; on a GPU: the stored dtype into memory)."""
    import torch

    from itictl.extract.h5 import keeping
    from itictl.probe.mapped import for_each_chunk, populated

    dev = torch.device(device) if device is not None else torch.device("cpu")
    L, H, D, N = acts.L, acts.H, acts.D, acts.n
    if dev.type != "cpu" or keeping():  # inside keep_loaded(): from the file's one in-memory copy
        hw = acts.load_head_wise(threads).reshape(N, L, H, D)
        if laps is not None:
            laps.lap("read")
        return stage(hw, acts.label, rows, dev)
    rows = _sorted_parts(rows)
    part_of = np.full(N, -1, dtype=np.int64)
    col_of = np.zeros(N, dtype=np.int64)
    names = list(rows)
    for j, k in enumerate(names):
        part_of[rows[k]] = j
        col_of[rows[k]] = np.arange(len(rows[k]))
    # pages faulted in at once (itictl.probe.mapped): first touches of fresh pages cost more than the solve
    parts = {k: torch.from_numpy(populated((L * H, D, len(r)))) for k, r in rows.items()}
    dests = [parts[k].numpy().reshape(L, H * D, len(rows[k])) for k in names]

    def put(region, block) -> None:  # block [k, layers, H·D] -> each part's [layers, H·D, cols]
        r0 = region[0].start
        which = part_of[r0:r0 + block.shape[0]]
        for j, dest in enumerate(dests):
            sel = np.flatnonzero(which == j)
            if len(sel):
                c0 = int(col_of[r0 + sel[0]])
                dest[region[1], :, c0:c0 + len(sel)] = block[sel].transpose(1, 2, 0)

    for_each_chunk(acts.head_wise, put, threads)
    if laps is not None:
        laps.lap("read")
    label = np.asarray(acts.label)
    return Staged(parts, {k: label[r] for k, r in rows.items()}, L, H, D)


def fit_staged(st: Staged, *, backend: str, seed: int, part: str = "train", overwrite: bool = False):
    """Every head's probe on one part -> (w [L,H,D], b [L,H]) float64 numpy.
    overwrite: the solver may reuse that part's buffer (its contents are garbage after)."""
    from itictl.probe.newton import fit_logreg_heads
    from itictl.probe.solver import fit_logreg_sklearn

    XT, y = st.heads(part), st.labels(part)
    if backend == "sklearn":  # the reference's per-head loop, on float64 copies like its numpy arrays
        w, b = fit_logreg_sklearn(XT.transpose(1, 2).double().contiguous().cpu().numpy(), y, seed)
    else:
        max_bytes = 1 << 30 if XT.device.type == "cpu" else None
        wt, bt, _ = fit_logreg_heads(XT, y, max_batch_bytes=max_bytes, overwrite=overwrite)
        w, b = wt.numpy(), bt.numpy()
    return w.reshape(st.L, st.H, st.D), b.reshape(st.L, st.H)


def score_staged(st: Staged, part: str, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Accuracy of every head's probe on one part -> [L, H] (NaN for an empty part)."""
    from itictl.probe.solver import accuracy_torch

    acc = accuracy_torch(st.heads(part), st.labels(part), w.reshape(-1, st.D), b.reshape(-1))
    return acc.reshape(st.L, st.H)


def com_staged(st: Staged, parts: tuple[str, ...] = ("train", "val")) -> np.ndarray:
    """mean(true) − mean(false) over the given parts' rows -> [L, H, D] float64 (the reference's 'com')."""
    from itictl.errors import BadInputError
    from itictl.probe.solver import class_sums

    t_sum = f_sum = 0.0
    n_t = n_f = 0
    for k in parts:
        if k in st.parts:
            st_, sf_, nt_, nf_ = class_sums(st.heads(k), st.labels(k))
            t_sum, f_sum, n_t, n_f = t_sum + st_, f_sum + sf_, n_t + nt_, n_f + nf_
    if n_t == 0 or n_f == 0:
        raise BadInputError("center-of-mass directions need true and false answers", "use more questions")
    com = t_sum / n_t - f_sum / n_f
    return com.cpu().numpy().reshape(st.L, st.H, st.D)


class Laps(dict):
    """Wall seconds per phase of the step, {name: s}. A CUDA device is synchronised before each
    reading, so queued GPU work is counted in the phase that queued it."""

    def __init__(self, device=None):
        super().__init__()
        import time

        self._cuda = device is not None and str(device).startswith("cuda")
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        import time

        if self._cuda:
            import torch

            torch.cuda.synchronize()
        now = time.perf_counter()
        self[name] = round(self.get(name, 0.0) + now - self._t, 4)
        self._t = now
