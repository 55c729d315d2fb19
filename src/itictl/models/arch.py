"""Where a model's decoder layers and each layer's attention output projection live, and the head
layout (L, H, D): the map every step (extract, intervene, eval, bake, export) goes through.

The head-wise activation of ITI is the *input* of the attention output projection (o_proj / c_proj /
dense / out_proj), which always has H·D features — also under grouped-query attention, when head_dim
!= hidden / H (Qwen3, Gemma) and under multi-head latent attention (DeepSeek: H·v_head_dim).

A model's map (`ArchSpec`) comes from, in this order:
  1. an `--arch-map` given for the run (`use_arch_map`; arch_map.ArchMap), verified on the model;
  2. the explicit table (arch_table.ARCHS, one entry per Hugging Face `model_type`);
  3. discovery by structure (arch_discover.discover): the decoder layer list under the base model and,
     in each layer's attention module, the Linear/Conv1D whose input width is H·D — verified with one
     forward pass (the input really has H·D features and changing it changes the layer's output).
Discovered and mapped specs are cached on the model object; `arch_record(model)` says which map
was used (the activations artifact records it).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from itictl.errors import UnsupportedError


@dataclass(frozen=True)
class HeadLayout:
    n_layers: int
    n_heads: int
    head_dim: int

    @property
    def width(self) -> int:
        """H·D: the number of features of the o_proj input."""
        return self.n_heads * self.head_dim

    # short aliases used in HDF5 attributes and docs
    @property
    def L(self) -> int:
        return self.n_layers

    @property
    def H(self) -> int:
        return self.n_heads

    @property
    def D(self) -> int:
        return self.head_dim


@dataclass(frozen=True)
class ArchSpec:
    """Where things live, as attribute paths.

    base: attribute path of the *ForCausalLM model holding the decoder stack (no lm_head); "" when
      the model itself is the stack.
    layers: path from the base to the nn.ModuleList of decoder layers.
    o_proj: path from one decoder layer to its attention output projection.
    conv1d: the projection is a GPT-2 `Conv1D` (weight [in, out]) rather than nn.Linear ([out, in]).
    heads / layers_attr / hidden / head_dim: config attribute names (head_dim None = hidden // heads,
      used only for architectures whose attention is defined that way); read from `sub_config`
      (e.g. "text_config" of a multimodal wrapper) when set.
    source: "table", "discovered" or "arch-map"; layout / hidden_n: measured values that replace
      the config attributes (discovered and mapped specs).
    tree_masks: the architecture takes packed rows (a custom 4D mask and position ids) as given;
      False for ALiBi models, which derive positions from a 2D mask.
    fuse: `--fuse auto` compiles its decoder layers on a GPU (compute.fuse; set for the entries whose
      compiled layers tests/compute/test_fuse.py compares with the unfused ones).
    """

    model_type: str
    base: str
    layers: str
    o_proj: str
    conv1d: bool = False
    heads: str = "num_attention_heads"
    layers_attr: str = "num_hidden_layers"
    hidden: str = "hidden_size"
    head_dim: str | None = "head_dim"
    sub_config: str | None = None
    source: str = "table"
    layout: HeadLayout | None = None
    hidden_n: int | None = None
    tree_masks: bool = True
    fuse: bool = False

    @property
    def layers_path(self) -> str:
        """The layer list's path from the *ForCausalLM model, e.g. 'model.layers'."""
        return f"{self.base}.{self.layers}" if self.base else self.layers


_OVERRIDE: contextvars.ContextVar = contextvars.ContextVar("itictl_arch_map", default=None)
_CACHE_ATTR = "_itictl_arch_specs"


@contextlib.contextmanager
def use_arch_map(arch_map: Any) -> Iterator[None]:
    """Within the block every model's map is `arch_map` (an ArchMap, a JSON string, a dict or
    None = no override); each model is verified once against it."""
    from itictl.models.arch_map import parse_arch_map

    token = _OVERRIDE.set(parse_arch_map(arch_map) if arch_map is not None else None)
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


def current_arch_map() -> Any:
    """The ArchMap in effect (use_arch_map), or None."""
    return _OVERRIDE.get()


def _config(model_or_config: Any) -> Any:
    return getattr(model_or_config, "config", model_or_config)


def _is_model(obj: Any) -> bool:
    return hasattr(obj, "named_modules")


def _unsupported(model_type: str | None) -> UnsupportedError:
    return UnsupportedError(f"unsupported model architecture {model_type!r}",
                            f"supported model_type values: {', '.join(sorted(ARCHS))}; any other decoder-only"
                            " model needs its loaded weights to be mapped, or pass --arch-map JSON")


def _cached(model: Any, key: Any, make) -> ArchSpec:
    cache = model.__dict__.setdefault(_CACHE_ATTR, {})
    if key not in cache:
        cache[key] = make()
    return cache[key]


def spec_for(model_or_config: Any) -> ArchSpec:
    """The map in effect: --arch-map override > table > structural discovery (models only)."""
    from itictl.models import arch_discover as disc
    from itictl.models.arch_map import config_spec

    over = current_arch_map()
    cfg = _config(model_or_config)
    mt = getattr(cfg, "model_type", None)
    if mt in REFUSED:
        raise UnsupportedError(f"model architecture {mt!r} is not supported: {REFUSED[mt]}",
                               "see docs/architectures.md for the architectures itictl checks")
    if _is_model(model_or_config):
        if over is not None:
            return _cached(model_or_config, over, lambda: disc.resolve_map(model_or_config, over))
        if mt in ARCHS:
            return ARCHS[mt]
        return _cached(model_or_config, "discovered", lambda: disc.discover(model_or_config))
    if over is not None:
        return config_spec(cfg, over)
    if mt in ARCHS:
        return ARCHS[mt]
    raise _unsupported(mt)


