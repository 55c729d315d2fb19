"""`model` artifacts and loading: ensure_model (spec -> Artifact) and load_model (Artifact -> model).

A `model` artifact's params are the model identity (see identity.py); its payload is `model.json`
(identity, where to load from, architecture, L/H/D, dtype) and, for GGUF sources (the embedded
default included), `hf/`: the dequantised weights as a plain Hugging Face folder (safetensors,
config, tokenizer, generation config), so later loads skip the ~25 s GGUF conversion.

load_model memoises per process on (key, dtype, device, device map, trust_remote_code); the model
is in eval mode with gradients off.

Model parallel (`device_map`): 'auto' | 'balanced' | 'sequential' (accelerate infers the placement
from free memory; on a CPU-only machine everything lands on the CPU) or an explicit
{module name: device} dict ('cpu', 'cuda:N' or a GPU index; it must cover every parameter). The
model is loaded with from_pretrained(device_map=…) for every source (the embedded model's cached
hf/ folder included), so each weight goes straight to its device and accelerate's hooks move
activations between layers. LoadedModel.device is then the input device (the embeddings').
Transformers' progress bars and warnings are silenced while loading when quiet (set_load_quiet).
The tokenizer always has a pad token (eos when the model has none); its
padding side is left as the model ships it — callers set it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itictl import hooks
from itictl.errors import BadInputError, NotFoundError, RemoteError, StoreError, UnsupportedError
from itictl.models.devices import (  # noqa: F401
    DEVICE_MAPS,
    DTYPES,
    check_map_covers,
    compute_device,
    device_kind,
    input_device,
    map_memo_key,
    parse_device_map,
    resolve_device,
    resolve_dtype,
    torch_dtype,
)
from itictl.models.identity import ModelRef, folder_identity, hub_cache_dir, hub_endpoint, hub_offline, resolve_model
from itictl.models.quiet import hf_quiet, load_quiet, set_load_quiet  # noqa: F401 (re-exported)

MODEL_KIND = "model"
MODEL_SCHEMA = 1
MODEL_STEP_VERSION = 1


@dataclass
class LoadedModel:
    model: Any  # transformers PreTrainedModel, eval mode
    tokenizer: Any
    art: Any  # the `model` Artifact
    device: str  # where inputs go ('cpu', 'cuda:0', …)
    dtype: str  # 'float32' | 'bfloat16' | 'float16'
    layout: Any  # HeadLayout(L, H, D)
    device_map: dict[str, str] | None = None  # {module: device} when accelerate dispatched the model


# ---- ensure -----------------------------------------------------------------------------------

def ensure_model(store, spec: str | None, revision: str | None = None, out=None,
                 trust_remote_code: bool = False):
    """The `model` artifact for a spec (None = the embedded default); built at most once."""
    ref = resolve_model(spec, store, revision)
    params = {"identity": ref.identity}
    key = store.key_for(MODEL_KIND, params, {}, schema_version=MODEL_SCHEMA, step_version=MODEL_STEP_VERSION)
    if store.has(key):
        return store.get(key)

    def build(ctx) -> None:
        if ref.source in ("gguf", "embedded"):
            msg = f"converting {Path(ref.location).name} to a cached Hugging Face folder (once, ~25 s)"
            with out.status(msg) if out is not None else contextlib.nullcontext():  # the one progress line
                doc = _build_from_gguf(ref, ctx.out / "hf", quiet=(out.quiet or out.json_mode) if out else None)
        else:
            doc = _describe_remote(ref, trust_remote_code)
        ctx.meta.update({"name": ref.name, "source": ref.source})
        (ctx.out / "model.json").write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")

    art, _cached = store.produce(MODEL_KIND, params, {}, build, schema_version=MODEL_SCHEMA,
                                 step_version=MODEL_STEP_VERSION)
    return art


def _config_doc(ref: ModelRef, config: Any) -> dict[str, Any]:
    from itictl.models.arch import head_layout

    layout = head_layout(config)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    return {
        "name": ref.name,
        "source": ref.source,
        "location": ref.location,
        "revision": ref.revision,
        "identity": ref.identity,
        "model_type": config.model_type,
        "architecture": (getattr(config, "architectures", None) or [None])[0],
        "n_layers": layout.n_layers,
        "n_heads": layout.n_heads,
        "head_dim": layout.head_dim,
        "n_kv_heads": getattr(config, "num_key_value_heads", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "vocab_size": getattr(config, "vocab_size", None),
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else None,
    }


def _build_from_gguf(ref: ModelRef, hf_dir: Path, quiet: bool | None = None) -> dict[str, Any]:
    """Dequantise a GGUF with transformers and save it as a plain HF folder (fp32 safetensors).

    Progress is the caller's (ensure_model shows one status line through `out`): transformers' own
    bars never show. Its GGUF reader uses a bare tqdm ("Converting and de-quantizing GGUF tensors")
    that its progress-bar switch does not reach, so sys.stderr is muted for the conversion; its
    warnings (logging, which keeps its own stream) follow `quiet` (None: set_load_quiet)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(ref.location)
    q = load_quiet() if quiet is None else bool(quiet)
    with hf_quiet(q), open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        try:
            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        except (ValueError, KeyError, RuntimeError) as e:
            raise UnsupportedError(f"transformers cannot load {path.name}: {str(e).splitlines()[0][:160]}",
                                   "pass a Hugging Face model folder or a Hub id instead") from None
        # The folder is a plain fp32 model: no trace of the GGUF quantisation left in its config.
        for cfg in (model.config,):
            if hasattr(cfg, "quantization_config"):
                delattr(cfg, "quantization_config")
        model.hf_quantizer = None
        hf_dir.mkdir(parents=True)
        model.save_pretrained(hf_dir, safe_serialization=True)
        tok.save_pretrained(hf_dir)
    doc = _config_doc(ref, model.config)
    doc.update({"weights": "hf", "dtype": "float32", "gguf_file": path.name})
    return doc


