"""Per-architecture maps: where the decoder layers and each layer's attention output projection
live, and the head layout (L, H, D).

One small declarative `ArchSpec` per Hugging Face `model_type`. The head-wise activation of ITI is
the *input* of the attention output projection (o_proj / c_proj / dense / out_proj), which always has
H·D features — also under grouped-query attention and when head_dim != hidden / H (Qwen3, Gemma).
Nothing here assumes 32 heads or hidden == H·D: head_dim comes from the config when it has one and
is checked against the projection's input width.
"""

from __future__ import annotations

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
    def L(self) -> int:  # noqa: N802
        return self.n_layers

    @property
    def H(self) -> int:  # noqa: N802
        return self.n_heads

    @property
    def D(self) -> int:  # noqa: N802
        return self.head_dim


@dataclass(frozen=True)
class ArchSpec:
    """Where things live, as attribute paths.

    base: attribute of the *ForCausalLM model holding the decoder stack (no lm_head).
    layers: path from the base to the nn.ModuleList of decoder layers.
    o_proj: path from one decoder layer to its attention output projection.
    conv1d: the projection is a GPT-2 `Conv1D` (weight [in, out]) rather than nn.Linear ([out, in]).
    heads / layers_attr / hidden / head_dim: config attribute names (head_dim None = hidden // heads,
    used only for architectures whose attention is defined that way).
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


_LLAMA_LIKE = dict(base="model", layers="layers", o_proj="self_attn.o_proj")

ARCHS: dict[str, ArchSpec] = {
    "llama": ArchSpec("llama", **_LLAMA_LIKE),
    "mistral": ArchSpec("mistral", **_LLAMA_LIKE),
    "qwen2": ArchSpec("qwen2", **_LLAMA_LIKE),
    "qwen3": ArchSpec("qwen3", **_LLAMA_LIKE),
    "gemma": ArchSpec("gemma", **_LLAMA_LIKE),
    "gemma2": ArchSpec("gemma2", **_LLAMA_LIKE),
    "phi3": ArchSpec("phi3", **_LLAMA_LIKE),
    "gpt2": ArchSpec("gpt2", base="transformer", layers="h", o_proj="attn.c_proj", conv1d=True,
                     heads="n_head", layers_attr="n_layer", hidden="n_embd", head_dim=None),
    "gpt_neox": ArchSpec("gpt_neox", base="gpt_neox", layers="layers", o_proj="attention.dense", head_dim=None),
    "opt": ArchSpec("opt", base="model", layers="decoder.layers", o_proj="self_attn.out_proj", head_dim=None),
}

SUPPORTED = tuple(sorted(ARCHS))


def _config(model_or_config: Any) -> Any:
    return getattr(model_or_config, "config", model_or_config)


def _unsupported(model_type: str | None) -> UnsupportedError:
    return UnsupportedError(f"unsupported model architecture {model_type!r}",
                            f"supported model_type values: {', '.join(SUPPORTED)}")


def spec_for(model_or_config: Any) -> ArchSpec:
    cfg = _config(model_or_config)
    mt = getattr(cfg, "model_type", None)
    if mt not in ARCHS:
        raise _unsupported(mt)
    return ARCHS[mt]


def get_arch(model: Any) -> ArchSpec:
    """The ArchSpec for a model (or config); UnsupportedError lists the supported types."""
    return spec_for(model)


def _get_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def head_layout(model_or_config: Any) -> HeadLayout:
    """HeadLayout(L, H, D) from the config; for a model, D is checked against o_proj's in-width."""
    spec = spec_for(model_or_config)
    cfg = _config(model_or_config)
    n_layers = int(getattr(cfg, spec.layers_attr))
    n_heads = int(getattr(cfg, spec.heads))
    d = getattr(cfg, spec.head_dim, None) if spec.head_dim else None
    if d is None:
        hidden = int(getattr(cfg, spec.hidden))
        if hidden % n_heads:
            raise UnsupportedError(f"{spec.model_type}: hidden size {hidden} is not divisible by {n_heads} heads",
                                   "this config is not a standard one; check the model's config.json")
        d = hidden // n_heads
    layout = HeadLayout(n_layers, n_heads, int(d))
    if cfg is not model_or_config:  # a model: cross-check with the real projection
        in_features = _in_features(o_proj_modules(model_or_config)[0], spec)
        if in_features != layout.width:
            raise UnsupportedError(
                f"{spec.model_type}: o_proj takes {in_features} features but the config says "
                f"{n_heads} heads x {d} = {layout.width}", "the model's config does not match its weights")
    return layout


def hidden_size(model_or_config: Any) -> int:
    """The residual stream's width (the config attribute the architecture's map names)."""
    return int(getattr(_config(model_or_config), spec_for(model_or_config).hidden))


def decoder_stack(model: Any) -> Any:
    """The base model (embeddings + layers + final norm) without the lm_head."""
    spec = spec_for(model)
    base = getattr(model, spec.base, None)
    if base is not None:
        return base
    # already a base model (e.g. LlamaModel): it has the layer list itself
    try:
        _get_path(model, spec.layers)
    except AttributeError:
        raise _unsupported(spec.model_type) from None
    return model


def decoder_layers(model: Any) -> list[Any]:
    spec = spec_for(model)
    return list(_get_path(decoder_stack(model), spec.layers))


def o_proj_modules(model: Any) -> list[Any]:
    """Each layer's attention output projection; its input is the head-wise activation [.., H·D]."""
    spec = spec_for(model)
    return [_get_path(layer, spec.o_proj) for layer in decoder_layers(model)]


def _in_features(module: Any, spec: ArchSpec | None = None) -> int:
    w = module.weight
    conv = spec.conv1d if spec is not None else type(module).__name__ == "Conv1D"
    return int(w.shape[0] if conv else w.shape[1])


def out_proj_matrix(module: Any):
    """W_o as a [hidden, H·D] tensor such that module(x) = W_o @ x (+ bias), for Linear and Conv1D."""
    w = module.weight
    if type(module).__name__ == "Conv1D":  # GPT-2: weight is [in, out], forward is x @ W + b
        return w.t()
    return w
