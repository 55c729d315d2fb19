"""Baking an intervention into a plain Hugging Face model: o_proj.bias = W_o·δ_l (+ existing bias).

Owns `baked(model, deltas)` (a context manager that edits a loaded model in place and restores it),
`bake_folder(model, tokenizer, deltas, dir)` (writes the HF folder) and `run_bake` (the store step,
kind `baked-model`, tagged `last-bake`), plus `resolve_intervention` (ref -> (intervention, the eval
or tune it was built from when known, which the model card cites); no ref: the all-questions
intervention of the last eval or tune, publish.final).

Why it is exact: o_proj is linear, so o_proj(x + δ) = W_o·x + W_o·δ + b. Setting the bias to
b + W_o·δ_l makes the unedited forward pass equal the live intervention with positions='all'.

Bias mechanism per architecture (checked against transformers 5.24's modeling code):
- GPT-2 (Conv1D c_proj), OPT (out_proj), GPT-NeoX (dense): the projection already has a bias; it
  is updated in place, nothing else changes.
- Llama family (llama, gemma, olmo, …): o_proj is built with `bias=config.attention_bias`, and the
  same flag also builds q/k/v biases. There is no o_proj-only flag, so the config is saved with
  `attention_bias: true` and the new q/k/v biases (and the o_proj biases of layers without an
  intervention) are explicit zeros. Which parameters the flag adds is found generically by
  instantiating the architecture on the meta device with the edited config and comparing names.
- Architectures whose o_proj bias is hard-coded off (mistral, qwen2, qwen3 in transformers 5.24)
  cannot be baked without custom code: UnsupportedError.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from itictl.errors import BadInputError, UnsupportedError

BAKE_STEP_VERSION = 1


@dataclass
class BakeInfo:
    """What a bake changed: layers with a shift, and parameters created as zeros."""

    layers: list[int]
    enabled_flag: str | None = None  # config flag switched on to create biases (e.g. attention_bias)
    zero_params: list[str] = field(default_factory=list)  # parameter names created as zeros

    def notes(self) -> list[str]:
        if not self.enabled_flag:
            return []
        return [f"The config sets `{self.enabled_flag}: true` so transformers creates and loads the o_proj bias;"
                f" the {len(self.zero_params) - len(self.layers)} other biases this flag also creates (q/k/v, and"
                " o_proj of layers without an intervention) are stored as explicit zeros, so they change nothing."]


def _layer_shifts(model, deltas: Mapping[int, "Tensor"]) -> dict[int, "Tensor"]:  # noqa: F821
    """{layer: W_o·δ_l} as float32 [hidden] tensors computed on layer l's own device (model-parallel
    models keep each layer's weights where they are; only δ_l moves)."""
    import torch

    from itictl.intervene.build import check_deltas_fit
    from itictl.models.arch import o_proj_modules, out_proj_matrix

    mods = o_proj_modules(model)
    check_deltas_fit(deltas, len(mods), out_proj_matrix(mods[0]).shape[1] if mods else None)
    out = {}
    for layer, d in sorted(deltas.items()):
        layer = int(layer)
        w = out_proj_matrix(mods[layer]).detach()  # [hidden, H·D] on the layer's device
        if w.device.type == "meta":
            raise UnsupportedError(f"layer {layer}'s weights are offloaded (not in memory); cannot bake them",
                                   "use a --device-map that fits the model on the GPUs, or bake on the CPU")
        d = d.detach().reshape(-1).to(w.device, torch.float32)  # [H·D]
        out[layer] = w.to(torch.float32) @ d  # [hidden], fp32 on the layer's device
    return out


def residual_shifts(model, deltas: Mapping[int, "Tensor"]) -> dict[int, "Tensor"]:  # noqa: F821
    """{layer: W_o·δ_l} as float32 [hidden] tensors on the CPU (the residual-stream direction)."""
    return {layer: s.cpu() for layer, s in _layer_shifts(model, deltas).items()}


def _enable_biases(model) -> tuple[list[tuple], BakeInfo]:
    """Create missing o_proj biases via a config flag transformers honours; returns undo records."""
    import torch

    cfg = model.config
    flag = "attention_bias"
    mt = getattr(cfg, "model_type", "?")
    if not hasattr(cfg, flag) or getattr(cfg, flag):
        raise UnsupportedError(f"{mt}: the attention output projection has no bias and the config has no flag"
                               " that creates one", "bake supports llama-family, gpt2, opt and gpt_neox models;"
                               " use `itictl export` for this model instead")
    new_cfg = copy.deepcopy(cfg)
    setattr(new_cfg, flag, True)
    with torch.device("meta"):
        ref = type(model)(new_cfg)
    have = dict(model.named_parameters())
    want = dict(ref.named_parameters())
    added, removed = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if removed or not added or any(not n.endswith(".bias") for n in added):
        raise UnsupportedError(f"{mt}: switching on {flag} changes more than biases", "use `itictl export` instead")
    undo: list[tuple] = []
    for name in added:
        mod_name = name[: -len(".bias")]
        mod = model.get_submodule(mod_name)
        if getattr(mod, "bias", None) is not None:
            raise UnsupportedError(f"{mt}: unexpected existing bias on {mod_name}", "use `itictl export` instead")
        w = mod.weight
        undo.append((mod, None))
        mod.bias = torch.nn.Parameter(torch.zeros(want[name].shape, dtype=w.dtype, device=w.device),
                                      requires_grad=False)
    undo.append((cfg, flag, False))
    setattr(cfg, flag, True)
    return undo, BakeInfo(layers=[], enabled_flag=flag, zero_params=added)