def _describe_remote(ref: ModelRef, trust_remote_code: bool) -> dict[str, Any]:
    """model.json for Hub and folder sources: only the config is read (no weights). Under the
    transformers import lock (models/tf_imports.py): a preload thread may be importing it."""
    from itictl.models.tf_imports import LOCK

    with LOCK:
        return _describe_remote_locked(ref, trust_remote_code)


def _describe_remote_locked(ref: ModelRef, trust_remote_code: bool) -> dict[str, Any]:
    from transformers import AutoConfig

    if ref.source == "folder":
        cfg_src, kwargs = ref.location, {}
    else:
        cfg_src = _hub_config_file(ref).parent
        kwargs = {}
    try:
        config = AutoConfig.from_pretrained(cfg_src, trust_remote_code=trust_remote_code, **kwargs)
    except ValueError as e:
        raise UnsupportedError(f"cannot read the config of {ref.name}: {str(e).splitlines()[0][:160]}",
                               "pass --trust-remote-code only for repos you trust, or use a supported model") from None
    doc = _config_doc(ref, config)
    doc["weights"] = ref.source
    return doc


def _hub_config_file(ref: ModelRef) -> Path:
    """config.json of repo@commit: from the HF cache, else downloaded (short timeout)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    repo, commit = ref.identity["repo"], ref.identity["commit"]
    cached = try_to_load_from_cache(repo, "config.json", cache_dir=hub_cache_dir(), revision=commit)
    if isinstance(cached, str):
        return Path(cached)
    if hub_offline():
        raise RemoteError(f"HF_HUB_OFFLINE is set and {repo}'s config is not in the local cache",
                          "pass a local model folder, or go online once to cache it")
    try:
        return Path(hf_hub_download(repo, "config.json", revision=commit, cache_dir=hub_cache_dir(),
                                    endpoint=hub_endpoint(), etag_timeout=8))
    except Exception as e:  # network or HTTP errors: one line
        raise RemoteError(f"cannot download {repo}'s config.json ({type(e).__name__})",
                          "check the network, or pass a local model folder") from None


# ---- loading ----------------------------------------------------------------------------------

_MEMO: dict[tuple, LoadedModel] = {}
_MEMO_LOCK = threading.Lock()


def clear_memo() -> None:
    """Forget every loaded model (tests; freeing memory between large models)."""
    with _MEMO_LOCK:
        _MEMO.clear()


def model_info(model_art) -> dict[str, Any]:
    if model_art.kind != MODEL_KIND:
        raise BadInputError(f"{model_art.key[:12]} is a {model_art.kind} object, not a model",
                            "pass a model ref (see `itictl store ls --kind model`)")
    return model_art.read_json("model.json")


def model_spec_of(model_art) -> str | None:
    """A --model spec that resolves back to this `model` artifact (None = the embedded default)."""
    info = model_info(model_art)
    if info.get("source") == "embedded":
        return None
    if info.get("source") == "hub":
        return info.get("identity", {}).get("repo") or info.get("name")
    return info.get("location") or info.get("name")


def revision_of(model_art) -> str | None:
    """The resolved commit of a Hub model artifact (so later steps use exactly that snapshot)."""
    info = model_info(model_art)
    return info.get("identity", {}).get("commit") if info.get("source") == "hub" else None


def load_model(store, model_art, dtype: str = "auto", device: str = "auto", *,
               device_map: str | dict | None = None, trust_remote_code: bool = False, fresh: bool = False,
               quiet: bool | None = None) -> LoadedModel:
    """Load a `model` artifact. Memoised per process on (key, dtype, device, device map,
    trust_remote_code); fresh=True bypasses the memo (a private copy that the caller may modify,
    e.g. to bake). device_map (see parse_device_map) takes precedence over device; quiet=None
    follows set_load_quiet."""
    info = model_info(model_art)
    dmap = parse_device_map(device_map)
    dev = compute_device(None, dmap) if dmap is not None else resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    memo_key = (str(Path(store.root).resolve()), model_art.key, dt, dev if dmap is None else None,
                map_memo_key(dmap), bool(trust_remote_code))
    if not fresh:
        with _MEMO_LOCK:
            hit = _MEMO.get(memo_key)
        if hit is not None:
            return hit
    with hf_quiet(quiet), hooks.timed("model_load"):
        lm = _load(store, model_art, info, dt, dev, trust_remote_code, dmap)
    if not fresh:
        with _MEMO_LOCK:
            _MEMO[memo_key] = lm
    return lm


def _source_args(store, model_art, info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(pretrained path or repo id, extra from_pretrained kwargs) for an artifact."""
    src = info.get("weights") or info.get("source")
    if src == "hf":
        hf = model_art.path / "hf"
        if not (hf / "config.json").is_file():
            raise StoreError(f"model {model_art.key[:12]} is missing its hf/ folder",
                             f"run `itictl store rm {model_art.key[:12]}` and rerun")
        return str(hf), {}
    if src == "folder":
        folder = Path(info["location"])
        if not folder.is_dir():
            raise NotFoundError(f"model folder {folder} (of model {model_art.key[:12]}) no longer exists",
                                "restore the folder or pass its new location with --model")
        now = folder_identity(store, folder)
        if now != model_art.params.get("identity"):
            raise BadInputError(f"model folder {folder} changed since model {model_art.key[:12]} was recorded",
                                "pass the folder with --model again to record the new version")
        return str(folder), {}
    if src == "hub":
        ident = info["identity"]
        kwargs: dict[str, Any] = {"revision": ident["commit"], "cache_dir": str(hub_cache_dir())}
        if hub_offline():
            kwargs["local_files_only"] = True
        return ident["repo"], kwargs
    raise StoreError(f"model {model_art.key[:12]} has an unknown source {src!r}", "rerun with --model")



