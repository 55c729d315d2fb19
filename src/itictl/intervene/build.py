"""The intervene step: top-K heads, truthful directions, strengths, per-layer delta vectors.

Owns `run_intervene` (probes + tuning activations -> `intervention` artifact), `build_deltas`
(the pure computation), `import_deltas` (an intervention artifact from foreign deltas, e.g. pyvene)
and `load_deltas` / `read_intervention`.

Heads: for 'com' and 'probe' the K heads with the best validation accuracy (ties: lower layer, then
lower head first; tie_break='argsort': the reference's np.argsort(acc)[::-1]); for 'random' the
first K of a seeded permutation of all (layer, head) pairs, as the reference's use_random_dir path.
θ = normalised direction ('com' = mean(true) − mean(false) over train+val prompts, 'probe' = the
probe's weight vector, 'random' = a Gaussian from the same seeded generator, drawn after the
permutation); σ = std of the projections a·θ of the
tuning activations (tqa_gen_end_q) of the training questions only (train ∪ val: every question
outside the probes' test fold; the reference uses all questions, which leaks the test fold:
sigma_from='all', the `reference` protocol's);
δ_l[h·D:(h+1)·D] = α·σ·θ. Payload: intervention.safetensors (`layer.{l}` -> [H·D] float32, only layers
with heads) and intervention.json (heads, sigma, alpha, direction, model key, layout).
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

from itictl.errors import BadInputError

INTERVENTION_STEP_VERSION = 2  # 2: 'random' picks random heads (was: the top-K probe heads)
DIRECTIONS = ("com", "probe", "random")


def validate(heads: int, alpha: float, direction: str, n_layers: int | None = None, n_heads: int | None = None) -> None:
    """One-line errors for bad K, α or direction (before anything is computed or written)."""
    if direction not in DIRECTIONS:
        raise BadInputError(f"unknown direction {direction!r}", f"use one of: {', '.join(DIRECTIONS)}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(float(alpha)):
        raise BadInputError(f"--alpha must be a finite number, got {alpha!r}", "use e.g. --alpha 15")
    if int(heads) <= 0:
        raise BadInputError(f"--heads must be ≥ 1, got {heads}", "use e.g. --heads 48")
    if n_layers is not None and n_heads is not None and int(heads) > n_layers * n_heads:
        raise BadInputError(f"--heads {heads} is more than the model's {n_layers}×{n_heads} = {n_layers * n_heads} heads",
                            f"use at most {n_layers * n_heads}")


def check_deltas_fit(deltas: Mapping[int, Any], n_layers: int, width: int | None, *,
                     model_label: str = "the model", hint: str = "use an intervention made for this model") -> None:
    """One-line error unless every δ_l sits on a layer 0 ≤ l < n_layers and has `width` features (the
    o_proj input H·D; None: not checked). The one check of steering, bake and import."""
    for layer, d in sorted(deltas.items()):
        n = int(d.numel()) if hasattr(d, "numel") else int(np.asarray(d).size)
        if not 0 <= int(layer) < n_layers:
            raise BadInputError(f"intervention on layer {layer} but {model_label} has {n_layers} layers", hint)
        if width is not None and n != int(width):
            raise BadInputError(f"intervention for layer {layer} has {n} features but {model_label}'s o_proj "
                                f"takes {width}", hint)


def check_reference_switches(sigma_from: str, tie_break: str) -> None:
    """One-line errors for bad --sigma-from / --tie-break values."""
    from itictl.protocol import check_switch

    check_switch("sigma_from", sigma_from)
    check_switch("tie_break", tie_break)


def top_heads(val_acc_LH: np.ndarray, k: int, tie_break: str = "lower") -> list[tuple[int, int]]:
    """The k (layer, head) pairs with the highest accuracy; ties go to the lower flat index
    ('argsort': the reference's np.argsort(acc)[::-1][:k], whose order of ties numpy decides)."""
    L, H = val_acc_LH.shape
    flat = np.asarray(val_acc_LH, dtype=np.float64).reshape(-1)
    if tie_break == "argsort":
        return [(int(i // H), int(i % H)) for i in np.argsort(flat)[::-1][:k]]
    order = np.lexsort((np.arange(L * H), -flat))  # primary: accuracy desc; secondary: index asc
    return [(int(i // H), int(i % H)) for i in order[:k]]


def random_heads(n_layers: int, n_heads: int, k: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """k distinct (layer, head) pairs: the first k of a permutation of all L·H flat indices."""
    return [(int(i // n_heads), int(i % n_heads)) for i in rng.permutation(n_layers * n_heads)[:k]]


def heads_and_directions(probes, k: int, kind: str, seed: int,
                         tie_break: str = "lower") -> tuple[list[tuple[int, int]], np.ndarray]:
    """(chosen heads, unit directions [K, D] float64). 'random': random heads and Gaussian
    directions from one default_rng(seed) (permutation first); otherwise the top-k probe heads."""
    L, H, D = probes.layout
    if kind == "random":
        rng = np.random.default_rng(seed)
        chosen = random_heads(L, H, k, rng)
        raw = rng.standard_normal((len(chosen), D))
    else:
        chosen = top_heads(probes.val_acc, k, tie_break)
        source = probes.com if kind == "com" else probes.weight
        raw = np.stack([source[l, h] for l, h in chosen]).astype(np.float64)
    norm = np.linalg.norm(raw, axis=1, keepdims=True)
    if (norm == 0).any():
        raise BadInputError("a chosen head has a zero direction", "use more data or another --direction")
    return chosen, raw / norm


def build_deltas(probes, tuning_hw: np.ndarray, *, heads: int, alpha: float, direction: str, seed: int,
                 tie_break: str = "lower", rows: np.ndarray | None = None):
    """(deltas {layer: [H·D] float32}, chosen heads, sigma [K]) from probes and tuning activations.

    tuning_hw: tuning activations [N, L, H, D]; σ is taken over its `rows` (the training questions'
    prompts; None: all), gathered per chosen head (no copy of the whole selection).
    """
    _, H, D = probes.layout
    chosen, theta = heads_and_directions(probes, heads, direction, seed, tie_break)  # theta [K, D]
    sel = slice(None) if rows is None else rows
    sigma = np.array([np.std(tuning_hw[sel, l, h, :].astype(np.float64) @ theta[i]) for i, (l, h) in enumerate(chosen)])
    deltas: dict[int, np.ndarray] = {}
    for i, (l, h) in enumerate(chosen):
        vec = deltas.setdefault(l, np.zeros(H * D, dtype=np.float64))
        vec[h * D:(h + 1) * D] += alpha * sigma[i] * theta[i]
    return {l: v.astype(np.float32) for l, v in sorted(deltas.items())}, chosen, sigma


def _write(ctx, deltas: Mapping[int, np.ndarray], doc: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    save_file({f"layer.{l}": np.ascontiguousarray(v, dtype=np.float32) for l, v in deltas.items()},
              str(ctx.out / "intervention.safetensors"))
    (ctx.out / "intervention.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")


def check_probes_model(probes_key: str, probes_model: str | None, model_key: str | None,
                       model_label: str = "the requested model") -> None:
    """One-line error when probes (trained on `probes_model`) are used with another model."""
    if model_key is not None and probes_model is not None and probes_model != model_key:
        raise BadInputError(f"probes {probes_key[:12]} were trained on model {probes_model[:12]}, not on "
                            f"{model_label} ({model_key[:12]})", "pass probes made for this model, or drop --model")


def run_intervene(store, probes_art, tuning_art, *, heads: int, alpha: float, direction: str = "com",
                  seed: int = 42, out=None, model_key: str | None = None, sigma_from: str = "train",
                  tie_break: str = "lower"):
    """Build an intervention from a probes artifact and tuning activations -> (Artifact, cached).

    model_key: when given, the probes must come from that model (else a one-line error).
    sigma_from 'all': σ over every tuning prompt (the reference, which includes the test fold);
    tie_break 'argsort': the reference's order of tied heads (both in the key only when set).
    """
    check_reference_switches(sigma_from, tie_break)
    from itictl.probe.step import load_probes, read_head_acts

    probes = load_probes(probes_art)
    L, H, D = probes.layout
    validate(heads, alpha, direction, L, H)
    p_model = probes.doc.get("model_key")
    check_probes_model(probes_art.key, p_model, model_key)
    if tuning_art.kind != "activations":
        raise BadInputError(f"{tuning_art.key[:12]} is a {tuning_art.kind} object, not activations",
                            "pass tqa_gen_end_q activations as the tuning set")
    t_model = tuning_art.parents.get("model")
    if p_model is not None and t_model is not None and t_model != p_model:
        raise BadInputError(f"tuning activations come from model {t_model[:12]} but the probes from {p_model[:12]}",
                            "extract the tuning activations with the probes' model")
    params = {"heads": int(heads), "alpha": float(alpha), "direction": direction, "seed": int(seed),
              **({"sigma_from": sigma_from} if sigma_from != "train" else {}),
              **({"tie_break": tie_break} if tie_break != "lower" else {})}

    def build(ctx) -> None:
        tun = read_head_acts(tuning_art)
        if tun.shape != (L, H, D):
            raise BadInputError(f"tuning activations have layout {tun.shape}, probes {(L, H, D)}",
                                "use activations from the same model")
        qs = probes.doc["questions"]
        keep = set(qs["train"]) | set(qs["val"])
        rows = np.flatnonzero(np.isin(tun.question_index, sorted(keep)) | (sigma_from == "all"))
        if len(rows) < 2:
            raise BadInputError("the tuning activations contain (almost) none of the probes' training questions",
                                "extract the tuning set over the same questions as the probes")
        deltas, chosen, sigma = build_deltas(probes, tun.head_wise, heads=heads, alpha=alpha, rows=rows,
                                             direction=direction, seed=seed, tie_break=tie_break)
        doc = {"heads": [list(x) for x in chosen], "sigma": [float(s) for s in sigma], "alpha": float(alpha),
               "direction": direction, "seed": int(seed), "model_key": p_model,
               "layout": {"L": L, "H": H, "D": D}, "layers": sorted(deltas), "n_tuning_prompts": int(len(rows)),
               "val_acc": [float(probes.val_acc[l, h]) for l, h in chosen], "source": "itictl",
               "sigma_from": sigma_from, "tie_break": tie_break}
        _write(ctx, deltas, doc)
        ctx.meta.update({"heads": len(chosen), "layers": len(deltas)})

    return store.produce("intervention", params, {"probes": probes_art.key, "tuning": tuning_art.key}, build,
                         step_version=INTERVENTION_STEP_VERSION)


def import_deltas(store, deltas: Mapping[int, Any], *, layout: tuple[int, int, int] | None, source: dict,
                  model_key: str | None = None):
    """An intervention artifact from given deltas (pyvene import). Heads = the non-zero head slices."""
    import hashlib

    arrs = {int(l): np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float32).reshape(-1)
            for l, v in deltas.items()}
    widths = {a.size for a in arrs.values()}
    if len(widths) != 1:
        raise BadInputError("the imported deltas have different sizes per layer", "import one model's intervention")
    width = widths.pop()
    L, H, D = layout if layout is not None else (max(arrs) + 1, None, None)
    heads_found = []
    if H:
        for l, a in sorted(arrs.items()):
            for h in range(H):
                if np.any(a[h * D:(h + 1) * D] != 0):
                    heads_found.append([l, h])
    digest = hashlib.sha256()
    for l, a in sorted(arrs.items()):
        digest.update(f"{l}:".encode() + a.tobytes())
    params = {"imported": source.get("format", "pyvene"), "digest": digest.hexdigest()}
    parents = {"model": model_key} if model_key else {}

    def build(ctx) -> None:
        doc = {"heads": heads_found, "sigma": None, "alpha": None, "direction": "imported", "seed": None,
               "model_key": model_key, "layout": {"L": L, "H": H, "D": D} if H else {"L": L, "width": width},
               "layers": sorted(arrs), "source": source}
        _write(ctx, arrs, doc)

    return store.produce("intervention", params, parents, build, step_version=INTERVENTION_STEP_VERSION)


def read_intervention(art) -> dict:
    if art.kind != "intervention":
        raise BadInputError(f"{art.key[:12]} is a {art.kind} object, not an intervention", "pass an intervention ref")
    return art.read_json("intervention.json")


def load_deltas(art) -> dict:
    """{layer: Tensor[H·D] float32} of an intervention artifact."""
    from safetensors.torch import load_file

    if art.kind != "intervention":
        raise BadInputError(f"{art.key[:12]} is a {art.kind} object, not an intervention", "pass an intervention ref")
    t = load_file(str(art.file("intervention.safetensors")))
    return {int(k.split(".", 1)[1]): v for k, v in sorted(t.items(), key=lambda kv: int(kv[0].split(".", 1)[1]))}
