"""Devices and dtypes: --device / --dtype / --device-map resolution (torch-free where a key needs
it), the input device of a (possibly model-parallel) model, and a module's execution device."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from itictl.errors import BadInputError

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICE_MAPS = ("auto", "balanced", "sequential")


# ---- devices and dtypes -----------------------------------------------------------------------

def resolve_device(device: str | None) -> str:
    """'auto' -> 'cuda' (sharded with device_map="auto") when several GPUs are visible, 'cuda:0'
    with one, else 'cpu'. 'cuda' -> 'cuda:0'. Validates cuda:N."""
    import torch

    device = (device or "auto").strip().lower()
    if device == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        return "cuda" if torch.cuda.device_count() > 1 else "cuda:0"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise BadInputError(f"--device {device}: CUDA is not available here", "use --device cpu or auto")
        if device == "cuda":
            return "cuda:0"
        if ":" in device:
            idx = device.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise BadInputError(f"--device {device}: no such GPU ({torch.cuda.device_count()} visible)",
                                    "use cuda:0 … cuda:N-1, or auto")
        return device
    raise BadInputError(f"unknown device {device!r}", "use auto, cpu, cuda or cuda:N")


def device_kind(device: str | None, *, cuda_build: bool | None = None, gpu_nodes: Sequence[str] | None = None,
                environ: Mapping[str, str] | None = None) -> str:
    """'cpu' or 'cuda' for a --device value, without importing torch (1-2 s), so that
    keys (which hold the dtype the device implies) are cheap and a cached step returns fast.
    'auto' is guessed from the installed torch (a CUDA build), CUDA_VISIBLE_DEVICES (empty or -1:
    CPU) and an NVIDIA device node (/dev/nvidiaN); the real resolution (resolve_device) happens
    when a model is loaded. The three machine facts default to torch_cuda_build(),
    nvidia_device_nodes() and os.environ; passing them describes another machine."""
    device = (device or "auto").strip().lower()
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        return "cuda"
    if device != "auto":
        raise BadInputError(f"unknown device {device!r}", "use auto, cpu, cuda or cuda:N")
    visible = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES")
    if cuda_build is None:
        cuda_build = torch_cuda_build()
    if not cuda_build or (visible is not None and visible.strip() in ("", "-1")):
        return "cpu"  # a CPU build of torch, or GPUs hidden
    return "cuda" if (nvidia_device_nodes() if gpu_nodes is None else gpu_nodes) else "cpu"


def torch_cuda_build() -> bool:
    """Whether the installed torch is a CUDA build (read from torch/version.py, no import)."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text()
    except OSError:
        return False
    return re.search(r"^cuda\s*(?::\s*[^=]+)?=\s*['\"]([^'\"]+)['\"]", text, re.M) is not None


def nvidia_device_nodes(dev: Path | str = "/dev") -> list[str]:
    """nvidiaN device nodes in `dev` (a container given one GPU may only have /dev/nvidia3)."""
    import re

    return sorted(p.name for p in Path(dev).glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name))


def resolve_dtype(dtype: str | None, device: str) -> str:
    """The one dtype policy of every step: 'auto' -> float32 on CPU, float16 on an accelerator
    (as the reference runs Llama). Needs no torch import, so keys can be computed cheaply."""
    dtype = (dtype or "auto").strip().lower()
    if dtype not in DTYPES:
        raise BadInputError(f"unknown dtype {dtype!r}", f"use one of {', '.join(DTYPES)}")
    if dtype != "auto":
        return dtype
    return "float32" if device == "cpu" else "float16"


# ---- device maps (model parallel) ------------------------------------------------------------

def parse_device_map(value: str | dict | None) -> str | dict[str, str] | None:
    """Validate a device map: None/'' -> None; 'auto' | 'balanced' | 'sequential'; a dict (or a JSON
    object string, as the CLI passes it) {module name: 'cpu' | 'cuda' | 'cuda:N' | N} -> a dict with
    canonical device strings. Whether a dict covers the model is checked at load time."""
    if value is None:
        return None
    if isinstance(value, str):
        v = value.strip()
        if not v:
            return None
        if v.lower() in DEVICE_MAPS:
            return v.lower()
        if not v.startswith("{"):
            raise BadInputError(f"unknown device map {value!r}",
                                f"use {', '.join(DEVICE_MAPS)} or a JSON object {{\"module\": \"cuda:N\"}}")
        try:
            value = json.loads(v)
        except json.JSONDecodeError as e:
            raise BadInputError(f"device map is not valid JSON ({e.msg} at char {e.pos})",
                                'write it like {"model.layers.0": "cuda:0", "lm_head": 1}') from None
    if not isinstance(value, dict) or not value:
        raise BadInputError("a device map must be a non-empty {module: device} object",
                            f"use {', '.join(DEVICE_MAPS)} or a JSON object")
    out: dict[str, str] = {}
    for mod, dev in value.items():
        if not isinstance(mod, str):
            raise BadInputError(f"device map key {mod!r} is not a module name", 'use names like "model.layers.0"')
        out[mod] = _map_device(mod, dev)
    return out


