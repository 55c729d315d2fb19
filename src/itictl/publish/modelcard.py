"""Lineage of an intervention and the README.md model card for baked models and exported interventions.

Owns: walking an intervention's ancestry in the store (model, dataset, probes, activations),
finding the eval that measured an intervention (the eval a bake came from when the caller knows it;
else `measured_by`: an eval of it, or, for an all-questions intervention, the newest eval whose
held-out folds measured the same setting with the same intervention-shaping protocol switches), and rendering
the card: YAML front matter (base_model, license, tags), the full lineage (model revision, dataset
digest, heads, alpha, direction, seed, which questions the intervention saw), that eval's numbers
with 95 % CIs and the change against α = 0, how to load the result, and the statement that a baked
model intervenes on prompt tokens too.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from itictl.errors import NotFoundError

TAGS = ["inference-time-intervention", "truthfulqa", "itictl"]
# The embedded default model is a Q4_1 GGUF of this Hub model (dequantised to fp32 by itictl).
EMBEDDED_BASE = {"repo": "HuggingFaceTB/SmolLM2-135M-Instruct", "license": "apache-2.0"}


def ancestors(store, art) -> dict[str, Any]:
    """The nearest ancestor of each kind (breadth-first over parents): {kind: Artifact}."""
    found: dict[str, Any] = {}
    seen = {art.key}
    queue = deque(art.parents.values())
    while queue:
        key = queue.popleft()
        if key in seen or not store.has(key):
            continue
        seen.add(key)
        a = store.get(key)
        found.setdefault(a.kind, a)
        queue.extend(a.parents.values())
    return found


def model_of(store, intervention_art):
    """The model artifact an intervention was made for (intervention.json's model key, else ancestry)."""
    info = intervention_info(intervention_art)
    for field in ("model_key", "model"):
        key = info.get(field) if isinstance(info, dict) else None
        if isinstance(key, str) and store.has(key):
            return store.get(key)
    model = ancestors(store, intervention_art).get("model")
    if model is None:
        raise NotFoundError(f"intervention {intervention_art.key[:12]} has no model among its ancestors",
                            "rerun `itictl intervene` so its lineage reaches the model")
    return model


def model_summary(model_art) -> dict[str, Any]:
    """Identity and architecture of a model artifact, flat: key, name, source, repo, commit, sha256, …"""
    info = model_art.read_json("model.json") if "model.json" in model_art.manifest.files else {}
    info = info if isinstance(info, dict) else {}
    ident = model_art.params.get("identity", model_art.params)
    out = {"key": model_art.key, "name": info.get("name"), "source": info.get("source") or ident.get("source"),
           "model_type": info.get("model_type")}
    out.update({k: ident[k] for k in ("repo", "commit", "sha256") if k in ident})
    if out["source"] == "embedded":
        out.update(EMBEDDED_BASE)
        out["gguf_file"] = info.get("gguf_file")
    return out


def intervention_info(intervention_art) -> dict[str, Any]:
    """intervention.json (digest-checked: corruption raises); {} for an intervention without one."""
    if "intervention.json" not in intervention_art.manifest.files:
        return {}
    info = intervention_art.read_json("intervention.json")
    return info if isinstance(info, dict) else {}


def evals_of(store, intervention_key: str) -> list:
    """Eval artifacts whose parents include this intervention, newest last (store.ls order)."""
    return [a for a in store.ls(kind="eval") if intervention_key in a.parents.values()]


def lineage(store, intervention_art) -> dict[str, Any]:
    """Everything a reader needs to reproduce the intervention, as one flat-ish dict."""
    anc = ancestors(store, intervention_art)
    model = model_of(store, intervention_art)
    info = intervention_info(intervention_art)
    probes = anc.get("probes")
    acts = anc.get("activations")  # the probes' own (tqa_mc2), not the tuning set, when known
    if probes is not None and store.has(probes.parents.get("activations", "")):
        acts = store.get(probes.parents["activations"])
    dataset = anc.get("dataset")
    p = intervention_art.params
    heads = info.get("heads")
    return {
        "intervention": intervention_art.key,
        "model": model_summary(model),
        "dataset": ({"key": dataset.key, **dataset.params} if dataset is not None else None),
        "activations": ({"key": acts.key, **acts.params} if acts is not None else None),
        "probes": ({"key": probes.key, **probes.params} if probes is not None else None),
        "heads": heads,
        "n_heads": p.get("heads", len(heads) if heads else None),
        "alpha": p.get("alpha", info.get("alpha")),
        "direction": p.get("direction", info.get("direction")),
        "seed": p.get("seed", info.get("seed")),
        "fold": probes.params.get("fold") if probes is not None else None,
        "folds": probes.params.get("folds") if probes is not None else None,
        "questions": _questions_text(probes),
    }


def _questions_text(probes) -> str | None:
    from itictl.publish.final import questions_seen

    return questions_seen(probes)["text"] if probes is not None and "probes.json" in probes.manifest.files else None


def base_model_id(lin: dict[str, Any]) -> str | None:
    m = lin["model"]
    for k in ("repo", "repo_id", "base_model"):
        if isinstance(m.get(k), str) and "/" in m[k]:
            return m[k]
    return None


def _yaml_scalar(v: Any) -> str:
    return json.dumps(v)  # JSON strings are valid YAML scalars


def _eval_rows(doc: Any) -> list[tuple[str, Any]]:
    """Metric rows from an eval.json: its 'mean' (or 'summary') dict, else top-level numbers."""
    if not isinstance(doc, dict):
        return []
    for k in ("mean", "summary", "metrics"):
        if isinstance(doc.get(k), dict):
            doc = doc[k]
            break
    return [(k, v) for k, v in doc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def render_card(store, intervention_art, *, what: str = "baked-model", license: str | None = None,
                repo_id: str | None = None, notes: list[str] | tuple[str, ...] = (), source=None) -> str:
    """The README.md for a baked model (`what='baked-model'`) or an exported intervention.
    `notes` are extra paragraphs for the loading section (e.g. how the bake enabled a bias).
    `source`: the eval or tune the intervention was built from (publish.final): the card cites
    exactly that one; None: measured_by / tuned_by find one."""
    lin = lineage(store, intervention_art)
    base = base_model_id(lin)
    name = repo_id or ("ITI-baked " + (base or "model"))
    lines = [*_front_matter(lin, base, what, license), "", f"# {name}", ""]
    lines += _intro(what, base)
    lines += _lineage_section(lin, base)
    from itictl.publish.tune_card import tune_section

    kind = getattr(source, "kind", None)
    if kind != "eval":  # a setting shipped from an eval was not chosen by a tune
        lines += tune_section(store, intervention_art, source if kind == "tune" else None)
    lines += _eval_section(store, intervention_art, source if kind == "eval" else None)
    lines += _loading_section(what, repo_id, notes)
    return "\n".join(lines) + "\n"


def _front_matter(lin: dict[str, Any], base: str | None, what: str, license: str | None) -> list[str]:
    """YAML front matter: base_model, license, library_name, tags."""
    yaml = ["---"]
    if base:
        yaml.append(f"base_model: {_yaml_scalar(base)}")
    yaml.append(f"license: {_yaml_scalar(license or lin['model'].get('license') or 'other')}")
    yaml.append("library_name: transformers" if what == "baked-model" else "library_name: itictl")
    yaml.append("tags:")
    yaml += [f"- {t}" for t in TAGS]
    yaml.append("---")
    return yaml


def _intro(what: str, base: str | None) -> list[str]:
    if what == "baked-model":
        return [
            f"{base or 'The base model'} with an Inference-Time Intervention (ITI; Li et al., NeurIPS 2023,"
            " arXiv 2306.03341) baked into the bias of the attention output projection of each intervened"
            " layer: `bias = W_o · δ_l` (+ any existing bias), which equals adding δ_l to that projection's"
            " input. Made with itictl.",
            "",
            "**A baked model intervenes on every token position, prompt tokens included** (the live"
            " intervention used during evaluation shifts only the last prompt token and the generated tokens),"
            " so its outputs can differ slightly from those of the live intervention that itictl evaluates.",
            "",
        ]
    return [
        "An Inference-Time Intervention (ITI; Li et al., NeurIPS 2023, arXiv 2306.03341) made with itictl:"
        " per intervened layer l a shift δ_l added to the input of the attention output projection"
        " (`layer.{l}` tensors of size H·D in `intervention.safetensors`).",
        "",
    ]


def _lineage_section(lin: dict[str, Any], base: str | None) -> list[str]:
    m = lin["model"]
    lines = ["## Lineage", "", "| field | value |", "|---|---|"]
    rows = [
        ("base model", base or m.get("source")),
        ("model revision", m.get("commit") or _digest_text(m.get("sha256"))),
        ("model file", m.get("gguf_file")),
        ("model key", m["key"]),
        ("dataset digest", (lin["dataset"] or {}).get("digest")),
        ("activations format", (lin["activations"] or {}).get("format")),
        ("heads (K)", lin["n_heads"]),
        ("alpha", lin["alpha"]),
        ("direction", lin["direction"]),
        ("seed", lin["seed"]),
        ("questions the intervention saw", lin["questions"]),
        ("fold", None if lin["fold"] in (None, "all") else f"{lin['fold']} of {lin['folds']}"),
        ("intervention key", lin["intervention"]),
    ]
    lines += [f"| {k} | {v} |" for k, v in rows if v is not None]
    if lin["heads"]:
        lines += ["", "Intervened heads (layer, head): " + ", ".join(f"({l}, {h})" for l, h in lin["heads"])]
    return lines


def _digest_text(d: str | None) -> str | None:
    """A GGUF identity digest as the card shows it: `sha256 HEX`, or the prefixed block digest as is."""
    return None if not d else (d if ":" in d else f"sha256 {d}")


def measured_by(store, intervention_art):
    """The newest eval (store.ls order) that measured this intervention: one with it among
    its parents, else (an all-questions intervention given by REF) one whose folds measured the same
    setting on the same activations, tuning activations, direction, seed and val_ratio, with the
    protocol switches that shape the intervention (shaping_switches). None when there is none."""
    from itictl.probe.step import ALL_QUESTIONS
    from itictl.publish.final import eval_settings

    direct = evals_of(store, intervention_art.key)
    if direct:
        return direct[-1]
    probes = ancestors(store, intervention_art).get("probes")
    p = intervention_art.params
    if probes is None or probes.params.get("fold") != ALL_QUESTIONS or "alpha" not in p:
        return None
    mine = intervention_switches(intervention_art, probes)
    matches = [ev for ev in evals_of_chain(store, probes.parents.get("activations"), intervention_art.parents.get("tuning"))
               if ev.params.get("direction", "com") == p.get("direction") and ev.params.get("seed") == p.get("seed")
               and float(ev.params.get("val_ratio", -1)) == float(probes.params.get("val_ratio", -2))
               and shaping_switches(ev.params) == mine and (int(p["heads"]), float(p["alpha"])) in eval_settings(ev)]
    return matches[-1] if matches else None


# Protocol switches (itictl.protocol) that change an all-questions intervention: the probes' backend,
# σ's questions and the top-K tie rule. split and val_draw only shape the folds (an all-questions fit
# has none: probe.step.split_all), mc_positions only how MC is scored.
SHAPING = ("backend", "sigma_from", "tie_break")


def shaping_switches(params: dict[str, Any]) -> dict[str, str]:
    """The SHAPING switches an eval's (or a tune's chain spec's) params stand for: explicit values,
    else the params' protocol's (keys hold a switch only when it is not itictl's)."""
    from itictl.protocol import resolve

    protocol = params.get("protocol") or "itictl"
    sw = resolve(protocol, check=False, **{k: params.get(k) for k in SHAPING})
    return {k: getattr(sw, k) for k in SHAPING}


def intervention_switches(intervention_art, probes) -> dict[str, str]:
    """The SHAPING switches an intervention was built with: its probes' backend, its sigma_from and
    tie_break (in params only when not itictl's)."""
    from itictl.protocol import SWITCHES

    p = intervention_art.params
    return {"backend": probes.params.get("backend", SWITCHES["backend"][0]),
            "sigma_from": p.get("sigma_from", SWITCHES["sigma_from"][0]),
            "tie_break": p.get("tie_break", SWITCHES["tie_break"][0])}


def evals_of_chain(store, acts_key: str | None, tuning_key: str | None) -> list:
    """Eval artifacts built on these activations and tuning activations, newest last."""
    return [a for a in store.ls(kind="eval") if acts_key and a.parents.get("activations") == acts_key
            and a.parents.get("tuning") == tuning_key]


def _ci(ci) -> str:
    return f"[{ci[0]:.4g}, {ci[1]:.4g}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""


def _delta(d) -> str:
    if not isinstance(d, dict) or d.get("delta") is None:
        return ""
    zero = "" if d.get("excludes_zero") else " (includes 0)"
    return f"{d['delta']:+.4g} {_ci(d.get('ci95'))}{zero}".strip()


def _setting_rows(doc: Any, heads, alpha) -> list[str] | None:
    """Table rows (metric, mean, 95 % CI, change vs α = 0) of one setting of an eval.json."""
    settings = doc.get("settings") if isinstance(doc, dict) else None
    s = next((x for x in settings or () if isinstance(x, dict) and heads is not None and alpha is not None
              and int(x.get("heads", -1)) == int(heads) and float(x.get("alpha", "nan")) == float(alpha)), None)
    if s is None or not isinstance(s.get("mean"), dict):
        return None
    ci, dl = s.get("ci95") or {}, s.get("delta_vs_alpha0") or {}
    return [f"| {m} | {v:.4g} | {_ci(ci.get(m))} | {_delta(dl.get(m))} |" for m, v in s["mean"].items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _eval_section(store, intervention_art, ev=None) -> list[str]:
    """The numbers of eval `ev` (the bake's source), else of the eval that measured this
    intervention (measured_by); nothing without one."""
    ev = ev if ev is not None else measured_by(store, intervention_art)
    if ev is None:
        return []
    doc = ev.read_json("eval.json") if "eval.json" in ev.manifest.files else None
    p = intervention_art.params
    rows = _setting_rows(doc, p.get("heads"), p.get("alpha"))
    refit = intervention_art.key not in ev.parents.values()
    n, folds = (doc or {}).get("n_questions"), len((doc or {}).get("folds") or ()) or ev.params.get("folds")
    how = (f"Measured on held-out folds by itictl eval `{ev.key}` (TruthfulQA, {n} questions, {folds}-fold cross-"
           f"validation: each fold's intervention, with the same K, α and direction, was fitted on the other folds'"
           f" questions and scored on its own fold; mean over folds).")
    if refit:
        how += (" The intervention shipped here was refitted on all questions afterwards, so it has no held-out"
                " score of its own: these numbers estimate it.")
    if rows:
        return ["", "## Evaluation", "", how, "", "| metric | mean | 95 % CI | change vs α = 0 (95 % CI) |",
                "|---|---|---|---|", *rows]
    rows_ev = _eval_rows(doc)
    if not rows_ev:
        return []
    return ["", "## Evaluation", "", how, "", "| metric | value |", "|---|---|", *(f"| {k} | {v:.4g} |" for k, v in rows_ev)]


def _loading_section(what: str, repo_id: str | None, notes: list[str] | tuple[str, ...]) -> list[str]:
    lines = ["", "## How to load", ""]
    if what == "baked-model":
        rid = repo_id or "path/to/this/folder"
        lines += [
            "A plain Hugging Face model folder; no custom code:",
            "",
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f'model = AutoModelForCausalLM.from_pretrained("{rid}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{rid}")',
            "```",
        ]
        lines += [f"\n{n}" for n in notes]
    else:
        lines += [
            "```python",
            "from safetensors.torch import load_file",
            'deltas = load_file("intervention.safetensors")  # layer.{l} -> [H*D]',
            "# add deltas[f'layer.{l}'] to the input of layer l's attention output projection",
            "```",
            "",
            "or with itictl: `itictl eval --intervention <this folder>`.",
        ]
    return lines
