"""The probe step on a CPU straight from the mapped HDF5, a few layers at a time, in little fresh memory.

On the development VMs, memory a process touches for the first time costs ~2.5 CPU ms per MB (the
host backs it page by page: freed memory is handed back to the host within seconds), so staging
all parts of every head (406 MB for the embedded model's tqa_mc2 activations) costs more than
solving. Here nothing the size of the activations is allocated:

- the file's chunks are mapped (itictl.probe.mapped), already in the page cache;
- layers are taken in groups of about GROUP_BYTES of training features: the group's training rows
  are gathered into one reused float32 buffer [heads, D, n_train] (the solver's layout, small
  enough to stay in the CPU's cache while the group is solved) and solved at once;
- com (class sums over the train + val rows) and the val / test accuracies are computed from the
  mapped chunks themselves, in one pass after the solve: per chunk one matrix product for the
  per-class row sums, and per layer one einsum for every head's logits on all the chunk's rows.

Same objective, solver and float32 products as the staged path (itictl.probe.staging), so the same
probes up to float rounding. Applies to unfiltered chunked datasets whose chunks span whole rows
(every itictl extraction); anything else takes the staged path.
"""

from __future__ import annotations

import numpy as np

GROUP_BYTES = 16 << 20  # training features solved at once (fits the shared L3 of the machines measured)


def plan(acts, backend: str, device=None):
    """chunks_by_layers(acts) where this path applies to a fit (the torch backend on a CPU, outside
    itictl.extract.h5.keep_loaded(), whose folds share one in-memory copy), else None."""
    from itictl.extract.h5 import keeping

    if backend != "torch" or (device is not None and str(device) != "cpu") or keeping():
        return None
    return chunks_by_layers(acts)


def chunks_by_layers(acts):
    """{(first layer, end layer): [(rows slice, block [k, layers, H·D])]} of the mapped chunks, or None
    when the mapped path does not apply."""
    from itictl.probe.mapped import mapped_chunks

    ds = acts.head_wise
    if ds.ndim != 3 or ds.shape[1:] != (acts.L, acts.H * acts.D):
        return None
    blocks = mapped_chunks(ds)
    if blocks is None or any(r[2] != slice(0, ds.shape[2]) for r, _ in blocks):
        return None
    groups: dict[tuple[int, int], list] = {}
    for region, block in blocks:
        groups.setdefault((region[1].start, region[1].stop), []).append((region[0], block))
    return dict(sorted(groups.items()))


def _layer_groups(spans, per_layer_bytes: int) -> list[list[tuple[int, int]]]:
    out, cur, size = [], [], 0
    for span in spans:
        cur.append(span)
        size += (span[1] - span[0]) * per_layer_bytes
        if size >= GROUP_BYTES:
            out.append(cur)
            cur, size = [], 0
    return out + ([cur] if cur else [])


def fit_mapped(acts, by_layers, rows: dict[str, np.ndarray], laps=None):
    """Every head's probe, com, val and test accuracy -> (w [L,H,D], b [L,H], com [L,H,D], val_acc
    [L,H], test_acc [L,H] or None), float64 numpy. rows: {'train', 'val', 'test'} prompt rows."""
    from itictl.probe.mapped import populated

    L, H, D, N = acts.L, acts.H, acts.D, acts.n
    label = np.asarray(acts.label) == 1
    code = np.full(N, -1, dtype=np.int64)  # 0 train, 1 val, 2 test
    col = np.zeros(N, dtype=np.int64)
    for j, k in enumerate(("train", "val", "test")):
        r = np.sort(np.asarray(rows.get(k, ()), dtype=np.int64))
        code[r], col[r] = j, np.arange(len(r))
    n_tr = int((code == 0).sum())
    y_tr = label[code == 0]
    groups = _layer_groups(list(by_layers), H * D * n_tr * 4)
    w, b = np.zeros((L, H, D)), np.zeros((L, H))
    sums = np.zeros((2, L, H * D))
    correct = np.zeros((2, L, H))
    if laps is not None:
        laps.lap("read")
    most = max(sum(b - a for a, b in g) for g in groups)

    def fit(g, buf, clock) -> None:  # groups write disjoint layers of w, b, sums, correct
        _fit_group(g, by_layers, buf, code, col, label, y_tr, (w, b, sums, correct), clock)

    _run_groups(groups, fit, lambda: populated((most * H * D * n_tr,)), laps)
    n_t, n_f = int((label & (code >= 0) & (code <= 1)).sum()), int((~label & (code >= 0) & (code <= 1)).sum())
    com = (sums[0] / max(n_t, 1) - sums[1] / max(n_f, 1)).reshape(L, H, D)
    n_val, n_test = int((code == 1).sum()), int((code == 2).sum())
    val_acc = correct[0] / n_val if n_val else np.full((L, H), np.nan)
    test_acc = correct[1] / n_test if n_test else None
    return w, b, com, val_acc, test_acc