def get_arch(model: Any) -> ArchSpec:
    """The ArchSpec for a model (or config); UnsupportedError says how to map an unknown one."""
    return spec_for(model)


def _get_path(obj: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def spec_config(cfg: Any, spec: ArchSpec) -> Any:
    """The (sub-)config the spec's attribute names refer to."""
    return getattr(cfg, spec.sub_config) if spec.sub_config else cfg


def _config_layout(cfg: Any, spec: ArchSpec) -> HeadLayout:
    c = spec_config(cfg, spec)
    n_layers = int(getattr(c, spec.layers_attr))
    n_heads = int(getattr(c, spec.heads))
    d = getattr(c, spec.head_dim, None) if spec.head_dim else None
    if d is None:
        hidden = int(getattr(c, spec.hidden))
        if hidden % n_heads:
            raise UnsupportedError(f"{spec.model_type}: hidden size {hidden} is not divisible by {n_heads} heads",
                                   "this config is not a standard one; check the model's config.json")
        d = hidden // n_heads
    return HeadLayout(n_layers, n_heads, int(d))


def head_layout(model_or_config: Any) -> HeadLayout:
    """HeadLayout(L, H, D); for a model, H·D is checked against o_proj's input width.

    A config of a model_type outside the table (no override) gets the layout its generic
    attributes give (num_hidden_layers, num_attention_heads, v_head_dim / head_dim / hidden÷H)."""
    cfg = _config(model_or_config)
    if not _is_model(model_or_config) and current_arch_map() is None and getattr(cfg, "model_type", None) not in ARCHS:
        from itictl.models.arch_map import generic_layout

        return generic_layout(cfg)
    spec = spec_for(model_or_config)
    layout = spec.layout or _config_layout(cfg, spec)
    if _is_model(model_or_config):  # cross-check with the real projection
        in_features = _in_features(o_proj_modules(model_or_config)[0])
        if in_features != layout.width:
            raise UnsupportedError(
                f"{spec.model_type}: o_proj takes {in_features} features but the config says "
                f"{layout.n_heads} heads x {layout.head_dim} = {layout.width}",
                "the model's config does not match its weights; pass --arch-map with \"heads\" and \"head_dim\"")
    return layout


def hidden_size(model_or_config: Any) -> int:
    """The residual stream's width (the config attribute the architecture's map names)."""
    cfg = _config(model_or_config)
    if not _is_model(model_or_config) and current_arch_map() is None and getattr(cfg, "model_type", None) not in ARCHS:
        from itictl.models.arch_map import generic_hidden

        return generic_hidden(cfg)
    spec = spec_for(model_or_config)
    if spec.hidden_n is not None:
        return spec.hidden_n
    return int(getattr(spec_config(cfg, spec), spec.hidden))


def decoder_stack(model: Any) -> Any:
    """The base model (embeddings + layers + final norm) without the lm_head."""
    spec = spec_for(model)
    try:
        return _get_path(model, spec.base)
    except (AttributeError, IndexError):
        pass
    try:  # already a base model (e.g. LlamaModel): it has the layer list itself
        _get_path(model, spec.layers)
    except (AttributeError, IndexError):
        raise _unsupported(spec.model_type) from None
    return model


def decoder_layers(model: Any) -> list[Any]:
    spec = spec_for(model)
    return list(_get_path(decoder_stack(model), spec.layers))


def o_proj_modules(model: Any) -> list[Any]:
    """Each layer's attention output projection; its input is the head-wise activation [.., H·D]."""
    spec = spec_for(model)
    return [_get_path(layer, spec.o_proj) for layer in decoder_layers(model)]


def is_conv1d(module: Any) -> bool:
    return type(module).__name__ == "Conv1D"


def _in_features(module: Any) -> int:
    w = module.weight
    return int(w.shape[0] if is_conv1d(module) else w.shape[1])


def out_proj_matrix(module: Any):
    """W_o as a [hidden, H·D] tensor such that module(x) = W_o @ x (+ bias), for Linear and Conv1D."""
    w = module.weight
    if is_conv1d(module):  # GPT-2: weight is [in, out], forward is x @ W + b
        return w.t()
    return w


def tree_masks_ok(model: Any) -> bool:
    """True when packed extraction/scoring is exact for this model's architecture: a table entry
    with tree_masks (the architecture matrix checks each), and no --arch-map in effect. Discovered
    and mapped models run plain padded batches. Never raises (judge models use it too)."""
    spec = ARCHS.get(getattr(_config(model), "model_type", None))
    return spec is not None and spec.tree_masks and current_arch_map() is None


def fuse_ok(model: Any) -> bool:
    """True when `--fuse auto` may compile this model's decoder layers: a table entry with fuse and
    no --arch-map in effect. Never raises."""
    spec = ARCHS.get(getattr(_config(model), "model_type", None))
    return spec is not None and spec.fuse and current_arch_map() is None


def arch_record(model: Any) -> dict[str, Any]:
    """Which map a model ran with, for artifact metadata: source (table / discovered / arch-map),
    model_type, the layer list and o_proj paths, L, H, D."""
    spec = spec_for(model)
    lay = head_layout(model)
    return {"source": spec.source, "model_type": spec.model_type, "layers": spec.layers_path, "o_proj": spec.o_proj,
            "n_layers": lay.n_layers, "heads": lay.n_heads, "head_dim": lay.head_dim}


from itictl.models.arch_table import ARCHS, REFUSED  # noqa: E402 (the table is built from ArchSpec)

SUPPORTED = tuple(sorted(ARCHS))