def remember(store, model_art, lm: LoadedModel, dev: str) -> None:
    """Put a model loaded without its artifact (models/preload.py: a folder loaded while its identity
    was hashed) in the memo, under the key load_model(store, model_art, lm.dtype, dev) looks up."""
    lm.art = model_art
    with _MEMO_LOCK:
        _MEMO.setdefault((str(Path(store.root).resolve()), model_art.key, lm.dtype, dev, map_memo_key(None), False), lm)


def _load(store, model_art, info: dict[str, Any], dt: str, dev: str, trust_remote_code: bool,
          dmap: str | dict[str, str] | None = None) -> LoadedModel:
    where, kwargs = _source_args(store, model_art, info)
    return from_pretrained(where, kwargs, info, dt, dev, trust_remote_code, dmap, art=model_art)


def from_pretrained(where: str, kwargs: dict[str, Any], info: dict[str, Any], dt: str, dev: str,
                    trust_remote_code: bool = False, dmap: str | dict[str, str] | None = None,
                    art: Any = None, fast: Any = None) -> LoadedModel:
    """Tokenizer and model from a folder or repo (`where`) in eval mode on `dev` (or `dmap`). A local
    safetensors folder on one device has its weights moved by models/fast_load.py (the reads start
    first and overlap transformers' import and the tokenizer's load); `fast`: a fast_load.Loading of
    `where` already started by the caller."""
    from itictl.models import fast_load

    if fast is None and fast_load.eligible(where, kwargs, dev, dmap, trust_remote_code, dt):
        fast = fast_load.Loading(where, dev)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    load_kwargs: dict[str, Any] = {"dtype": torch_dtype(dt), "trust_remote_code": trust_remote_code, **kwargs}
    if dmap is not None:
        load_kwargs["device_map"] = dmap
    elif dev == "cuda":  # only 'auto' with several GPUs resolves to plain 'cuda'
        load_kwargs["device_map"] = "auto"
    elif dev != "cpu":
        load_kwargs["device_map"] = {"": dev}
    try:
        if isinstance(dmap, dict):
            check_map_covers(where, kwargs, dmap, trust_remote_code)
        tok = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code, **kwargs)
        model = fast.model(dt) if fast is not None else AutoModelForCausalLM.from_pretrained(where, **load_kwargs)
    except OSError as e:
        if info.get("weights") == "hub":
            raise RemoteError(f"cannot fetch {where} ({str(e).splitlines()[0][:120]})",
                              "check the network and HF_TOKEN, or pass a local model folder") from None
        raise BadInputError(f"cannot load the model from {where}: {str(e).splitlines()[0][:160]}",
                            "check that the folder is a complete Hugging Face model") from None
    except ValueError as e:
        raise UnsupportedError(f"cannot load {info.get('name')}: {str(e).splitlines()[0][:160]}",
                               "use a causal language model supported by transformers") from None
    model.eval()
    model.requires_grad_(False)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    from itictl.models.arch import head_layout

    layout = head_layout(model)
    placed = getattr(model, "hf_device_map", None)
    in_dev = input_device(model) if "device_map" in load_kwargs else dev
    return LoadedModel(model=model, tokenizer=tok, art=art, device=in_dev, dtype=dt, layout=layout,
                       device_map={k: str(v) if not isinstance(v, int) else f"cuda:{v}" for k, v in placed.items()}
                       if placed else None)


def hf_folder(model_art) -> Path | None:
    """The artifact's own HF folder (GGUF sources), else None."""
    p = model_art.path / "hf"
    return p if p.is_dir() else None


__all__ = ["LoadedModel", "ensure_model", "load_model", "resolve_device", "resolve_dtype", "clear_memo",
           "model_info", "model_spec_of", "revision_of", "hf_folder", "parse_device_map", "input_device", "set_load_quiet",
           "hf_quiet", "MODEL_KIND", "DTYPES",
           "DEVICE_MAPS"]
