"""Maps for models outside the table: structural discovery, resolving a user's --arch-map against a
model (arch_map.py parses it), and the one-forward verification both go through.

discover(model): the decoder layers are the nn.ModuleList under the model whose length is the
config's layer count and whose blocks hold an attention module; the output projection is a
Linear/Conv1D inside layer 0's attention module that reads H·D features (H heads × head_dim from
the config: v_head_dim, head_dim or hidden÷H) and writes the residual width. One forward narrows the
candidates: a projection that reads an attention module's own input (q/k/v when hidden == H·D) is
dropped; of several left, the one whose output *is* the attention module's output wins; then the
names o_proj / out_proj / dense / c_proj / proj … as a hint. Anything still ambiguous is an
UnsupportedError naming the candidates and the --arch-map to pass.

verify(model, spec): one forward of L+1 identical rows; row i+1 gets a perturbation on layer i's
projection input. It checks that every layer's projection runs once, reads [B, T, H·D], and that
its perturbation changes that layer's output.
"""

from __future__ import annotations

import json
from typing import Any

from itictl.errors import UnsupportedError
from itictl.models.arch import ArchSpec, HeadLayout, _get_path, is_conv1d
from itictl.models.arch_map import (
    MAP_EXAMPLE,
    ArchMap,
    _cfg_head_dim,
    _cfg_heads,
    _cfg_hidden,
    _cfg_int,
    _cfg_layers,
    _map_error,
    _need,
    _text_config,
)

NAME_HINTS = ("o_proj", "out_proj", "dense", "c_proj", "proj", "o", "wo", "out", "output")
_ATTN_WORDS = ("attn", "attention")
# --- modules --------------------------------------------------------------------------------------

