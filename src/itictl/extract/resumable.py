"""extract_to_h5: plan, warm up, compute (resuming from completed chunks, data parallel under
torchrun) and write activations.h5 (a single process: from the arrays assembled in memory while
computing; data parallel: rank 0 merges every rank's chunks); `_Extraction` holds one call's phases."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from itictl.extract.chunks import Assembly, ChunkWriter, chunk_dirs, load_done, rank_work_dir
from itictl.extract.engine import default_batch_tokens
from itictl.extract.h5 import digest16, np_dtype, write_h5


def compute_batches(model, items, batches, work: Path, *, layer_wise: bool, store_dtype: str, device, pad_id: int,
                    advance=lambda k=1: None, fuse=None, assembly: Assembly | None = None,
                    split_after: int = 0) -> tuple[list[int], float | None]:
    """Run `batches` (engine Batch objects) and save their rows as resumable chunk_N folders in
    `work` (continuing its numbering; a chunk always ends at a batch boundary). -> (rows computed,
    time.time() once the first `split_after` batches finished on the device, or None).
    `fuse`: a compute.fuse.Fuser (None: the model as it is). `assembly`: also gather the rows there."""
    from contextlib import nullcontext

    from itictl.extract.engine import run_batches
    from itictl.models.devices import torch_dtype

    work.mkdir(parents=True, exist_ok=True)
    seq = 1 + max((int(f.name.split("_")[1]) for f in chunk_dirs(work)), default=-1)
    computed: list[int] = []
    split = None
    with fuse if fuse is not None else nullcontext(), ChunkWriter(work, seq, device, assembly) as writer:
        for k, (rows, head, resid) in enumerate(run_batches(model, items, batches, layer_wise=layer_wise,
                                                            device=device, pad_id=pad_id,
                                                            out_dtype=torch_dtype(store_dtype), fuse=fuse)):
            writer.put(rows, head, resid)
            computed.extend(rows)
            advance(len(rows))
            if k + 1 == split_after:
                _sync(device)
                split = time.time()
    return computed, split


def _warms(device, fuser) -> bool:
    """Whether the first batch of each shape runs first, timed as warm-up: on a GPU or compiled."""
    return str(device).startswith("cuda") or fuser.active


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def extract_to_h5(model, tokenizer, prompts, h5_path: Path | None, work: Path, *, fmt: str, model_key: str, dtype: str,
                  layer_wise: bool, store_dtype: str, batch_tokens: int | None, device, out=None,
                  dist=None, fuse: str = "off", keep: dict | None = None) -> dict[str, Any]:
    """Compute (resuming from `work`) and write activations.h5 for `prompts`; returns metadata.
    `keep` (a dict): receives "head", the head-wise array written (single process only).

    With `dist` of world > 1 every rank calls this with the same prompts: all ranks plan the
    batches exactly as one process would (same batch_tokens), each computes the batches
    assign_balanced gives it into work/rankR/, and rank 0 (h5_path set; None elsewhere) merges
    every chunk into the h5. Same batches -> same numbers, so the payload is bit-identical to a
    single-process run's. `fuse`: a --fuse mode (compute.fuse), resolved here for the model."""
    from itictl.compute import distributed as D

    ex = _Extraction(model, tokenizer, prompts, work, layer_wise=layer_wise, store_dtype=store_dtype,
                     device=device, dist=dist or D.SINGLE, out=out, fuse=fuse)
    ex.plan(batch_tokens)
    ex.warm_first()
    stats = D.run_phase("extracting", lambda: ex.compute(fmt), ex.dist)
    warm = [s["warmup_s"] for s in stats]
    compute_s = max(s["compute_s"] for s in stats)  # with world > 1: the slowest rank's
    if h5_path is None:
        return {}
    t_write = time.time()
    files = chunk_dirs(work)
    arrays = ex.assembly.complete(files) if ex.assembly is not None else None  # else: merged from the files
    t_h5 = time.time()
    write_h5(h5_path, files, prompts, ex.n_tokens, fmt=fmt, dtype=dtype, store_dtype=store_dtype,
             layer_wise=layer_wise, layout=ex.layout, hidden=ex.hidden, model_key=model_key, arrays=arrays)
    if arrays is not None and keep is not None:  # the caller offers it once the object is committed
        keep["head"] = arrays["head"]
    ex.assembly = None
    t_end = time.time()
    write = {"write_s": t_end - t_write, "write_h5_s": t_end - t_h5}
    if arrays is not None:
        write["write_assemble_s"] = t_h5 - t_write
    return ex.meta(max(warm), compute_s, write, stats)


