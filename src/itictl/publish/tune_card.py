"""The model card's tuning section: which `itictl tune` chose the setting of an all-questions
intervention, and that tune's outer-fold (nested CV) test scores with 95 % CIs.

Owns `tuned_by` (the newest tune whose chosen setting, activations, tuning activations, seed,
val_ratio and intervention-shaping protocol switches are those of the intervention, when the bake
did not say which tune it came from) and
`tune_section` (the Markdown lines publish.modelcard.render_card adds).
"""

from __future__ import annotations

from typing import Any

OUTER_HOW = ("nested cross-validation: in each outer fold the setting was chosen on validation questions of the"
             " fold's training questions and scored on its held-out test fold")


def _doc(tune_art) -> dict[str, Any] | None:
    if "tune.json" not in tune_art.manifest.files:
        return None
    doc = tune_art.read_json("tune.json")
    return doc if isinstance(doc, dict) and isinstance(doc.get("chosen"), dict) else None


def _matches(doc: dict[str, Any], intervention_art, probes) -> bool:
    from itictl.publish.modelcard import intervention_switches, shaping_switches

    c, chain, p = doc["chosen"], doc.get("chain") or {}, intervention_art.params
    spec = chain.get("spec") or {}
    try:
        return (chain.get("activations_key") == probes.parents.get("activations")
                and chain.get("tuning_key") == intervention_art.parents.get("tuning")
                and int(c["heads"]) == int(p["heads"]) and float(c["alpha"]) == float(p["alpha"])
                and str(c.get("direction")) == str(p.get("direction")) and spec.get("seed") == p.get("seed")
                and float(spec.get("val_ratio", -1)) == float(probes.params.get("val_ratio", -2))
                and shaping_switches(spec) == intervention_switches(intervention_art, probes))
    except (KeyError, TypeError, ValueError):
        return False


def tuned_by(store, intervention_art):
    """-> (tune artifact, tune.json) of the newest tune that chose this all-questions intervention's
    setting on the same chain, or None."""
    from itictl.probe.step import ALL_QUESTIONS
    from itictl.publish.modelcard import ancestors

    probes = ancestors(store, intervention_art).get("probes")
    if probes is None or probes.params.get("fold") != ALL_QUESTIONS or "alpha" not in intervention_art.params:
        return None
    found = [(t, doc) for t in store.ls(kind="tune")  # newest last
             if (doc := _doc(t)) is not None and _matches(doc, intervention_art, probes)]
    return found[-1] if found else None


def _ci(ci) -> str:
    return f"[{ci[0]:.4g}, {ci[1]:.4g}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""


def _delta(d) -> str:
    if not isinstance(d, dict) or d.get("delta") is None:
        return ""
    zero = "" if d.get("excludes_zero") else " (includes 0)"
    return f"{d['delta']:+.4g} {_ci(d.get('ci95'))}{zero}".strip()


def _budget(doc: dict[str, Any]) -> str:
    b = doc.get("budget")
    if not isinstance(b, dict):
        return "no budget"
    name = {"kl": "KL wrt Original", "ce": "CE increase"}.get(str(b.get("metric")), str(b.get("metric")))
    return f"budget {name} ≤ {b.get('max'):g}"


def tune_section(store, intervention_art, tune=None) -> list[str]:
    """## Tuning: the tune that chose this setting (`tune`, the bake's source, else tuned_by) and its
    outer-fold scores; nothing without one."""
    doc = _doc(tune) if tune is not None else None
    found = (tune, doc) if doc is not None else tuned_by(store, intervention_art)
    if found is None:
        return []
    tune, doc = found
    c = doc["chosen"]
    folds = len(doc.get("folds") or ()) or tune.params.get("folds")
    lines = ["", "## Tuning", "",
             f"Setting chosen by itictl tune `{tune.key}` (nested CV: {folds} outer folds, {doc.get('search')} "
             f"search; objective {doc.get('objective_metric') or doc.get('objective')}, {_budget(doc)}): "
             f"K={c['heads']} α={float(c['alpha']):g} direction {c.get('direction')}, chosen with the same rule on "
             f"validation scores over the folds and refitted on all questions here. The scores below are the "
             f"outer folds' test scores ({OUTER_HOW}); each fold's own choice is scored, so they estimate the "
             f"tuning procedure, not this exact intervention."]
    tuned = (doc.get("outer") or {}).get("tuned")
    if not isinstance(tuned, dict) or not isinstance(tuned.get("mean"), dict):
        return lines
    paper = "delta_vs_paper" in tuned
    ci, d0, dp = tuned.get("ci95") or {}, tuned.get("delta_vs_alpha0") or {}, tuned.get("delta_vs_paper") or {}
    head = "| metric | outer-fold mean | 95 % CI | change vs α = 0 (95 % CI) |" + (" change vs K=48 α=15 |" if paper else "")
    lines += ["", head, "|---|---|---|---|" + ("---|" if paper else "")]
    for m, v in tuned["mean"].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            lines.append(f"| {m} | {v:.4g} | {_ci(ci.get(m))} | {_delta(d0.get(m))} |"
                         + (f" {_delta(dp.get(m))} |" if paper else ""))
    return lines