@contextlib.contextmanager
def baked(model, deltas: Mapping[int, "Tensor"]) -> Iterator[BakeInfo]:  # noqa: F821
    """Within the block, `model` carries the intervention in its o_proj biases; restored afterwards."""
    import torch

    from itictl.models.arch import o_proj_modules

    if any(p.device.type == "meta" for p in model.parameters()):  # biases are added on every layer
        raise UnsupportedError("some of the model's weights are offloaded (not in memory); cannot bake them",
                               "use a --device-map that fits the model on the GPUs, or bake on the CPU")
    shifts = _layer_shifts(model, deltas)  # each on its layer's device
    mods = o_proj_modules(model)
    undo: list[tuple] = []
    info = BakeInfo(layers=sorted(shifts))
    try:
        with torch.no_grad():
            if any(mods[l].bias is None for l in shifts):
                more, info = _enable_biases(model)
                info.layers = sorted(shifts)
                undo.extend(more)
                if any(mods[l].bias is None for l in shifts):  # the flag biases q/k/v only (e.g. glm4_moe)
                    raise UnsupportedError(f"{info.enabled_flag} does not give this model's attention output"
                                           " projection a bias", "use `itictl export` for this model instead")
            for layer, s in shifts.items():
                mod = mods[layer]
                old = mod.bias
                new = old.detach().to(torch.float32) + s.to(old.device)  # [hidden], fp32 sum
                undo.append((mod, old))
                mod.bias = torch.nn.Parameter(new.to(old.dtype), requires_grad=False)
        yield info
    finally:
        for rec in reversed(undo):
            if len(rec) == 3:
                setattr(rec[0], rec[1], rec[2])
            else:
                rec[0].bias = rec[1]


SHARD_SIZE = "5GB"  # bake_folder: the most host memory one save step holds


def bake_folder(model, tokenizer, deltas: Mapping[int, "Tensor"], folder: Path) -> BakeInfo:  # noqa: F821
    """Write a plain HF folder (safetensors, config, generation config, tokenizer) with the bake.

    A model dispatched across devices is saved as it is: transformers copies one shard's tensors to
    the CPU at a time, so host memory holds at most one shard (SHARD_SIZE, 5 GB; transformers'
    default is 50 GB); the folder has no device map."""
    from itictl.models.quiet import hf_quiet

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with baked(model, deltas) as info, hf_quiet():  # no "Writing model shards" bar under -q
        model.save_pretrained(folder, max_shard_size=SHARD_SIZE)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return info


def resolve_intervention(store, ref: str | None, out=None, *, heads: int | None = None, alpha: float | None = None):
    """-> (intervention, source): the intervention a ref names (bake, export and push use this one
    rule): an intervention itself, a baked model's, an eval's (role `intervention`: the first
    setting's fold 0; a warning names it when the eval used several), or a tune's (the
    all-questions intervention of its chosen setting, publish.final.for_tune). No ref: the
    all-questions intervention of the newer of `last-tune` and `last-eval` (publish.final.last_final;
    for an eval, its chosen (or only) setting, heads / alpha picking among several; they apply only
    without a ref). `source`: the eval or tune that final intervention was built from (no ref, a
    tune ref), a baked model's recorded source, else None (the card then finds its eval itself:
    publish.modelcard.measured_by)."""
    if ref is None:
        from itictl.publish.final import last_final

        final = last_final(store, out, heads=heads, alpha=alpha)
        return final.intervention, final.source
    if heads is not None or alpha is not None:
        from itictl.errors import UsageError

        raise UsageError("--heads/--alpha pick the last eval's setting; they do not apply to a REF",
                         "drop REF to ship the last eval's all-questions intervention, or drop --heads/--alpha")
    art = store.open(ref)
    if art.kind == "intervention":
        return art, None
    if art.kind == "baked-model":
        return store.get(art.parents["intervention"]), source_of(store, art)
    if art.kind == "tune":
        from itictl.publish.final import for_tune

        final = for_tune(store, art, out=out)
        return final.intervention, final.source
    if art.kind != "eval":
        raise BadInputError(f"{art.key[:12]} is a {art.kind} object, not an intervention",
                            "pass an intervention, baked-model, eval or tune ref (see `itictl store ls --kind intervention`)")
    found = [(role, store.get(k)) for role, k in sorted(art.parents.items())
             if store.has(k) and store.get(k).kind == "intervention"]
    if not found:
        raise BadInputError(f"eval {art.key[:12]} has no intervention among its parents", "pass an intervention ref")
    chosen = next((a for role, a in found if role == "intervention"), found[0][1])
    distinct = len({a.key for _, a in found})
    if distinct > 1 and out is not None:
        out.warn(f"eval {art.key[:12]} used {distinct} interventions (one per fold and setting); using "
                 f"{chosen.key[:12]} — pass an intervention ref to choose another")
    return chosen, None


