"""The `activations` step: run_extract (prompts -> HDF5 artifact, resumable, cached) and
open_activations (the reader probes/eval use).

Key (what goes into params): format, limit, seed (only for tqa_gen_end_q, else null), dtype (the
resolved compute dtype), layer_wise, store_dtype (resolved); parents: model and dataset keys.
Deliberately NOT in the key: batch_tokens and device. Results do not depend on them beyond
floating-point tolerance (batched == single-prompt and shared == unshared are tested), so a rerun
with another batch size or on another device of the same dtype reuses the artifact. `fuse` is in the
key when it is not `off` (see _key_inputs); the manifest's meta records the fuse mode that ran. The compute
dtype is in the key because float16/bfloat16/float32 give meaningfully different activations.

Payload `activations.h5`: head_wise [N, L, H·D], layer_wise [N, L+1, hidden] (optional), label,
question_index, answer_index, category (when the format has one), n_tokens; attrs model, L, H, D,
hidden, format, dtype, store_dtype. Datasets are chunked [rows, 1, width] so one layer for all
prompts reads contiguously. Work in progress lives in ctx.work as chunk_N/ folders of .npy files, written atomically
as each chunk of prompts finishes; a killed run resumes from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from itictl import hooks
from itictl.data.prompts import FORMATS, SEEDED_FORMATS
from itictl.errors import BadInputError
from itictl.extract.engine import default_batch_tokens  # noqa: F401 (re-exported)
from itictl.extract.h5 import H5_NAME

STORE_DTYPES = ("auto", "float16", "float32")
STEP_VERSION = 1


def resolve_store_dtype(store_dtype: str | None, dtype: str) -> str:
    store_dtype = (store_dtype or "auto").lower()
    if store_dtype not in STORE_DTYPES:
        raise BadInputError(f"unknown store dtype {store_dtype!r}", f"use one of {', '.join(STORE_DTYPES)}")
    if store_dtype == "auto":
        return "float32" if dtype == "float32" else "float16"
    return store_dtype



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
                revision: str | None = None, dist=None, device_map: str | None = None, fuse: str = "off"):
    """-> (Artifact, cached). The key is computed from the model and dataset identities first;
    the model is loaded only when the artifact has to be built. `dist` (a DistContext, default
    itictl.compute.distributed.current()) with world > 1 runs the data-parallel protocol: every rank
    calls this with the same arguments; the artifact is identical to a single-process run's."""
    from itictl.compute import distributed
    from itictl.compute.fuse import check_fuse

    fuse = check_fuse(fuse)  # bad input fails before any model load
    dist = dist or distributed.current()
    device_map = distributed.check_device_map(device_map, dist)
    if batch_tokens is not None and batch_tokens < 1:
        raise BadInputError(f"--batch-tokens must be positive (got {batch_tokens})", "try 4096 on CPU, 65536 on a GPU")

    def resolve():
        return _key_inputs(store, model_spec, fmt, data_dir, limit=limit, layer_wise=layer_wise, dtype=dtype,
                           device=device, seed=seed, store_dtype=store_dtype, out=out, revision=revision,
                           device_map=device_map, fuse=fuse)

    if not dist.distributed:
        params, model_art, ds_art = resolve()
        kept: dict[str, Any] = {}

        def build(ctx) -> None:
            from itictl.models import resolve_device

            real_dev = resolve_device(device)
            _build(ctx, store, model_art, ds_art, params, device=real_dev, batch_tokens=batch_tokens, out=out,
                   device_map=device_map, fuse=fuse, keep=kept)

        with hooks.timed(f"extract:{fmt}"):
            art, cached = store.produce("activations", params, _parents(model_art, ds_art), build,
                                        step_version=STEP_VERSION)
        if "head" in kept:  # an eval's probe steps take the array from memory, not from the file
            from itictl.extract.h5 import offer

            offer(art.path / H5_NAME, kept.pop("head"))
        return art, cached
    with hooks.timed(f"extract:{fmt}"):
        return _run_extract_dp(store, dist, resolve, device=device, batch_tokens=batch_tokens, out=out, fuse=fuse)


def _parents(model_art, ds_art) -> dict[str, str]:
    return {"model": model_art.key, "dataset": ds_art.key}