class _Extraction:
    """One extract_to_h5 call on one rank: the plan (the same on every rank), then this rank's
    warm-up and compute phases, then the metadata."""

    def __init__(self, model, tokenizer, prompts, work: Path, *, layer_wise: bool, store_dtype: str, device,
                 dist, out, fuse: str = "off") -> None:
        from itictl.compute.fuse import Fuser, resolve_fuse
        from itictl.models.arch import head_layout, hidden_size

        self.model, self.tokenizer, self.prompts, self.work = model, tokenizer, prompts, work
        self.layer_wise, self.store_dtype, self.device, self.dist, self.out = layer_wise, store_dtype, device, dist, out
        self.n = len(prompts)
        self.layout = head_layout(model)
        self.hidden = hidden_size(model)
        self.fuser = Fuser(model, resolve_fuse(fuse, model, device), warn=out.warn if out is not None else None)
        self.assembly: Assembly | None = None  # single process: the result arrays, filled while computing

    def plan(self, batch_tokens: int | None) -> None:
        """Tokenise, agree on the plan across ranks, skip what completed chunks hold, share the rest.

        Plans over ALL prompts exactly like one process and skips the batches a killed run completed:
        chunks end at batch boundaries, so a resumed run computes exactly the batches an
        uninterrupted run would (same padding, same grouping) and the payload digest is identical.
        Ranks share whole batches of that plan (greedy by padded tokens), which keeps data-parallel
        runs bit-identical too: a batch's numbers depend only on its own content and shape."""
        from itictl.compute import distributed as D
        from itictl.compute.packing import supports_tree_masks
        from itictl.extract.engine import count_tokens, plan_batches

        dist = self.dist
        infos = D.run_phase("planning the batches", lambda: self._plan_phase(batch_tokens), dist)
        D.same([(i["plan"], i["batch_tokens"]) for i in infos], "extraction plan (prompts, tokens, --batch-tokens)")
        self.batch_tokens = infos[0]["batch_tokens"]
        self.done = set(infos[0]["done"])
        self.batches = [b for b in plan_batches(self.items, list(range(self.n)), self.batch_tokens,
                                                packed=supports_tree_masks(self.model))
                        if not all(r in self.done for r in b.rows)]
        self.todo = sorted({r for b in self.batches for r in b.rows if r not in self.done})
        self.counts = count_tokens(self.items, self.batches)
        owner = D.assign_balanced([count_tokens(self.items, [b])["padded"] for b in self.batches], dist.world_size)
        self.mine = [b for b, o in zip(self.batches, owner) if o == dist.rank]
        if dist.distributed and self.out is not None and len(self.batches) < 2 * dist.world_size:
            self.out.warn(f"only {len(self.batches)} batches for {dist.world_size} ranks: some ranks idle "
                          "(a smaller --batch-tokens gives more, smaller batches)")

    def _plan_phase(self, batch_tokens: int | None) -> dict[str, Any]:
        from itictl.extract.engine import tokenize_prompts

        prompts = self.prompts
        self.items = tokenize_prompts(self.tokenizer, [p.text for p in prompts],
                                      [getattr(p, "prefix", None) for p in prompts])
        self.n_tokens = np.array([len(t.ids) for t in self.items], dtype=np.int32)  # [n]
        plan = {"n": self.n, "L": self.layout.n_layers, "width": self.layout.width, "hidden": self.hidden,
                "layer_wise": bool(self.layer_wise), "store_dtype": self.store_dtype,
                "tokens_sha": digest16(self.n_tokens)}
        bt = batch_tokens or default_batch_tokens(str(self.device), int(self.n_tokens.sum()))
        done = sorted(load_done(self.work, plan)["done"]) if self.dist.is_main else None  # rank 0 alone cleans up
        return {"plan": plan, "batch_tokens": bt, "done": done}

    def warm_first(self) -> None:
        """On a GPU, or with compiled layers: this rank's first batch of each forward shape runs
        first (the first 2 shapes: full forwards and the last, smaller one; every shape with
        compiled layers, which compile one graph set per shape then). Kernel loading, cuBLAS plans,
        compiling, device and page-locked allocator growth are paid by those batches, timed apart
        as warmup_s; unlike a throwaway warm-up forward their rows are kept. Every batch's numbers
        depend only on its own content and shape, so the order changes no value (and a resumed run
        skips whole batches, in whatever order they ran)."""
        self.n_warm = 0
        if not (self.mine and _warms(self.device, self.fuser)):
            return
        first: dict[tuple[int, bool], int] = {}
        for i, b in enumerate(self.mine):
            first.setdefault((len(b.layout) or len(b.rows), b.packed), i)
        warm = sorted(first.values())[: None if self.fuser.active else 2]
        chosen = set(warm)
        rest = [b for i, b in enumerate(self.mine) if i not in chosen]
        self.mine = [self.mine[i] for i in warm] + rest
        self.n_warm = len(warm)

    def compute(self, fmt: str) -> dict[str, Any]:
        """This rank's batches into its chunk folder, with a progress bar."""
        from itictl.extract.engine import pad_token_id

        dist, out = self.dist, self.out
        t = time.time()
        if dist.distributed:
            desc = f"extract {fmt} (rank {dist.rank} of {dist.world_size})"
            total = len({r for b in self.mine for r in b.rows})
        else:
            desc, total = f"extract {fmt}", self.n
        progress = out.progress(desc, total=total, unit="prompts") if out is not None else None
        advance = progress.__enter__() if progress is not None else (lambda k=1: None)
        if not dist.distributed:  # data-parallel ranks: rank 0 merges every rank's chunk files
            shapes = {"head": (self.layout.n_layers, self.layout.width)}
            if self.layer_wise:
                shapes["resid"] = (self.layout.n_layers + 1, self.hidden)
            self.assembly = Assembly(self.n, shapes, np_dtype(self.store_dtype))
        try:
            if not dist.distributed:
                advance(len(self.done))
            rows, split = compute_batches(self.model, self.items, self.mine, rank_work_dir(self.work, dist),
                                          layer_wise=self.layer_wise, store_dtype=self.store_dtype, device=self.device,
                                          pad_id=pad_token_id(self.tokenizer), advance=advance, fuse=self.fuser,
                                          assembly=self.assembly, split_after=self.n_warm)
        finally:
            if progress is not None:
                progress.__exit__(None, None, None)
        end = time.time()
        split = t if split is None else split
        return {"rows": len(set(rows)), "warmup_s": round(split - t, 3), "compute_s": round(end - split, 3),
                "steady_rows": len({r for b in self.mine[self.n_warm:] for r in b.rows})}

    def meta(self, warmup_s: float, compute_s: float, write: dict[str, float],
             stats: list[dict[str, Any]]) -> dict[str, Any]:
        """The activations artifact's metadata (timings, token counts, resumed/computed prompts).
        `write`: write_s (everything after compute), write_h5_s (the file), write_assemble_s (the
        in-memory arrays completed from earlier runs' chunks; single process)."""
        layout, todo, counts = self.layout, self.todo, self.counts
        meta = {
            "n_prompts": self.n, "L": layout.n_layers, "H": layout.n_heads, "D": layout.head_dim,
            "hidden": self.hidden, "device": str(self.device), "batch_tokens": self.batch_tokens,
            "warmup_s": warmup_s, "compute_s": round(compute_s, 3), **{k: round(v, 3) for k, v in write.items()},
            "prompts_per_s": (round(sum(s["steady_rows"] for s in stats) / compute_s, 2)  # batches after the warm-up ones
                              if compute_s > 0 and todo else None),
            "resumed_prompts": len(self.done), "computed_prompts": len(todo),
            "tokens_real": counts["real"], "tokens_padded": counts["padded"], "tokens_unshared": counts["unshared"],
            "prefix_shared_prompts": int(sum(1 for i in todo if self.items[i].prefix_len)),
            "fuse": self.fuser.mode if self.fuser.fallback is None else "off",
        }
        if self.fuser.fallback is not None:
            meta["fuse_fallback"] = f"{self.fuser.mode}: {self.fuser.fallback}"
        if self.dist.distributed:
            meta.update(world_size=self.dist.world_size, rank_compute_s=[s["compute_s"] for s in stats],
                        rank_prompts=[s["rows"] for s in stats])
        return meta
