"""Device -> host: page-locked copies of finished batches on a side stream (HostCopies), and
collect_to_host, which runs a plan and gathers every row on the host."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from itictl.extract import engine
from itictl.extract.engine import Batch, Tokenized


class HostCopies:
    """Device -> host copies that overlap the next forwards.

    `submit` enqueues, on a side CUDA stream that first waits for the work queued so far, one
    non-blocking copy per tensor into page-locked host memory (torch's caching host allocator, so
    the staging blocks are reused batch after batch), and returns at once: the main thread goes on
    launching the next forwards. One worker thread waits for each copy to land (without holding the
    GIL) and hands the numpy arrays to `sink` (scatter into result arrays, write a chunk file).
    At most `depth` batches are in flight; the first error is re-raised on the next submit / at
    exit. On a CPU the arrays go to the worker directly. A sink that keeps an array keeps its
    staging block (numpy views hold their tensor)."""

    def __init__(self, device: Any, depth: int = 2):
        from concurrent.futures import ThreadPoolExecutor

        import torch

        self.dev = torch.device(device)
        self.cuda = self.dev.type == "cuda"
        if self.cuda and self.dev.index is None:  # "cuda" means the current device
            self.dev = torch.device("cuda", torch.cuda.current_device())
        self.stream = torch.cuda.Stream(self.dev) if self.cuda else None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="itictl-d2h")
        self.depth = depth
        self.pending: list = []

    def _stage(self, tensors: Sequence[Any]) -> tuple[list, Any]:
        """Enqueue the copies; -> (host tensors, event marking them landed | None)."""
        import torch

        if not self.cuda:
            return [None if t is None else t.detach() for t in tensors], None
        # a tensor on another GPU (model split over devices) is moved here first, on the compute
        # stream, so that the one side stream and its event cover every copy
        tensors = [t.to(self.dev) if t is not None and t.is_cuda and t.device != self.dev else t for t in tensors]
        self.stream.wait_stream(torch.cuda.current_stream(self.dev))
        host = []
        with torch.cuda.stream(self.stream):
            for t in tensors:
                if t is None or not t.is_cuda:
                    host.append(None if t is None else t.detach())
                    continue
                t.record_stream(self.stream)  # the compute stream may reuse it only after the copy
                h = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
                h.copy_(t.detach(), non_blocking=True)
                host.append(h)
            landed = torch.cuda.Event()
            landed.record(self.stream)
        return host, landed

    def submit(self, tensors: Sequence[Any], sink: Callable[[list[np.ndarray | None]], None]) -> None:
        host, landed = self._stage(tensors)

        def job() -> None:
            if landed is not None:
                landed.synchronize()
            sink([None if h is None else _numpy(h) for h in host])

        self.pending.append(self.pool.submit(job))
        while len(self.pending) > self.depth:
            self.pending.pop(0).result()

    def __enter__(self) -> "HostCopies":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            for f in self.pending:
                if exc_type is None:
                    f.result()
                else:
                    f.exception()
        finally:
            self.pool.shutdown(wait=True)


def _numpy(t: Any) -> np.ndarray:
    """A host tensor as numpy (a view; bfloat16, which numpy lacks, as a float32 copy)."""
    import torch

    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy()


def collect_to_host(model: Any, items: Sequence[Tokenized], batches: Sequence[Batch], *, layer_wise: bool,
                    device: Any, pad_id: int, out_dtype: Any = None, fuse: str = "off") -> dict[str, np.ndarray]:
    """Run `batches` and gather every prompt's rows into host arrays in prompt order (copies
    overlap the following forwards). `fuse`: a --fuse mode (compute.fuse; 'off' by default here)."""
    from itictl.compute.fuse import Fuser, resolve_fuse

    n = len(items)
    out: dict[str, np.ndarray] = {}
    # np.empty when every row gets written: first-touching zero-filled (calloc) pages cost ~8x more
    alloc = np.empty if len({r for b in batches for r in b.rows}) == n else np.zeros

    def sink(rows: list[int]):
        idx = np.asarray(rows, dtype=np.int64)

        def put(arrs: list) -> None:
            for name, a in zip(("head_wise", "layer_wise"), arrs):
                if a is None:
                    continue
                if name not in out:
                    out[name] = alloc((n, *a.shape[1:]), dtype=a.dtype)
                out[name][idx] = a
        return put

    with Fuser(model, resolve_fuse(fuse, model, device)) as fz, HostCopies(device) as copies:
        for rows, head, resid in engine.run_batches(model, items, batches, layer_wise=layer_wise, device=device,
                                                    pad_id=pad_id, out_dtype=out_dtype, fuse=fz):
            copies.submit([head, resid], sink(rows))
    return out