def _key_inputs(store, model_spec, fmt, data_dir, *, limit, layer_wise, dtype, device, seed, store_dtype, out,
                revision, device_map=None, fuse: str = "off"):
    """-> (params, model artifact, dataset artifact): everything the key depends on. A --fuse mode
    other than off is in the key (as requested: auto, compile, max-autotune): compiled fp16 layers
    differ from the eager ones by up to 0.106 on the 7B shape (docs/extract.md), more than the
    tolerance that keeps batch size and device out of the key, so `--fuse off` always gets eager
    activations. Runs without --fuse keep their keys."""
    from itictl.data import ensure_dataset
    from itictl.models import ensure_model
    from itictl.models.devices import compute_device, resolve_dtype

    dt = resolve_dtype(dtype, compute_device(device, device_map))  # the dtype load_model will use
    params = extract_params(fmt, limit=limit, layer_wise=layer_wise, dtype=dt, seed=seed,
                            store_dtype=resolve_store_dtype(store_dtype, dt))
    from itictl.models.arch import current_arch_map

    if current_arch_map() is not None:  # only when given, so keys of runs without one are unchanged
        params["arch_map"] = current_arch_map().as_dict()
    if fuse != "off":
        params["fuse"] = fuse
    from itictl.config import data_dir as resolve_data_dir

    ds_art = ensure_dataset(store, resolve_data_dir(data_dir))  # bad data fails before the model's conversion
    model_art = ensure_model(store, model_spec, revision=revision, out=out)
    if limit is not None:
        from itictl.data import prompt_count, read_dataset

        if limit >= prompt_count(read_dataset(ds_art), fmt):
            params["limit"] = None  # --limit past the end is the full set: same key, no duplicate object
    return params, model_art, ds_art


def _run_extract_dp(store, dist, resolve, *, device: str, batch_tokens: int | None, out, fuse: str = "off"):
    """The data-parallel protocol (every rank runs it; phases are collective, see distributed.py):

    1. rank 0 resolves the key (creating the model/dataset objects once), then the other ranks
       resolve theirs; all must agree.
    2. distributed.produce: rank 0 holds the key lock and commits; if the artifact is cached every
       rank returns it.
    3. in extract_to_h5 every rank loads the model, plans all batches exactly like a single process,
       computes the batches assigned to it into tmp/KEY.work/rankR/, and rank 0 merges them into
       the one activations.h5 that produce then commits; the others then open the artifact."""
    from itictl.compute import distributed as D
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
               out=out if main else None, dist=dist, work=store.work_dir(key), fuse=fuse)

    return D.produce(store, dist, "activations", params, _parents(model_art, ds_art), build,
                     step_version=STEP_VERSION)


def _build(ctx, store, model_art, ds_art, params: dict[str, Any], *, device: str, batch_tokens: int | None, out,
           dist=None, work: Path | None = None, device_map: str | None = None, fuse: str = "off",
           keep: dict | None = None) -> None:
    """Load the model and run extract_to_h5. With world > 1 every rank calls this (rank 0 with
    the store's BuildContext, the others with ctx=None and the key's work dir); `device` is then
    the --device option, mapped to this rank's GPU here."""
    from itictl.compute import distributed as D
    from itictl.data import build_prompts, read_dataset
    from itictl.models import load_model, resolve_device

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
    from itictl.extract.resumable import extract_to_h5

    meta = extract_to_h5(
        lm.model, lm.tokenizer, got["prompts"], ctx.out / H5_NAME if ctx is not None else None,
        ctx.work if ctx is not None else work, fmt=fmt, model_key=model_art.key, dtype=params["dtype"],
        layer_wise=params["layer_wise"], store_dtype=params["store_dtype"],
        batch_tokens=batch_tokens, device=getattr(lm, "device", None) or dev, out=out,
        dist=dist, fuse=fuse, keep=keep)
    if ctx is not None:
        ctx.meta.update(meta)
        _record_arch(ctx, lm.model)


def _record_arch(ctx, model) -> None:
    """Which map located o_proj (table / discovered / arch-map, with the paths): in the manifest's
    meta and as the h5 attribute `arch` (JSON)."""
    import json

    import h5py

    from itictl.models.arch import arch_record

    rec = arch_record(model)
    ctx.meta["arch"] = rec
    with h5py.File(ctx.out / H5_NAME, "a") as f:
        f.attrs["arch"] = json.dumps(rec, sort_keys=True)


