"""extract_to_h5: plan, warm up, compute (resuming from completed chunks, data parallel under
torchrun) and merge the chunks into activations.h5; `_Extraction` holds one call's phases."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from itictl.extract.chunks import ChunkWriter, chunk_dirs, load_done, rank_work_dir
from itictl.extract.engine import default_batch_tokens
from itictl.extract.h5 import digest16, write_h5


def compute_batches(model, items, batches, work: Path, *, layer_wise: bool, store_dtype: str, device, pad_id: int,
                    advance=lambda k=1: None, fuse=None) -> list[int]:
    """Run `batches` (engine Batch objects) and save their rows as resumable chunk_N folders in
    `work` (continuing its numbering; a chunk always ends at a batch boundary). -> rows computed.
    `fuse`: a compute.fuse.Fuser (None: the model as it is)."""
    from contextlib import nullcontext

    from itictl.extract.engine import run_batches
    from itictl.models.devices import torch_dtype

    work.mkdir(parents=True, exist_ok=True)
    seq = 1 + max((int(f.name.split("_")[1]) for f in chunk_dirs(work)), default=-1)
    computed: list[int] = []
    with fuse if fuse is not None else nullcontext(), ChunkWriter(work, seq, device) as writer:
        for rows, head, resid in run_batches(model, items, batches, layer_wise=layer_wise, device=device,
                                             pad_id=pad_id, out_dtype=torch_dtype(store_dtype), fuse=fuse):
            writer.put(rows, head, resid)
            computed.extend(rows)
            advance(len(rows))
    return computed


def extract_to_h5(model, tokenizer, prompts, h5_path: Path | None, work: Path, *, fmt: str, model_key: str, dtype: str,
                  layer_wise: bool, store_dtype: str, batch_tokens: int | None, device, out=None,
                  dist=None, fuse: str = "off") -> dict[str, Any]:
    """Compute (resuming from `work`) and write activations.h5 for `prompts`; returns metadata.

    With `dist` of world > 1 every rank calls this with the same prompts: all ranks plan the
    batches exactly as one process would (same batch_tokens), each computes the batches
    assign_balanced gives it into work/rankR/, and rank 0 (h5_path set; None elsewhere) merges
    every chunk into the h5. Same batches -> same numbers, so the payload is bit-identical to a
    single-process run's. `fuse`: a --fuse mode (compute.fuse), resolved here for the model."""
    from itictl.compute import distributed as D

    ex = _Extraction(model, tokenizer, prompts, work, layer_wise=layer_wise, store_dtype=store_dtype,
                     device=device, dist=dist or D.SINGLE, out=out, fuse=fuse)
    ex.plan(batch_tokens)
    warm = D.run_phase("warming up", ex.warm_up, ex.dist)
    t0 = time.time()
    stats = D.run_phase("extracting", lambda: ex.compute(fmt), ex.dist)
    compute_s = time.time() - t0  # with world > 1: until the slowest rank finished
    if h5_path is None:
        return {}
    t_write = time.time()
    write_h5(h5_path, chunk_dirs(work), prompts, ex.n_tokens, fmt=fmt, dtype=dtype, store_dtype=store_dtype,
             layer_wise=layer_wise, layout=ex.layout, hidden=ex.hidden, model_key=model_key)
    return ex.meta(max(warm), compute_s, time.time() - t_write, stats)


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

    def warm_up(self) -> float:
        """On a GPU, or with compiled layers: one forward of each batch shape this rank will run
        (the first 2: full forwards and the last, smaller one; every shape with compiled layers,
        which compile one graph set per shape here), outputs copied to host and discarded: kernel
        loading, cuBLAS/cuDNN plans, compiling, device and page-locked host allocator growth are
        paid here, outside compute_s, like the model load."""
        t = time.time()
        if self.mine and (str(self.device).startswith("cuda") or self.fuser.active):
            from itictl.extract.engine import pad_token_id, run_batches
            from itictl.extract.host import HostCopies
            from itictl.models.devices import torch_dtype

            shapes = {}
            for b in self.mine:
                shapes.setdefault((len(b.layout) or len(b.rows), b.packed), b)
            warm = list(shapes.values())[: None if self.fuser.active else 2]
            with self.fuser, HostCopies(self.device) as copies:
                for _, head, resid in run_batches(self.model, self.items, warm,
                                                  layer_wise=self.layer_wise, device=self.device,
                                                  pad_id=pad_token_id(self.tokenizer),
                                                  out_dtype=torch_dtype(self.store_dtype), fuse=self.fuser):
                    copies.submit([head, resid], lambda arrs: None)
        return round(time.time() - t, 3)

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
        try:
            if not dist.distributed:
                advance(len(self.done))
            rows = compute_batches(self.model, self.items, self.mine, rank_work_dir(self.work, dist),
                                   layer_wise=self.layer_wise, store_dtype=self.store_dtype, device=self.device,
                                   pad_id=pad_token_id(self.tokenizer), advance=advance, fuse=self.fuser)
        finally:
            if progress is not None:
                progress.__exit__(None, None, None)
        return {"rows": len(set(rows)), "compute_s": round(time.time() - t, 3)}

    def meta(self, warmup_s: float, compute_s: float, write_s: float, stats: list[dict[str, Any]]) -> dict[str, Any]:
        """The activations artifact's metadata (timings, token counts, resumed/computed prompts)."""
        layout, todo, counts = self.layout, self.todo, self.counts
        meta = {
            "n_prompts": self.n, "L": layout.n_layers, "H": layout.n_heads, "D": layout.head_dim,
            "hidden": self.hidden, "device": str(self.device), "batch_tokens": self.batch_tokens,
            "warmup_s": warmup_s, "compute_s": round(compute_s, 3), "write_s": round(write_s, 3),
            "prompts_per_s": round(len(todo) / compute_s, 2) if compute_s > 0 and todo else None,
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