def _fit_group(spans, by_layers, buf, code, col, label, y_tr, out, laps) -> None:
    """One group of layers: gather its training rows, solve, score val and test (and sum the train
    and val rows per class for com, in the same pass over the chunks)."""
    import torch

    from itictl.probe.newton import fit_logreg_heads

    w, b, sums, correct = out
    _, H, D = w.shape
    n_tr = len(y_tr)
    l0, l1 = spans[0][0], spans[-1][1]
    XT = buf[:(l1 - l0) * H * D * n_tr].reshape(l1 - l0, H * D, n_tr)
    items = [(a, e, rs, block) for a, e in spans for rs, block in by_layers[(a, e)]]

    for a, e, rs, block in items:  # the chunk's training rows into XT
        sel = np.flatnonzero(code[rs] == 0)
        if len(sel):
            c0 = int(col[rs.start + sel[0]])
            XT[a - l0:e - l0, :, c0:c0 + len(sel)] = block[sel].transpose(1, 2, 0)
    _lap(laps, "stage")
    wg, bg, _ = fit_logreg_heads(torch.from_numpy(XT.reshape(-1, D, n_tr)), y_tr, overwrite=True)
    w[l0:l1], b[l0:l1] = wg.numpy().reshape(l1 - l0, H, D), bg.numpy().reshape(l1 - l0, H)
    _lap(laps, "solve")
    w32, b32 = w[l0:l1].astype(np.float32), b[l0:l1].astype(np.float32)

    def score(item):  # [2 (val, test), layers, H] correct predictions; train + val sums per class
        a, e, rs, block = item
        c, y = code[rs], label[rs]
        tv = (c == 0) | (c == 1)
        part = np.stack([tv & y, tv & ~y]).astype(np.float32) @ block.reshape(len(c), -1)
        right = np.zeros((2, e - a, H))
        for i in range(e - a):
            z = np.einsum("khd,hd->kh", block[:, i, :].reshape(-1, H, D), w32[a - l0 + i], optimize=True)
            hit = ((z + b32[a - l0 + i]) > 0) == y[:, None]  # [k, H]
            right[0, i], right[1, i] = hit[c == 1].sum(0), hit[c == 2].sum(0)
        return a, e, right, part

    for a, e, right, part in map(score, items):
        correct[:, a:e] += right
        sums[:, a:e] += part.reshape(2, e - a, -1)
    _lap(laps, "accuracy")


def _lap(laps, name: str) -> None:
    if laps is not None:
        laps.lap(name)


def _run_groups(groups, fit, new_buffer, laps) -> None:
    """fit(group, buffer, clock) for every group. With torch set to n > 1 threads, n groups at a time
    on a pool of Python threads, torch single-threaded meanwhile: numpy's copies and einsum and
    torch's ops release the GIL, and no OpenMP team waits at a barrier for a thread that another
    job's load has descheduled (which made 2-thread solves 10x slower on the loaded 2-core machine).
    Phases (stage, solve, accuracy) go to laps as the wall time split in proportion to the
    workers' time in each."""
    import queue
    import time
    from concurrent.futures import ThreadPoolExecutor

    import torch

    n = min(torch.get_num_threads(), len(groups))
    if n <= 1:
        buf = new_buffer()
        for g in groups:
            fit(g, buf, laps)
        return
    free: queue.Queue = queue.Queue()
    for _ in range(n):
        free.put(new_buffer())
    clocks = [_Clock() for _ in groups]

    def run(i: int) -> None:
        buf = free.get()
        try:
            clocks[i].t = time.perf_counter()
            fit(groups[i], buf, clocks[i])
        finally:
            free.put(buf)

    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(run, range(len(groups))))
    finally:
        torch.set_num_threads(n)
    if laps is not None:
        laps.lap("_groups")
        wall, spent = laps.pop("_groups"), {}
        for c in clocks:
            for k, v in c.items():
                spent[k] = spent.get(k, 0.0) + v
        total = sum(spent.values()) or 1.0
        for k, v in spent.items():
            laps[k] = round(laps.get(k, 0.0) + wall * v / total, 4)


class _Clock(dict):
    """Seconds per phase of one worker: lap(name) adds the time since the previous lap."""

    t = 0.0

    def lap(self, name: str) -> None:
        import time

        now = time.perf_counter()
        self[name] = self.get(name, 0.0) + now - self.t
        self.t = now