def linear_widths(m: Any) -> tuple[int, int] | None:
    """(in, out) of a Linear-like module (nn.Linear and subclasses, GPT-2 Conv1D), else None."""
    import torch

    w = getattr(m, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 2 or isinstance(m, torch.nn.Embedding):
        return None
    if is_conv1d(m):
        return int(w.shape[0]), int(w.shape[1])
    if isinstance(m, torch.nn.Linear):
        return int(m.in_features), int(m.out_features)
    return None


def _is_attention(name: str, m: Any) -> bool:
    last = name.rsplit(".", 1)[-1].lower()
    return any(w in last for w in _ATTN_WORDS) or "attention" in type(m).__name__.lower()


def _attention_roots(layer: Any) -> list[tuple[str, Any]]:
    roots: list[tuple[str, Any]] = []
    for name, m in layer.named_modules():
        if name and _is_attention(name, m) and not any(name.startswith(r + ".") for r, _ in roots):
            roots.append((name, m))
    return roots


def _base_path(model: Any, layers_path: str) -> tuple[str, str]:
    """Split a layer list path into (base, rest): base = the deepest PreTrainedModel on the path
    below the root (it runs the layers from input_ids), else the list's parent."""
    parts = layers_path.split(".")
    best = None
    for i in range(1, len(parts)):
        mod = _get_path(model, ".".join(parts[:i]))
        if hasattr(mod, "config") and hasattr(mod, "get_input_embeddings"):
            best = i
    cut = best if best is not None else len(parts) - 1
    return ".".join(parts[:cut]), ".".join(parts[cut:])


def _find_layers(model: Any, n_layers: int | None) -> str:
    import torch

    found = []
    for name, m in model.named_modules():
        if not isinstance(m, torch.nn.ModuleList) or not len(m) or any(name.startswith(f + ".") for f in found):
            continue
        if (n_layers is None or len(m) == n_layers) and _attention_roots(m[0]):
            found.append(name)
    mt = getattr(model.config, "model_type", None)
    if not found:
        raise UnsupportedError(f"{mt}: found no list of {n_layers or 'N'} decoder layers with attention modules",
                               f"this model may have no attention (state-space/recurrent); else pass --arch-map '{MAP_EXAMPLE}'")
    if n_layers is None and len(found) > 1:
        found = [max(found, key=lambda n: len(_get_path(model, n)))]
    if len(found) > 1:
        raise UnsupportedError(f"{mt}: ambiguous decoder layers: {', '.join(found)}",
                               f"pass --arch-map '{MAP_EXAMPLE}' naming the layer list")
    return found[0]


def _candidates(layer: Any, width: int, hidden: int | None) -> list[str]:
    """Paths (from the layer) of Linear-likes in its attention module(s) reading `width` features
    and writing `hidden` (the whole layer when it has no module that looks like attention)."""
    roots = _attention_roots(layer) or [("", layer)]
    out: list[str] = []
    for root, mod in roots:
        for name, m in mod.named_modules():
            w = linear_widths(m)
            path = ".".join(p for p in (root, name) if p)
            if w and w[0] == width and (hidden is None or w[1] == hidden) and path not in out:
                out.append(path)
    return out


def _stack_and_layers(model: Any, spec: ArchSpec) -> tuple[Any, list[Any]]:
    stack = _get_path(model, spec.base)
    return stack, list(_get_path(stack, spec.layers))


def _probe_ids(model: Any, rows: int, tokens: int = 4):
    import torch

    from itictl.models.devices import input_device

    vocab = _cfg_int(_text_config(model.config), "vocab_size") or 8
    ids = (torch.arange(tokens) * 3 + 5) % vocab
    try:
        dev = input_device(model)
    except AttributeError:  # not a transformers model: its first parameter's device
        dev = next(model.parameters()).device
    return ids.unsqueeze(0).expand(rows, tokens).contiguous().to(dev)


def _first_tensor(out: Any) -> Any:
    import torch

    while isinstance(out, (tuple, list)) and out:
        out = out[0]
    return out if isinstance(out, torch.Tensor) else getattr(out, "last_hidden_state", None)


def _first_input(args: tuple, kwargs: dict) -> Any:
    import torch

    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    x = kwargs.get("hidden_states")
    return x if isinstance(x, torch.Tensor) else None


def _pick(model: Any, stack: Any, layer: Any, cands: list[str]) -> list[str]:
    """Narrow the candidates with one forward: keep those that run and do not read the attention
    module's own input (q/k/v do, when hidden == H·D); then, if several remain, the one whose
    output *is* the attention module's output; then the one with a conventional name."""
    import torch

    roots = [n for n, m in layer.named_modules() if n and _is_attention(n, m) and n not in cands]  # nested too
    got: dict[str, tuple[Any, Any]] = {}  # name -> (input, output)
    handles = []

    def keep(name: str):
        def hook(_m, args, kwargs, out) -> None:  # records only (a returned value would replace the output)
            got.setdefault(name, (_first_input(args, kwargs), _first_tensor(out)))
        return hook

    for name in cands + roots:
        handles.append(_get_path(layer, name).register_forward_hook(keep(name), with_kwargs=True))
    try:
        with torch.no_grad():
            stack(input_ids=_probe_ids(model, 1))
    finally:
        for h in handles:
            h.remove()

    def same(a: Any, b: Any) -> bool:
        return a is not None and b is not None and a.shape == b.shape and torch.equal(a, b)

    root_io = [got[r] for r in roots if r in got]
    pool = [c for c in cands if c in got and not any(same(got[c][0], i) for i, _ in root_io)]
    if len(pool) > 1:
        pool = [c for c in pool if any(same(got[c][1], o) for _, o in root_io)] or pool
    if len(pool) > 1:
        pool = [c for c in pool if c.rsplit(".", 1)[-1].lower() in NAME_HINTS] or pool
    return pool


def _ambiguous(mt: Any, what: str, cands: list[str], layers_path: str, layout: HeadLayout) -> UnsupportedError:
    ex = json.dumps({"layers": layers_path, "o_proj": cands[0] if cands else "self_attn.o_proj",
                     "heads": layout.n_heads, "head_dim": layout.head_dim})
    return UnsupportedError(f"{mt}: {what}", f"pass --arch-map '{ex}' naming the attention output projection")


def discover(model: Any) -> ArchSpec:
    """The map of a model outside the table, found by structure and verified (see module doc)."""
    c, mt = _text_config(model.config), getattr(model.config, "model_type", None)
    heads = _need(_cfg_heads(c), "attention heads", mt)
    layout_d = _need(_cfg_head_dim(c, heads), "head_dim", mt)
    hidden = _cfg_hidden(c)
    layers_path = _find_layers(model, _cfg_layers(c))
    base, rest = _base_path(model, layers_path)
    spec = ArchSpec(str(mt), base, rest, "", source="discovered")
    stack, layers = _stack_and_layers(model, spec)
    layout = HeadLayout(len(layers), heads, layout_d)
    cands = _candidates(layers[0], layout.width, hidden)
    if not cands:
        seen = [f"{n} {w[0]}->{w[1]}" for n, m in layers[0].named_modules() if (w := linear_widths(m))]
        raise _ambiguous(mt, f"no Linear in the attention of {layers_path}[0] reads {heads}x{layout_d}={layout.width}"
                         f" features (found {', '.join(seen[:8]) or 'none'})", [], layers_path, layout)
    picked = _pick(model, stack, layers[0], cands)
    if len(picked) != 1:
        what = "ambiguous attention output projection" if picked else "no projection reads the attention's result"
        raise _ambiguous(mt, f"{what}: {', '.join(picked or cands)}", picked or cands, layers_path, layout)
    cands = picked
    out_w = linear_widths(_get_path(layers[0], cands[0]))[1]
    spec = ArchSpec(str(mt), base, rest, cands[0], conv1d=is_conv1d(_get_path(layers[0], cands[0])),
                    source="discovered", layout=layout, hidden_n=hidden or out_w)
    verify(model, spec)
    return spec


def resolve_map(model: Any, arch_map: ArchMap) -> ArchSpec:
    """The spec a user's --arch-map gives for `model`, verified."""
    import torch

    mt = getattr(model.config, "model_type", None) if hasattr(model, "config") else None
    try:
        layers = _get_path(model, arch_map.layers)
    except (AttributeError, IndexError):
        raise _map_error(f"the model has no module {arch_map.layers!r}") from None
    if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
        raise _map_error(f"{arch_map.layers!r} is a {type(layers).__name__}, not a list of layers")
    try:
        proj = _get_path(layers[0], arch_map.o_proj)
    except (AttributeError, IndexError):
        raise _map_error(f"layer 0 has no module {arch_map.o_proj!r}") from None
    w = linear_widths(proj)
    if w is None:
        raise _map_error(f"{arch_map.o_proj!r} is a {type(proj).__name__}, not a Linear/Conv1D")
    cfg = _text_config(getattr(model, "config", None))
    heads = arch_map.heads or _need(_cfg_heads(cfg), "attention heads", mt)
    d = arch_map.head_dim or (w[0] // heads if w[0] % heads == 0 else _need(_cfg_head_dim(cfg, heads), "head_dim", mt))
    base, rest = _base_path(model, arch_map.layers)
    spec = ArchSpec(str(mt or type(model).__name__), base, rest, arch_map.o_proj, conv1d=is_conv1d(proj),
                    source="arch-map", layout=HeadLayout(len(layers), heads, d), hidden_n=w[1])
    verify(model, spec)
    return spec


def _verify_failure(spec: ArchSpec, what: str) -> UnsupportedError:
    return UnsupportedError(f"{spec.model_type}: {spec.layers_path}[i].{spec.o_proj} ({spec.source} map) {what}",
                            f"pass --arch-map '{MAP_EXAMPLE}' with the attention output projection")


def verify(model: Any, spec: ArchSpec) -> None:
    """One forward of L+1 identical rows; row i+1 perturbs layer i's projection input. Raises
    UnsupportedError unless every projection runs once per forward on [B, T, H·D] inputs and its
    perturbation changes its layer's output."""
    import torch

    stack, layers = _stack_and_layers(model, spec)
    projs = []
    for i, layer in enumerate(layers):
        try:
            projs.append(_get_path(layer, spec.o_proj))
        except (AttributeError, IndexError):
            raise _verify_failure(spec, f"is missing in layer {i} (a {type(layer).__name__}; hybrid models whose"
                                  " layers are not all attention layers are not supported)") from None
    width, rows = spec.layout.width, len(layers) + 1
    calls, shapes, outs = [0] * len(layers), [None] * len(layers), [None] * len(layers)
    g = torch.Generator().manual_seed(0)
    bumps = [torch.randn(width, generator=g) for _ in layers]

    def pre(i: int):
        def hook(_m, args):
            x = args[0]
            calls[i] += 1
            shapes[i] = tuple(x.shape)
            if x.dim() != 3 or x.shape[0] != rows or x.shape[-1] != width:
                return None
            bump = torch.zeros_like(x)
            bump[i + 1] = bumps[i].to(x.device, x.dtype) * (1.0 + float(x[0].float().abs().mean()))
            return (x + bump, *args[1:])
        return hook

    def post(i: int):
        def hook(_m, _a, out) -> None:
            outs[i] = _first_tensor(out)
        return hook

    handles = [p.register_forward_pre_hook(pre(i)) for i, p in enumerate(projs)]
    handles += [layer.register_forward_hook(post(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            stack(input_ids=_probe_ids(model, rows))
    finally:
        for h in handles:
            h.remove()
    for i, (n, shape, out) in enumerate(zip(calls, shapes, outs)):
        if n != 1:
            raise _verify_failure(spec, f"ran {n} times in layer {i} during one forward (expected once)")
        if shape is None or len(shape) != 3 or shape[0] != rows or shape[-1] != width:
            raise _verify_failure(spec, f"got input {shape} in layer {i}, expected [B, T, {width}] "
                                  f"({spec.layout.n_heads} heads x {spec.layout.head_dim})")
        if out is None or out.shape[0] != rows:
            raise _verify_failure(spec, f"layer {i}'s output could not be read")
        diff = float((out[i + 1].float() - out[0].float()).abs().max())
        if not diff > 1e-6 * (1.0 + float(out[0].float().abs().max())):
            raise _verify_failure(spec, f"input does not change layer {i}'s output")


def looks_like_o_proj(path: str) -> bool:
    """Whether a module path (from a layer) names an attention output projection in some map: one
    of its names is a table o_proj name or a discovery hint (case-insensitive), e.g.
    'self_attn.o_proj', 'attn.Wo', 'self_attn.o_proj.linear'."""
    from itictl.models.arch import ARCHS

    names = {n.lower() for n in NAME_HINTS} | {s.o_proj.rsplit(".", 1)[-1].lower() for s in ARCHS.values()}
    parts = [p.lower() for p in path.split(".")]
    return parts[-1] in names or (len(parts) > 1 and parts[-1] == "linear" and parts[-2] in names)
