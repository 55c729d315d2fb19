"""extract_to_h5: plan, compute (resuming from completed chunks, data parallel under torchrun)
and merge the chunks into activations.h5."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from itictl.extract.chunks import ChunkWriter, chunk_dirs, load_done, rank_work_dir
from itictl.extract.engine import default_batch_tokens
from itictl.extract.h5 import digest16, write_h5



def compute_batches(model, items, batches, work: Path, *, layer_wise: bool, store_dtype: str, device, pad_id: int,
                    advance=lambda k=1: None) -> list[int]:
    """Run `batches` (engine Batch objects) and save their rows as resumable chunk_N folders in
    `work` (continuing its numbering; a chunk always ends at a batch boundary). -> rows computed."""
    from itictl.extract.engine import run_batches
    from itictl.models.devices import torch_dtype

    work.mkdir(parents=True, exist_ok=True)
    seq = 1 + max((int(f.name.split("_")[1]) for f in chunk_dirs(work)), default=-1)
    computed: list[int] = []
    with ChunkWriter(work, seq, device) as writer:
        for rows, head, resid in run_batches(model, items, batches, layer_wise=layer_wise, device=device,
                                             pad_id=pad_id, out_dtype=torch_dtype(store_dtype)):
            writer.put(rows, head, resid)
            computed.extend(rows)
            advance(len(rows))
    return computed


def extract_to_h5(model, tokenizer, prompts, h5_path: Path | None, work: Path, *, fmt: str, model_key: str, dtype: str,
                  layer_wise: bool, store_dtype: str, batch_tokens: int | None, device, out=None,
                  dist=None) -> dict[str, Any]:
    """Compute (resuming from `work`) and write activations.h5 for `prompts`; returns metadata.

    With `dist` of world > 1 every rank calls this with the same prompts: all ranks plan the
    batches exactly as one process would (same batch_tokens), each computes the batches assign_balanced gives it into work/rankR/, and rank 0
    (h5_path set; None elsewhere) merges every chunk into the h5. Same batches -> same numbers,
    so the payload is bit-identical to a single-process run's."""
    from itictl.compute import distributed as D
    from itictl.extract.engine import count_tokens, pad_token_id, plan_batches, tokenize_prompts
    from itictl.compute.packing import supports_tree_masks
    from itictl.models.arch import head_layout, hidden_size

    dist = dist or D.SINGLE
    n = len(prompts)
    layout = head_layout(model)
    hidden = hidden_size(model)
    prep: dict[str, Any] = {}

    def plan_phase() -> dict[str, Any]:
        items = tokenize_prompts(tokenizer, [p.text for p in prompts], [getattr(p, "prefix", None) for p in prompts])
        n_tokens = np.array([len(t.ids) for t in items], dtype=np.int32)
        plan = {"n": n, "L": layout.n_layers, "width": layout.width, "hidden": hidden,
                "layer_wise": bool(layer_wise), "store_dtype": store_dtype, "tokens_sha": digest16(n_tokens)}
        bt = batch_tokens or default_batch_tokens(str(device), int(n_tokens.sum()))
        prep.update(items=items, n_tokens=n_tokens)
        done = sorted(load_done(work, plan)["done"]) if dist.is_main else None  # rank 0 alone cleans up
        return {"plan": plan, "batch_tokens": bt, "done": done}

    infos = D.run_phase("planning the batches", plan_phase, dist)
    D.same([(i["plan"], i["batch_tokens"]) for i in infos], "extraction plan (prompts, tokens, --batch-tokens)")
    items, n_tokens = prep["items"], prep["n_tokens"]
    batch_tokens = infos[0]["batch_tokens"]
    done = set(infos[0]["done"])
    # Plan over ALL prompts exactly like one process and skip the batches a killed run completed:
    # chunks end at batch boundaries, so a resumed run computes exactly the batches an
    # uninterrupted run would (same padding, same grouping) and the payload digest is identical.
    # Ranks share whole batches of that plan (greedy by padded tokens), which keeps data-parallel
    # runs bit-identical too: a batch's numbers depend only on its own content and shape.
    batches = [b for b in plan_batches(items, list(range(n)), batch_tokens, packed=supports_tree_masks(model))
               if not all(r in done for r in b.rows)]
    todo = sorted({r for b in batches for r in b.rows if r not in done})
    counts = count_tokens(items, batches)
    owner = D.assign_balanced([count_tokens(items, [b])["padded"] for b in batches], dist.world_size)
    mine = [b for b, o in zip(batches, owner) if o == dist.rank]
    if dist.distributed and out is not None and len(batches) < 2 * dist.world_size:
        out.warn(f"only {len(batches)} batches for {dist.world_size} ranks: some ranks idle "
                 "(a smaller --batch-tokens gives more, smaller batches)")

    def compute_phase() -> dict[str, Any]:
        t = time.time()
        if dist.distributed:
            desc, total = f"extract {fmt} (rank {dist.rank} of {dist.world_size})", len({r for b in mine for r in b.rows})
        else:
            desc, total = f"extract {fmt}", n
        progress = out.progress(desc, total=total, unit="prompts") if out is not None else None
        advance = progress.__enter__() if progress is not None else (lambda k=1: None)
        try:
            if not dist.distributed:
                advance(len(done))
            rows = compute_batches(model, items, mine, rank_work_dir(work, dist), layer_wise=layer_wise,
                                   store_dtype=store_dtype, device=device, pad_id=pad_token_id(tokenizer),
                                   advance=advance)
        finally:
            if progress is not None:
                progress.__exit__(None, None, None)
        return {"rows": len(set(rows)), "compute_s": round(time.time() - t, 3)}

    def warm_phase() -> float:
        """One forward of each batch shape this rank will run (typically 2: full forwards and the
        last, smaller one), outputs copied to host and discarded: kernel loading, cuBLAS/cuDNN
        plans, device and page-locked host allocator growth are paid here, outside compute_s,
        like the model load."""
        t = time.time()
        if mine and str(device).startswith("cuda"):
            from itictl.extract.engine import run_batches
            from itictl.extract.host import HostCopies
            from itictl.models.devices import torch_dtype

            shapes = {}
            for b in mine:
                shapes.setdefault((len(b.layout) or len(b.rows), b.packed), b)
            with HostCopies(device) as copies:
                for _, head, resid in run_batches(model, items, list(shapes.values())[:2], layer_wise=layer_wise,
                                                  device=device, pad_id=pad_token_id(tokenizer),
                                                  out_dtype=torch_dtype(store_dtype)):
                    copies.submit([head, resid], lambda arrs: None)
        return round(time.time() - t, 3)

    warm = D.run_phase("warming up", warm_phase, dist)
    t0 = time.time()
    stats = D.run_phase("extracting", compute_phase, dist)
    compute_s = time.time() - t0  # with world > 1: until the slowest rank finished
    if h5_path is None:
        return {}

    t_write = time.time()
    write_h5(h5_path, chunk_dirs(work), prompts, n_tokens, fmt=fmt, dtype=dtype, store_dtype=store_dtype,
              layer_wise=layer_wise, layout=layout, hidden=hidden, model_key=model_key)
    write_s = time.time() - t_write
    meta = {
        "n_prompts": n, "L": layout.n_layers, "H": layout.n_heads, "D": layout.head_dim, "hidden": hidden,
        "device": str(device), "batch_tokens": batch_tokens, "warmup_s": max(warm), "compute_s": round(compute_s, 3),
        "write_s": round(write_s, 3),
        "prompts_per_s": round(len(todo) / compute_s, 2) if compute_s > 0 and todo else None,
        "resumed_prompts": len(done), "computed_prompts": len(todo),
        "tokens_real": counts["real"], "tokens_padded": counts["padded"], "tokens_unshared": counts["unshared"],
        "prefix_shared_prompts": int(sum(1 for i in todo if items[i].prefix_len)),
    }
    if dist.distributed:
        meta.update(world_size=dist.world_size, rank_compute_s=[s["compute_s"] for s in stats],
                    rank_prompts=[s["rows"] for s in stats])
    return meta


