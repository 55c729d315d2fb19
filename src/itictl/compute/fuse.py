"""Fused elementwise work for forwards of fixed shapes: torch.compile of the decoder layers.

Owns: the `--fuse` modes (auto | off | compile | max-autotune), resolving `auto` for a model and
device, and `Fuser`, which runs forwards with every decoder layer's own `forward` compiled by
TorchInductor (the model's modules unchanged: RMSNorm, RoPE, SiLU·up, casts and residual adds become
a few generated kernels; matmuls stay cuBLAS calls, attention the same SDPA kernel) and falls back
to the unfused layers, once and for good, when compiling or running a compiled forward raises.

Shapes are static (dynamic=False): the extraction engine pads packed rows to one length, so a plan
has a handful of forward shapes (tqa_mc2 at 8,192-token forwards: 3), each compiled once, during
the warm-up. All layers share the compiled code (same code objects, parameters are graph inputs).
A forward pre-hook inside a compiled layer (the engine's capture at o_proj's input) must be wrapped
with `eager_hook`: it then runs eagerly and splits the layer into two graphs around o_proj (norm +
q/k/v + RoPE + attention | residual + norm + MLP + residual), which keeps the captured value exact.

Numbers: inductor keeps fused intermediates in float32 where eager rounds each op to the model's
dtype, so fp16/bf16 results differ from the unfused ones by a few ulps (fp32 on a CPU: ~1e-5).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from itictl.errors import BadInputError

FUSE_MODES = ("auto", "off", "compile", "max-autotune")
_TORCH_MODE = {"compile": None, "max-autotune": "max-autotune-no-cudagraphs"}
# (layer class, mode) -> the compiled forward every layer of that class runs (kept for the process:
# later runs and other models of the class trace no known shape again)
COMPILED: dict[tuple[type, str], Callable] = {}
RECOMPILE_LIMIT = 64  # per code object: shapes x call sites (the layer and attention wrappers share code)


def check_fuse(mode: str | None) -> str:
    """The mode, lower-cased; BadInputError for anything else (checked before any model load)."""
    m = (mode or "auto").strip().lower()
    if m not in FUSE_MODES:
        raise BadInputError(f"unknown --fuse mode {mode!r}", f"use one of {', '.join(FUSE_MODES)}")
    return m


def inductor_available(device: str) -> bool:
    """TorchInductor can generate kernels here: Triton for CUDA (a C compiler on a CPU is not checked)."""
    if str(device).startswith("cuda"):
        import importlib.util

        return importlib.util.find_spec("triton") is not None
    return True


def resolve_fuse(mode: str | None, model: Any, device: Any) -> str:
    """'off' or a compile mode. auto: compile on CUDA for an architecture whose table entry says the
    compiled layers were checked (models.arch.fuse_ok), packed rows (sdpa/eager attention), one
    device (no --device-map), Triton present;
    off on a CPU (compiling costs more than it saves there) and everywhere else. An explicit mode is
    honoured on any model and device (a failure falls back, see Fuser)."""
    m = check_fuse(mode)
    if m != "auto":
        return m
    from itictl.compute.packing import supports_tree_masks
    from itictl.models.arch import fuse_ok

    dev = str(device)
    split = len(set(map(str, (getattr(model, "hf_device_map", None) or {}).values()))) > 1
    fixed = supports_tree_masks(model)  # packed rows: few shapes (plain batches: one per length)
    if dev.startswith("cuda") and not split and fixed and fuse_ok(model) and inductor_available(dev):
        return "compile"
    return "off"


def eager_hook(fn: Callable) -> Callable:
    """A module hook that compiled code calls eagerly (a graph break), so that its side effects see
    the real tensors of the layer that runs, whichever layer's compiled code is reused."""
    import torch

    return torch.compiler.disable(fn)


class Fuser:
    """Runs forwards with compiled decoder layers (`with fuser: fuser.run(forward)`).

    `mode`: a resolved mode ('off' makes this a no-op). `warn`: called once with a message when
    the compiled path fails and the run falls back to the unfused layers (warnings.warn if None).
    `fallback` then holds the error; `used` says whether compiled layers ran at all."""

    def __init__(self, model: Any, mode: str, warn: Callable[[str], None] | None = None):
        self.model, self.mode, self.warn = model, check_fuse(mode), warn
        if self.mode == "auto":
            raise ValueError("resolve 'auto' first (resolve_fuse)")
        self.fallback: str | None = None
        self.used = False
        self._installed: list[tuple[Any, Any]] = []
        self._limits: dict[str, Any] = {}

    @property
    def active(self) -> bool:
        return self.mode != "off" and self.fallback is None

    def __enter__(self) -> "Fuser":
        if self.active:
            try:
                self._install()
            except Exception as e:  # e.g. torch without a working inductor
                self._fall_back(e)
        return self

    def __exit__(self, *exc) -> None:
        self._uninstall()

    def run(self, forward: Callable[[], Any]) -> Any:
        """forward() with the compiled layers; on any error there, the unfused layers for good and
        forward() again (an error of the model itself then repeats and propagates)."""
        if not self.active:
            return forward()
        try:
            res = forward()
            self.used = True
            return res
        except Exception as e:
            self._fall_back(e)
        return forward()

    def _fall_back(self, e: BaseException) -> None:
        first = (str(e).strip().splitlines() or [""])[0][:300]
        self.fallback = f"{type(e).__name__}: {first}"
        self._uninstall()
        msg = f"--fuse {self.mode} failed, running the unfused model ({self.fallback})"
        (self.warn or (lambda m: warnings.warn(m, RuntimeWarning, stacklevel=3)))(msg)

    def _install(self) -> None:
        import torch
        import torch._dynamo

        from itictl.models.arch import decoder_layers

        cfg = torch._dynamo.config
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(cfg, name) and getattr(cfg, name) < RECOMPILE_LIMIT:
                self._limits[name] = getattr(cfg, name)
                setattr(cfg, name, RECOMPILE_LIMIT)
        for layer in decoder_layers(self.model):
            fwd = _compiled_forward(layer, self.mode)
            self._installed.append((layer, layer.__dict__.get("forward")))
            layer.forward = fwd

    def _uninstall(self) -> None:
        import torch
        import torch._dynamo

        for layer, prev in reversed(self._installed):
            if prev is None:
                layer.__dict__.pop("forward", None)
            else:
                layer.forward = prev
        self._installed.clear()
        for name, v in self._limits.items():
            setattr(torch._dynamo.config, name, v)
        self._limits.clear()


def _compiled_forward(layer: Any, mode: str) -> Callable:
    """The layer's forward compiled: the class's forward (one compiled function for all layers of
    the class, bound to this one), or an instance forward (e.g. accelerate's hooks) compiled as is."""
    import types

    import torch

    own = layer.__dict__.get("forward")
    if own is not None:
        return torch.compile(own, dynamic=False, mode=_TORCH_MODE[mode])
    key = (type(layer), mode)
    if key not in COMPILED:
        COMPILED[key] = torch.compile(type(layer).forward, dynamic=False, mode=_TORCH_MODE[mode])
    return types.MethodType(COMPILED[key], layer)
