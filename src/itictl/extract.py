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
prompts reads contiguously. Work in progress lives in ctx.work as chunk_N/ folders of .npy files, written atomically
as each chunk of prompts finishes; a killed run resumes from them.
"""

from __future__ import annotations

import json
import os
import time
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


def resolve_store_dtype(store_dtype: str | None, dtype: str) -> str:
    store_dtype = (store_dtype or "auto").lower()
    if store_dtype not in STORE_DTYPES:
        raise BadInputError(f"unknown store dtype {store_dtype!r}", f"use one of {', '.join(STORE_DTYPES)}")
    if store_dtype == "auto":
        return "float32" if dtype == "float32" else "float16"
    return store_dtype


def default_batch_tokens(device: str, total_tokens: int | None = None) -> int:
    """--batch-tokens when not given: 4096 on CPU. On an accelerator 65536, but given the prompts' total
    (unshared) token count, about 1/32 of it as a power of two within [8192, 65536] (tqa_mc2:
    161,687 tokens -> 8192; prefix sharing halves the tokens, so that plan has 10 forwards). Below
    8192-token forwards a 7B model's matmuls lose efficiency (H100: 4096 is ~2 % slower end to end);
    a plan of 2 huge batches (all of tqa_mc2 at 65536) leaves the device->host copies nothing to
    hide behind and cannot be shared among data-parallel ranks; and the plan must not depend on
    the world size (so that the payload is bit-identical to one process's): with many ranks pass a
    smaller --batch-tokens (extract warns when there are fewer than 2 batches per rank)."""
    if str(device).startswith("cpu"):
        return 4096
    if not total_tokens:
        return 65536
    per = -(-int(total_tokens) // 32)
    return int(min(65536, max(8192, 1 << (per - 1).bit_length())))


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
                revision: str | None = None, dist=None, device_map: str | None = None):
    """-> (Artifact, cached). The key is computed from the model and dataset identities first;
    the model is loaded only when the artifact has to be built. `dist` (a DistContext, default
    itictl.distributed.current()) with world > 1 runs the data-parallel protocol: every rank
    calls this with the same arguments; the artifact is identical to a single-process run's."""
    from itictl import distributed

    dist = dist or distributed.current()
    device_map = distributed.check_device_map(device_map, dist)
    if batch_tokens is not None and batch_tokens < 1:
        raise BadInputError(f"--batch-tokens must be positive (got {batch_tokens})", "try 4096 on CPU, 65536 on a GPU")

    def resolve():
        return _key_inputs(store, model_spec, fmt, data_dir, limit=limit, layer_wise=layer_wise, dtype=dtype,
                           device=device, seed=seed, store_dtype=store_dtype, out=out, revision=revision,
                           device_map=device_map)

    if not dist.distributed:
        params, model_art, ds_art = resolve()

        def build(ctx) -> None:
            from itictl.models import resolve_device

            real_dev = resolve_device(device)
            _build(ctx, store, model_art, ds_art, params, device=real_dev, batch_tokens=batch_tokens, out=out,
                   device_map=device_map)

        return store.produce("activations", params, _parents(model_art, ds_art), build, step_version=STEP_VERSION)
    return _run_extract_dp(store, dist, resolve, device=device, batch_tokens=batch_tokens, out=out)


def _parents(model_art, ds_art) -> dict[str, str]:
    return {"model": model_art.key, "dataset": ds_art.key}


def _key_inputs(store, model_spec, fmt, data_dir, *, limit, layer_wise, dtype, device, seed, store_dtype, out,
                revision, device_map=None):
    """-> (params, model artifact, dataset artifact): everything the key depends on."""
    from itictl.data import ensure_dataset
    from itictl.models import ensure_model
    from itictl.models.loading import compute_device, resolve_dtype

    dt = resolve_dtype(dtype, compute_device(device, device_map))  # the dtype load_model will use
    params = extract_params(fmt, limit=limit, layer_wise=layer_wise, dtype=dt, seed=seed,
                            store_dtype=resolve_store_dtype(store_dtype, dt))
    model_art = ensure_model(store, model_spec, revision=revision, out=out)
    from itictl.config import data_dir as resolve_data_dir

    ds_art = ensure_dataset(store, resolve_data_dir(data_dir))
    if limit is not None:
        from itictl.data import prompt_count, read_dataset

        if limit >= prompt_count(read_dataset(ds_art), fmt):
            params["limit"] = None  # --limit past the end is the full set: same key, no duplicate object
    return params, model_art, ds_art


def _run_extract_dp(store, dist, resolve, *, device: str, batch_tokens: int | None, out):
    """The data-parallel protocol (every rank runs it; phases are collective, see distributed.py):

    1. rank 0 resolves the key (creating the model/dataset objects once), then the other ranks
       resolve theirs; all must agree.
    2. distributed.produce: rank 0 holds the key lock and commits; if the artifact is cached every
       rank returns it.
    3. in extract_to_h5 every rank loads the model, plans all batches exactly like a single process,
       computes the batches assigned to it into tmp/KEY.work/rankR/, and rank 0 merges them into
       the one activations.h5 that produce then commits; the others then open the artifact."""
    from itictl import distributed as D

    main = dist.is_main
    box: dict[str, Any] = {}

    def resolve_here(first: bool):
        if main == first:
            params, model_art, ds_art = resolve()
            box.update(params=params, model=model_art, ds=ds_art)
            return store.key_for("activations", params, _parents(model_art, ds_art), step_version=STEP_VERSION)
        return None

    k0 = D.run_phase("resolving the key", lambda: resolve_here(True), dist)[0]  # rank 0 first: makes model/dataset objects once
    keys = D.run_phase("resolving the key", lambda: resolve_here(False), dist)
    key = D.same([k0] + keys[1:], "activations key")
    params, model_art, ds_art = box["params"], box["model"], box["ds"]

    def build(ctx) -> None:  # ctx None on ranks > 0
        _build(ctx, store, model_art, ds_art, params, device=device, batch_tokens=batch_tokens,
               out=out if main else None, dist=dist, work=store.work_dir(key))

    return D.produce(store, dist, "activations", params, _parents(model_art, ds_art), build,
                     step_version=STEP_VERSION)


# ---- building ---------------------------------------------------------------------------------

def _chunk_files(work: Path) -> list[Path]:
    """Completed chunks (folders): a single process's (work/chunk_N) and every rank's (work/rankR/)."""
    if not work.is_dir():
        return []
    found = sorted(work.glob("chunk_*")) + sorted(work.glob("rank*/chunk_*"))
    return [p for p in found if p.is_dir()]


def rank_work_dir(work: Path, dist) -> Path:
    """Where this rank writes its chunks: `work` itself for a single process, else work/rankR."""
    return work / f"rank{dist.rank}" if dist.distributed else work


def _load_done(work: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Completed chunks of an earlier, interrupted run with the same plan (else start afresh);
    half-written chunks (partial_N) and unreadable ones are removed (their prompts are redone)."""
    import shutil

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
    tmp = work / "plan.json.tmp"
    tmp.write_text(json.dumps(plan, sort_keys=True))
    os.replace(tmp, plan_file)
    files = []
    done: set[int] = set()
    for f in _chunk_files(work):
        try:
            idx = _read_chunk(f, plan["layer_wise"])
        except (OSError, ValueError, KeyError, EOFError):
            shutil.rmtree(f, ignore_errors=True)  # unreadable: recompute its prompts
            continue
        files.append(f)
        done.update(int(i) for i in idx)
    return {"files": files, "done": done}


def _read_chunk(f: Path, layer_wise: bool) -> np.ndarray:
    """A chunk's prompt indices, after checking that its arrays are complete (memory-mapped headers:
    a short file fails here). No pickle: object arrays are refused."""
    idx = np.load(f / "idx.npy", allow_pickle=False)
    names = ["head"] + (["resid"] if layer_wise else [])
    for name in names:
        a = np.load(f / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        if a.shape[0] != idx.shape[0]:
            raise ValueError(f"{f.name}/{name}.npy has {a.shape[0]} rows for {idx.shape[0]} prompts")
    return idx


def _save_npy(path: Path, parts: list[np.ndarray]) -> None:
    """Row-blocks `parts` as one .npy file, written block by block (no concatenated copy)."""
    import numpy.lib.format as fmt

    shape = (sum(len(a) for a in parts), *parts[0].shape[1:])
    with open(path, "wb") as fh:
        fmt.write_array_header_1_0(fh, {"descr": fmt.dtype_to_descr(parts[0].dtype), "fortran_order": False,
                                        "shape": shape})
        for a in parts:
            np.ascontiguousarray(a).tofile(fh)


def _save_chunk(work: Path, seq: int, idx: list[np.ndarray], head: list[np.ndarray],
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
    _save_npy(tmp / "idx.npy", idx)
    _save_npy(tmp / "head.npy", head)
    if resid:
        _save_npy(tmp / "resid.npy", resid)
    os.replace(tmp, final)
    return final


def _build(ctx, store, model_art, ds_art, params: dict[str, Any], *, device: str, batch_tokens: int | None, out,
           dist=None, work: Path | None = None, device_map: str | None = None) -> None:
    """Load the model and run extract_to_h5. With world > 1 every rank calls this (rank 0 with
    the store's BuildContext, the others with ctx=None and the key's work dir); `device` is then
    the --device option, mapped to this rank's GPU here."""
    from itictl import distributed as D
    from itictl.data import build_prompts, read_dataset
    from itictl.models import load_model
    from itictl.models import resolve_device

    dist = dist or D.SINGLE
    fmt = params["format"]
    got: dict[str, Any] = {}

    def load() -> None:
        prompts = build_prompts(read_dataset(ds_art), fmt, seed=params["seed"] or 0)
        if params["limit"] is not None:
            prompts = prompts[: params["limit"]]
        if not prompts:
            raise BadInputError(f"the dataset has no {fmt} prompts", "check --data and --dataset")
        dev = resolve_device(D.rank_device(dist, device)) if dist.distributed else device
        kw: dict[str, Any] = {"device_map": device_map} if device_map else {}  # only when set (model parallel)
        if out is not None:
            with out.status(f"loading model {model_art.key[:12]} on {dev}"):
                lm = load_model(store, model_art, dtype=params["dtype"], device=dev, **kw)
        else:
            lm = load_model(store, model_art, dtype=params["dtype"], device=dev, **kw)
        got.update(prompts=prompts, lm=lm, dev=dev)

    D.run_phase("loading the model", load, dist)
    lm, dev = got["lm"], got["dev"]
    meta = extract_to_h5(
        lm.model, lm.tokenizer, got["prompts"], ctx.out / H5_NAME if ctx is not None else None,
        ctx.work if ctx is not None else work, fmt=fmt, model_key=model_art.key, dtype=params["dtype"],
        layer_wise=params["layer_wise"], store_dtype=params["store_dtype"],
        batch_tokens=batch_tokens, device=getattr(lm, "device", None) or dev, out=out,
        dist=dist)
    if ctx is not None:
        ctx.meta.update(meta)


def compute_batches(model, items, batches, work: Path, *, layer_wise: bool, store_dtype: str, device, pad_id: int,
                    advance=lambda k=1: None) -> list[int]:
    """Run `batches` (engine Batch objects) and save their rows as resumable chunk_N folders in
    `work` (continuing its numbering; a chunk always ends at a batch boundary). -> rows computed."""
    from itictl.extraction.engine import run_batches
    from itictl.models.loading import torch_dtype

    work.mkdir(parents=True, exist_ok=True)
    seq = 1 + max((int(f.name.split("_")[1]) for f in _chunk_files(work)), default=-1)
    computed: list[int] = []
    with _ChunkWriter(work, seq, device) as writer:
        for rows, head, resid in run_batches(model, items, batches, layer_wise=layer_wise, device=device,
                                             pad_id=pad_id, out_dtype=torch_dtype(store_dtype)):
            writer.put(rows, head, resid)
            computed.extend(rows)
            advance(len(rows))
    return computed


class _ChunkWriter:
    """Saves batches as resumable chunks while the device keeps computing: each batch is copied to
    page-locked host memory on a side stream as soon as it is done (engine.HostCopies), and the
    worker thread gathers batches until a chunk holds CHUNK_PROMPTS prompts, then writes it. Chunks
    end at batch boundaries in submission order, so a resumed run continues the same plan. The
    first failure stops later writes (no chunk after a failed one is written) and is re-raised in
    the caller; a dying run writes nothing more (its partial chunk is lost, its batches redone)."""

    def __init__(self, work: Path, seq: int, device: Any = "cpu"):
        from itictl.extraction.engine import HostCopies

        self.work, self.seq = work, seq
        self.copies = HostCopies(device)
        self.failed = False
        self.idx: list[np.ndarray] = []   # worker thread only
        self.head: list[np.ndarray] = []
        self.resid: list[np.ndarray] = []

    def put(self, rows: list[int], head, resid) -> None:
        idx = np.asarray(rows, dtype=np.int64)

        def gather(arrs: list) -> None:
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
        _save_chunk(self.work, self.seq, self.idx, self.head, self.resid or None)
        self.seq += 1
        self.idx, self.head, self.resid = [], [], []

    def __enter__(self) -> "_ChunkWriter":
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


def extract_to_h5(model, tokenizer, prompts, h5_path: Path | None, work: Path, *, fmt: str, model_key: str, dtype: str,
                  layer_wise: bool, store_dtype: str, batch_tokens: int | None, device, out=None,
                  dist=None) -> dict[str, Any]:
    """Compute (resuming from `work`) and write activations.h5 for `prompts`; returns metadata.

    With `dist` of world > 1 every rank calls this with the same prompts: all ranks plan the
    batches exactly as one process would (same batch_tokens), each computes the batches assign_balanced gives it into work/rankR/, and rank 0
    (h5_path set; None elsewhere) merges every chunk into the h5. Same batches -> same numbers,
    so the payload is bit-identical to a single-process run's."""
    from itictl import distributed as D
    from itictl.extraction.engine import count_tokens, pad_token_id, plan_batches, tokenize_prompts
    from itictl.extraction.packing import supports_tree_masks
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
                "layer_wise": bool(layer_wise), "store_dtype": store_dtype, "tokens_sha": _digest(n_tokens)}
        bt = batch_tokens or default_batch_tokens(str(device), int(n_tokens.sum()))
        prep.update(items=items, n_tokens=n_tokens)
        done = sorted(_load_done(work, plan)["done"]) if dist.is_main else None  # rank 0 alone cleans up
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
            from itictl.extraction.engine import HostCopies, run_batches
            from itictl.models.loading import torch_dtype

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
    _write_h5(h5_path, _chunk_files(work), prompts, n_tokens, fmt=fmt, dtype=dtype, store_dtype=store_dtype,
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
                idx = np.load(p / "idx.npy", allow_pickle=False)
                full[idx] = np.load(p / f"{key}.npy", mmap_mode="r", allow_pickle=False)
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