def source_of(store, baked_art):
    """The eval or tune whose numbers a baked model's README cites (its meta's `source`), when
    recorded and still in the store; else None."""
    key = baked_art.meta.get("source")
    return store.get(key) if isinstance(key, str) and store.has(key) else None


def _check_options(dtype: str, device: str, device_map, tag: str | None):
    """-> (parsed device map, resolved dtype); one-line errors for a bad map, device, dtype or tag."""
    from itictl.models.devices import compute_device, parse_device_map, resolve_dtype
    from itictl.store.refs import check_ref_name

    dmap = parse_device_map(device_map)
    if tag is not None:
        check_ref_name(tag)
    return dmap, resolve_dtype(dtype, compute_device(device, dmap))


def bake_ref(store, ref: str | None, out=None, *, dtype: str = "auto", device: str = "auto",
             device_map: str | dict | None = None, tag: str | None = None, heads: int | None = None,
             alpha: float | None = None):
    """`itictl bake [REF]`: options checked, REF resolved (resolve_intervention; None: the
    all-questions intervention of the newer of last-tune and last-eval, heads / alpha picking an
    eval's setting), then run_bake.
    Returns (intervention, baked-model artifact, cached)."""
    _check_options(dtype, device, device_map, tag)
    inter, source = resolve_intervention(store, ref, out, heads=heads, alpha=alpha)
    art, cached = run_bake(store, inter, out, dtype=dtype, device=device, device_map=device_map, tag=tag,
                           source=source)
    return inter, art, cached


def run_bake(store, intervention_art, out=None, *, dtype: str = "auto", device: str = "auto",
             device_map: str | dict | None = None, tag: str | None = None, source=None):
    """Bake an intervention into its model: returns (Artifact kind 'baked-model', cached) and tags
    it `last-bake` (and `tag` when given). `source`: the eval or tune the intervention was built
    from; the README card cites that one (meta `source`). It is not in the key: the weights depend
    only on the intervention, the model and the dtype, so a later bake of the same intervention from
    another eval reuses this one (its README keeps citing the first source; `push` renders the card
    for the source it resolves).

    device_map ('auto' | 'balanced' | 'sequential' | {module: device}) loads a model too large for
    one device across several; W_o·δ_l is then computed on each layer's device. Neither device nor
    map is part of the key (the baked weights agree within the dtype's rounding)."""
    from itictl.publish.modelcard import model_of, render_card

    dmap, dtype = _check_options(dtype, device, device_map, tag)  # the key holds the dtype really used
    if intervention_art.kind != "intervention":
        raise BadInputError(f"{intervention_art.key[:12]} is a {intervention_art.kind} object, not an intervention",
                            "pass an intervention ref (see `itictl store ls --kind intervention`)")
    model_art = model_of(store, intervention_art)
    params = {"dtype": dtype}
    parents = {"intervention": intervention_art.key, "model": model_art.key}

    def build(ctx):
        from itictl.intervene.build import load_deltas
        from itictl.models import load_model

        deltas = load_deltas(intervention_art)
        if not deltas:
            raise BadInputError(f"intervention {intervention_art.key[:12]} has no layers", "intervene on K >= 1 heads")
        lm = load_model(store, model_art, dtype=dtype, device=device, device_map=dmap, fresh=True)  # private copy
        info = bake_folder(lm.model, lm.tokenizer, deltas, ctx.out / "model")
        card = render_card(store, intervention_art, what="baked-model", notes=info.notes(), source=source)
        (ctx.out / "README.md").write_text(card, encoding="utf-8")
        ctx.meta.update({"layers": info.layers, "enabled_flag": info.enabled_flag,
                         "zero_params": len(info.zero_params), "source": source.key if source is not None else None})

    if out is not None and not store.has(store.key_for("baked-model", params, parents, step_version=BAKE_STEP_VERSION)):
        out.info(f"baking intervention {intervention_art.key[:12]} into {model_art.key[:12]}")
    art, cached = store.produce("baked-model", params, parents, build, step_version=BAKE_STEP_VERSION)
    cited = art.meta.get("source")
    if cached and out is not None and source is not None and cited != source.key:
        out.info(f"baked model {art.key[:12]} (cached) has these weights; its README cites "
                 f"{'eval/tune ' + cited[:12] if cited else 'the eval found then'}, `itictl push` writes the card for "
                 f"{source.kind} {source.key[:12]}")
    for name in ("last-bake", tag):
        if name:
            store.tag(name, art.key)
    return art, cached