def _map_device(mod: str, dev: Any) -> str:
    import torch

    if isinstance(dev, bool) or not isinstance(dev, (int, str)):
        raise BadInputError(f"device map: {mod!r} -> {dev!r} is not a device", "use 'cpu', 'cuda:N' or a GPU index N")
    if isinstance(dev, int) or (isinstance(dev, str) and dev.strip().isdigit()):
        dev = f"cuda:{int(dev)}"
    dev = dev.strip().lower()
    if dev == "cpu":
        return dev
    if dev == "disk":
        raise BadInputError(f"device map puts {mod!r} on disk; disk offload is not supported",
                            "put every module on a GPU or the CPU")
    if dev == "cuda":
        dev = "cuda:0"
    idx = dev.split(":", 1)[1] if dev.startswith("cuda:") else None
    if idx is None or not idx.isdigit():
        raise BadInputError(f"device map: {mod!r} -> {dev!r} is not a device", "use 'cpu', 'cuda:N' or a GPU index N")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(idx) >= n:
        raise BadInputError(f"device map puts {mod!r} on {dev}, but {n} GPU(s) are visible",
                            "use cuda:0 … cuda:N-1 or cpu" if n else "use cpu, or run on a machine with GPUs")
    return dev


def map_memo_key(device_map: str | dict[str, str] | None) -> str | None:
    if isinstance(device_map, dict):
        return json.dumps(device_map, sort_keys=True)
    return device_map


def compute_device(device: str | None, device_map: str | dict[str, str] | None = None) -> str:
    """'cpu' or 'cuda' as the dtype policy sees a --device / --device-map pair, torch-free: a map
    counts as 'cpu' only when nothing goes to a GPU ('auto'-style maps follow device_kind('auto'));
    without a map, device_kind(device)."""
    if isinstance(device_map, dict):
        return "cpu" if set(map(str, device_map.values())) == {"cpu"} else "cuda"
    if device_map:
        return device_kind("auto")
    return device_kind(device)


def check_map_covers(where: str, kwargs: dict[str, Any], device_map: dict[str, str], trust_remote_code: bool) -> None:
    """An explicit map must name existing modules and cover every parameter and persistent buffer: checked on an empty
    (meta-device) copy of the architecture, so the error is one line before any weight is read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_kwargs = {k: v for k, v in kwargs.items() if k in ("revision", "cache_dir", "local_files_only")}
    config = AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code, **cfg_kwargs)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    modules = {n for n, _ in skeleton.named_modules()}
    unknown = sorted(m for m in device_map if m and m not in modules)
    if unknown:
        raise BadInputError(f"device map names {len(unknown)} module(s) the model does not have: {', '.join(unknown[:3])}",
                            "use names from model.named_modules(), e.g. model.layers.0, model.embed_tokens, lm_head")

    def covered(name: str) -> bool:
        return "" in device_map or any(name == m or name.startswith(m + ".") for m in device_map)

    # what from_pretrained places: parameters and persistent buffers (non-persistent ones such as
    # rotary inv_freq are rebuilt by transformers wherever their module lands)
    persistent = set(skeleton.state_dict())
    tensors = [n for n, _ in skeleton.named_parameters()] + [n for n, _ in skeleton.named_buffers() if n in persistent]
    missing = [n for n in tensors if not covered(n)]
    if missing:
        raise BadInputError(f"device map gives no device for {len(missing)} tensor(s), e.g. {missing[0]}",
                            "add their module (or a parent) to the map, or use --device-map auto")


def input_device(model) -> str:
    """Where a model's inputs go: the device of its input embeddings (model-parallel aware)."""
    emb = model.get_input_embeddings()
    dev, _ = module_device(emb)
    return str(dev if dev is not None else emb.weight.device)



def module_device(mod) -> tuple["torch.device | None", "torch.dtype | None"]:  # noqa: F821
    """(device, dtype) a module computes on: accelerate's execution device when a hook manages it
    (weights may be offloaded to 'meta'), else its weight's; (None, None) when unknown."""
    import torch
    from torch import Tensor

    w = getattr(mod, "weight", None)
    dtype = w.dtype if isinstance(w, Tensor) else None
    hook = getattr(mod, "_hf_hook", None)
    dev = getattr(hook, "execution_device", None)
    if dev is not None:
        return (torch.device(f"cuda:{dev}") if isinstance(dev, int) else torch.device(dev)), dtype
    if isinstance(w, Tensor) and w.device.type != "meta":
        return w.device, dtype
    return None, dtype


def torch_dtype(name: str):
    """A resolved dtype name (float32, float16, bfloat16) as a torch dtype."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]

