"""The tune document and payload: the trials table, each fold's choice and Pareto front, the outer
test scores with CIs (evaluate/stats.py: questions resampled within folds, CE/KL over text samples)
and paired changes against α = 0 and against the paper's K=48 α=15, the final setting for bake.

Payload: tune.json (this document), trials.csv (one row per trial), pareto.png (objective vs KL per
fold, Pareto front joined, each fold's choice marked; only when KL was measured).
"""

from __future__ import annotations

import csv
import json
from typing import Any

from itictl.tune import select
from itictl.tune.space import BASELINE, label

TRIAL_COLUMNS = ("fold", "part", "heads", "alpha", "direction", "objective", "MC1", "MC2", "True*Info", "CE Loss",
                 "CE increase", "KL wrt Original", "feasible", "pareto", "chosen", "key")


def _setting(s) -> dict[str, Any]:
    return {"heads": s.heads, "alpha": s.alpha, "direction": s.direction, "label": label(s)}


def trial_rows(tuner) -> list[dict[str, Any]]:
    obj, budget = tuner.opts.objective_metric(), tuner.opts.budget()
    fronts = {i: set(select.pareto(tuner.entries(i, "val", ss), obj)) for i, ss in tuner.searched.items()}
    rows = []
    for (i, part, s), t in tuner.trials.items():
        m, base = t.metrics, tuner.base_ce(i, part)
        ce = m.get(select.CE)
        rows.append({"fold": i, "part": part, "heads": s.heads, "alpha": s.alpha, "direction": s.direction,
                     "objective": m.get(obj), "MC1": m.get("MC1"), "MC2": m.get("MC2"), "True*Info": m.get("True*Info"),
                     "CE Loss": ce, "CE increase": None if ce is None or base is None else ce - base,
                     select.KL: m.get(select.KL), "feasible": select.feasible(m, budget, base),
                     "pareto": part == "val" and s in fronts.get(i, ()), "chosen": tuner.chosen.get(i) == s,
                     "key": t.key})
    return rows


def _pool(trials) -> tuple[list[dict], dict[int, dict]]:
    """Per-question rows and {fold: per-sample CE/KL} of one trial per fold."""
    rows = [r for t in trials for r in t.doc["rows"]]
    return rows, {t.fold: t.doc["samples"] for t in trials if t.doc["samples"]}


def _mean(trials, key):
    vals = [t.metrics.get(key) for t in trials]
    return None if not vals or None in vals else sum(vals) / len(vals)


def outer_doc(tuner, folds) -> dict[str, Any]:
    """Test-fold scores: tuned (each fold's choice), α = 0, paper; CIs and paired deltas."""
    from itictl.evaluate import stats

    seed = tuner.spec.seed
    groups = {"tuned": [tuner.trials[(f.index, "test", tuner.chosen[f.index])] for f in folds],
              "alpha0": [tuner.trials[(f.index, "test", BASELINE)] for f in folds]}
    paper = tuner.paper()
    if paper is not None:
        groups["paper"] = [tuner.trials[(f.index, "test", paper)] for f in folds]
    pooled = {name: _pool(ts) for name, ts in groups.items()}
    keys = sorted({k for ts in groups.values() for t in ts for k in t.metrics})
    doc: dict[str, Any] = {}
    for name, ts in groups.items():
        rows, samples = pooled[name]
        base = pooled["alpha0"] if name != "alpha0" else (None, None)
        s = stats.setting_stats(rows, samples, base[0], base[1], seed=seed)
        entry = {"folds": [t.metrics for t in ts], "mean": {k: _mean(ts, k) for k in keys}, "ci95": s["ci95"],
                 "settings": [_setting(t.setting) for t in ts]}
        if name != "alpha0":
            entry["delta_vs_alpha0"] = s["delta_vs_alpha0"]
        if name == "tuned" and "paper" in pooled:
            entry["delta_vs_paper"] = stats.setting_stats(rows, samples, *pooled["paper"], seed=seed)["delta_vs_alpha0"]
        doc[name] = entry
    if paper is None:
        doc["paper_skipped"] = f"K=48 is more than the model's {tuner.n_heads_total} heads"
    return doc


def build_doc(tuner, folds, final, *, spec, model_key: str) -> dict[str, Any]:
    from itictl.tune.run import spec_doc

    o = tuner.opts
    obj = o.objective_metric()
    fold_docs = []
    for f in folds:
        ss = tuner.searched[f.index]
        fold_docs.append({"fold": f.index, "n_train": len(f.ids["train"]), "n_val": len(f.ids["val"]),
                          "n_test": len(f.ids["test"]), "chosen": _setting(tuner.chosen[f.index]),
                          "pareto": [_setting(s) for s in select.pareto(tuner.entries(f.index, "val", ss), obj)]})
    budget = o.budget()
    return {"objective": o.objective, "objective_metric": obj,
            "budget": None if budget is None else {"metric": budget[0], "max": budget[1]},
            "search": o.search, "space": tuner.plan.space.doc(), "n_questions": tuner.plan.n,
            "selection": "validation questions of each outer fold's probes (test fold never seen)",
            "folds": fold_docs, "trials": trial_rows(tuner), "outer": outer_doc(tuner, folds),
            "chosen": {"heads": final.heads, "alpha": final.alpha, "direction": final.direction,
                       "label": label(final), "bakeable": final != BASELINE},
            "chain": {"spec": spec_doc(spec), "model_key": model_key, "activations_key": tuner.base.activations.key,
                      "tuning_key": tuner.base.tuning.key}}


def write_payload(ctx, doc: dict[str, Any]) -> None:
    ctx.meta.update({"chosen": {k: doc["chosen"][k] for k in ("heads", "alpha", "direction")}})  # as an eval's
    (ctx.out / "tune.json").write_text(json.dumps(doc, indent=1, default=float), encoding="utf-8")
    with open(ctx.out / "trials.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(TRIAL_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in doc["trials"]:
            w.writerow(r)
    if any(r.get(select.KL) is not None for r in doc["trials"]):
        from itictl.tune.plots import pareto_plot

        pareto_plot(doc, ctx.out / "pareto.png")
