"""The `activations` step: run_extract (prompts -> HDF5 artifact, resumable, cached) and
open_activations (the reader probes/eval use).

Key (what goes into params): format, limit, seed (only for tqa_gen_end_q, else null), dtype (the
resolved compute dtype), layer_wise, store_dtype (resolved); parents: model and dataset keys.
Deliberately NOT in the key: batch_tokens and device. Results do not depend on them beyond
floating-point tolerance (batched == single-prompt and shared == unshared are tested), so a rerun
with another batch size or on another device of the same dtype reuses the artifact. The compute
dtype is in the key because float16/bfloat16/float32 give meaningfully different activations.

Payload `activations.h5`: head_wise [N, L, H·D], layer_wise [N, L+1, hidden] (optional), label,
question_index, answer_index, category (when the format has one), n_tokens; attrs model, L, H, D,
hidden, format, dtype, store_dtype. Datasets are chunked [rows, 1, width] so one layer for all
prompts reads contiguously. Work in progress lives in ctx.work as chunk_*.npz, written atomically
as each chunk of prompts finishes; a killed run resumes from them.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from itictl.errors import BadInputError

FORMATS = ("tqa_mc2", "tqa_gen", "tqa_gen_end_q")
SEEDED_FORMATS = ("tqa_gen_end_q",)
STORE_DTYPES = ("auto", "float16", "float32")
H5_NAME = "activations.h5"
CHUNK_PROMPTS = 512  # prompts per resumable chunk
STEP_VERSION = 1


def _cheap_auto_device() -> str:
    """What 'auto' will resolve to, guessed without importing torch (1-2 s) so that a cached
    extract returns fast: a CUDA build of torch and an NVIDIA device node -> 'cuda'."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return "cpu"
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text()
    except OSError:
        return "cpu"
    m = re.search(r"^cuda\s*(?::\s*[^=]+)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return "cuda" if m and Path("/dev/nvidia0").exists() else "cpu"


def resolve_device(device: str | None) -> str:
    """'auto' -> 'cuda' when available, else 'cpu'. Imports torch only when it must."""
    device = (device or "auto").lower()
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not device.startswith(("cuda", "mps")):
        raise BadInputError(f"unknown device {device!r}", "use auto, cpu, cuda or cuda:N")
    return device


def resolve_store_dtype(store_dtype: str | None, dtype: str) -> str:
    store_dtype = (store_dtype or "auto").lower()
    if store_dtype not in STORE_DTYPES:
        raise BadInputError(f"unknown store dtype {store_dtype!r}", f"use one of {', '.join(STORE_DTYPES)}")
    if store_dtype == "auto":
        return "float32" if dtype == "float32" else "float16"
    return store_dtype


def default_batch_tokens(device: str) -> int:
    return 4096 if device == "cpu" else 65536  # H100, Llama-2-7B fp16: 12.0 s vs 17.8 s at 32768 (docs/benchmarks.md)


def extract_params(fmt: str, *, limit: int | None, layer_wise: bool, dtype: str, seed: int,
                   store_dtype: str) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise BadInputError(f"unknown dataset format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    if limit is not None and limit < 1:
        raise BadInputError(f"--limit must be at least 1 (got {limit})", "omit --limit for all prompts")
    return {"format": fmt, "limit": limit, "seed": seed if fmt in SEEDED_FORMATS else None, "dtype": dtype,
            "layer_wise": bool(layer_wise), "store_dtype": store_dtype}


def run_extract(store, model_spec: str | None, fmt: str, data_dir: Path | str | None, *, limit: int | None = None,
                layer_wise: bool = False, dtype: str = "auto", device: str = "auto",
                batch_tokens: int | None = None, seed: int = 42, store_dtype: str = "auto", out=None,
                revision: str | None = None):
    """-> (Artifact, cached). The key is computed from the model and dataset identities first;
    the model is loaded only when the artifact has to be built."""
    from itictl.data import ensure_dataset
    from itictl.models import ensure_model

    if batch_tokens is not None and batch_tokens < 1:
        raise BadInputError(f"--batch-tokens must be positive (got {batch_tokens})", "try 4096 on CPU, 65536 on a GPU")
    dev = _cheap_auto_device() if (device or "auto").lower() == "auto" else resolve_device(device)
    from itictl.models import resolve_dtype

    dt = resolve_dtype(dtype, dev)
    params = extract_params(fmt, limit=limit, layer_wise=layer_wise, dtype=dt, seed=seed,
                            store_dtype=resolve_store_dtype(store_dtype, dt))
    model_art = ensure_model(store, model_spec, revision=revision, out=out)
    from itictl.config import data_dir as resolve_data_dir

    ds_art = ensure_dataset(store, resolve_data_dir(data_dir))
    if limit is not None:
        from itictl.data import prompt_count, read_dataset

        if limit >= prompt_count(read_dataset(ds_art), fmt):
            params["limit"] = None  # --limit past the end is the full set: same key, no duplicate object
    parents = {"model": model_art.key, "dataset": ds_art.key}

    def build(ctx) -> None:
        from itictl.models import resolve_device as models_resolve_device

        real_dev = models_resolve_device(device)
        _build(ctx, store, model_art, ds_art, params, device=real_dev,
               batch_tokens=batch_tokens or default_batch_tokens(real_dev), out=out)

    return store.produce("activations", params, parents, build, step_version=STEP_VERSION)


# ---- building ---------------------------------------------------------------------------------

def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def _chunk_files(work: Path) -> list[Path]:
    return sorted(work.glob("chunk_*.npz")) if work.is_dir() else []


def _load_done(work: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Completed chunks of an earlier, interrupted run with the same plan (else start afresh)."""
    plan_file = work / "plan.json"
    if work.is_dir():
        try:
            same = json.loads(plan_file.read_text()) == plan
        except (OSError, ValueError):
            same = False
        if not same:
            for p in work.iterdir():
                if p.is_file():
                    p.unlink()
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / "plan.json.tmp"
    tmp.write_text(json.dumps(plan, sort_keys=True))
    os.replace(tmp, plan_file)
    files = []
    done: set[int] = set()
    for f in _chunk_files(work):
        try:
            with np.load(f) as z:
                idx = [int(i) for i in z["idx"]]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            f.unlink(missing_ok=True)  # unreadable: recompute its prompts
            continue
        files.append(f)
        done.update(idx)
    return {"files": files, "done": done}


def _save_chunk(work: Path, seq: int, idx: np.ndarray, head: np.ndarray, resid: np.ndarray | None) -> Path:
    final = work / f"chunk_{seq:06d}.npz"
    tmp = work / f"partial_{seq:06d}.npz"  # not matched by chunk_*.npz until complete
    arrays = {"idx": idx, "head": head}
    if resid is not None:
        arrays["resid"] = resid
    np.savez(tmp, **arrays)
    os.replace(tmp, final)
    return final


def _build(ctx, store, model_art, ds_art, params: dict[str, Any], *, device: str, batch_tokens: int, out) -> None:
    from itictl.data import build_prompts, read_dataset
    from itictl.models import load_model

    fmt = params["format"]
    prompts = build_prompts(read_dataset(ds_art), fmt, seed=params["seed"] or 0)
    if params["limit"] is not None:
        prompts = prompts[: params["limit"]]
    if not prompts:
        raise BadInputError(f"the dataset has no {fmt} prompts", "check --data and --dataset")
    if out is not None:
        with out.status(f"loading model {model_art.key[:12]} on {device}"):
            lm = load_model(store, model_art, dtype=params["dtype"], device=device)
    else:
        lm = load_model(store, model_art, dtype=params["dtype"], device=device)
    ctx.meta.update(extract_to_h5(
        lm.model, lm.tokenizer, prompts, ctx.out / H5_NAME, ctx.work, fmt=fmt, model_key=model_art.key,
        dtype=params["dtype"], layer_wise=params["layer_wise"], store_dtype=params["store_dtype"],
        batch_tokens=batch_tokens, device=getattr(lm, "device", None) or device, out=out))


def extract_to_h5(model, tokenizer, prompts, h5_path: Path, work: Path, *, fmt: str, model_key: str, dtype: str,
                  layer_wise: bool, store_dtype: str, batch_tokens: int, device, out=None) -> dict[str, Any]:
    """Compute (resuming from `work`) and write activations.h5 for `prompts`; returns metadata."""
    import torch

    from itictl.extraction.engine import (cache_token_budget, count_tokens, pad_token_id, plan_batches, run_batches,
                                          tokenize_prompts)
    from itictl.models.arch import head_layout

    n = len(prompts)
    layout = head_layout(model)
    cfg = model.config
    hidden = int(getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd"))
    items = tokenize_prompts(tokenizer, [p.text for p in prompts], [getattr(p, "prefix", None) for p in prompts])
    n_tokens = np.array([len(t.ids) for t in items], dtype=np.int32)
    plan = {"n": n, "L": layout.n_layers, "width": layout.width, "hidden": hidden, "layer_wise": bool(layer_wise),
            "store_dtype": store_dtype, "tokens_sha": _digest(n_tokens)}
    state = _load_done(work, plan)
    done = state["done"]
    cache_tokens = cache_token_budget(model, device, batch_tokens)
    # Plan over ALL prompts and skip the batches a killed run completed: chunks end at batch
    # boundaries, so a resumed run computes exactly the batches an uninterrupted run would (same
    # padding, same grouping) and the payload digest is identical.
    batches = [b for b in plan_batches(items, list(range(n)), batch_tokens, cache_tokens)
               if not all(r in done for r in b.rows)]
    todo = sorted({r for b in batches for r in b.rows if r not in done})
    counts = count_tokens(items, batches)
    store_dt = _torch_dtype(store_dtype)

    t0 = time.time()
    files = list(state["files"])
    seq = 1 + max((int(f.stem.split("_")[1]) for f in files), default=-1)
    acc_idx: list[int] = []
    acc_head: list = []
    acc_resid: list = []

    def flush() -> None:
        nonlocal seq
        if not acc_idx:
            return
        head = torch.cat(acc_head).cpu().numpy()
        resid = torch.cat(acc_resid).cpu().numpy() if acc_resid else None
        files.append(_save_chunk(work, seq, np.asarray(acc_idx, dtype=np.int64), head, resid))
        seq += 1
        acc_idx.clear()
        acc_head.clear()
        acc_resid.clear()

    progress = out.progress(f"extract {fmt}", total=n, unit="prompts") if out is not None else None
    advance = progress.__enter__() if progress is not None else (lambda k=1: None)
    try:
        advance(len(state["done"]))
        for rows, head, resid in run_batches(model, items, batches, layer_wise=layer_wise, device=device,
                                             pad_id=pad_token_id(tokenizer), out_dtype=store_dt):
            acc_idx.extend(rows)
            acc_head.append(head)
            if resid is not None:
                acc_resid.append(resid)
            if len(acc_idx) >= CHUNK_PROMPTS:
                flush()
            advance(len(rows))
        flush()
    finally:
        if progress is not None:
            progress.__exit__(None, None, None)
    compute_s = time.time() - t0

    _write_h5(h5_path, files, prompts, n_tokens, fmt=fmt, dtype=dtype, store_dtype=store_dtype,
              layer_wise=layer_wise, layout=layout, hidden=hidden, model_key=model_key)
    return {
        "n_prompts": n, "L": layout.n_layers, "H": layout.n_heads, "D": layout.head_dim, "hidden": hidden,
        "device": str(device), "batch_tokens": batch_tokens, "cache_tokens": cache_tokens, "compute_s": round(compute_s, 3),
        "prompts_per_s": round(len(todo) / compute_s, 2) if compute_s > 0 and todo else None,
        "resumed_prompts": len(state["done"]), "computed_prompts": len(todo),
        "tokens_real": counts["real"], "tokens_padded": counts["padded"], "tokens_unshared": counts["unshared"],
        "prefix_shared_prompts": int(sum(1 for i in todo if items[i].prefix_len)),
    }


def _digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def _write_h5(path: Path, files: list[Path], prompts, n_tokens: np.ndarray, *, fmt: str, dtype: str,
              store_dtype: str, layer_wise: bool, layout, hidden: int, model_key: str) -> None:
    import h5py

    n = len(prompts)
    np_dt = np.float16 if store_dtype == "float16" else np.float32
    rows = min(n, 512)
    with h5py.File(path, "w") as f:
        specs = [("head_wise", "head", (n, layout.n_layers, layout.width))]
        if layer_wise:
            specs.append(("layer_wise", "resid", (n, layout.n_layers + 1, hidden)))
        for name, key, shape in specs:
            full = np.empty(shape, dtype=np_dt)
            seen = np.zeros(n, dtype=bool)
            for p in files:
                with np.load(p) as z:
                    idx = z["idx"]
                    full[idx] = z[key]
                    seen[idx] = True
            if not seen.all():
                raise RuntimeError(f"extraction incomplete: {int((~seen).sum())} prompts missing")
            f.create_dataset(name, data=full, chunks=(rows, 1, shape[2]))
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

    def load_head_wise(self) -> np.ndarray:
        """[N, L, H·D] everything in memory."""
        return self.head_wise[...]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "Activations":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
