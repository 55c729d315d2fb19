"""Reads a `tune` artifact (itictl tune) into a `ReportSource`: the outer test-fold scores (α = 0,
the tuned choice of each fold, the paper's K=48 α=15) with their CIs and paired changes as the
summary; the validation trials averaged over folds as the curves against α; the per-question rows
of the outer test trials (tuned vs α = 0); pareto.png inline; fold 0's chosen intervention and its
probes for the heatmap. Reads tune.json and the trial artifacts only (no import of itictl.tune)."""

from __future__ import annotations

import base64
from collections import defaultdict
from typing import Any

from itictl.errors import BadInputError
from itictl.report.eval_source import questions
from itictl.report.source import ReportSource, setting_name

CURVE_METRICS = ("MC1", "MC2", "MC3", "True", "Info", "True*Info", "CE Loss", "KL wrt Original")
PAPER = "paper (K=48, α=15)"


def _names(doc: dict[str, Any]) -> dict[str, str]:
    tuned = "; ".join(dict.fromkeys(s.get("label", "") for s in doc["outer"].get("tuned", {}).get("settings", [])))
    return {"alpha0": setting_name(0, 0.0), "tuned": f"tuned ({tuned})" if tuned else "tuned", "paper": PAPER}


def _settings(doc: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for group in ("alpha0", "tuned", "paper"):
        g = doc["outer"].get(group)
        if g is not None:
            out.append({"name": names[group], "alpha": 0.0 if group == "alpha0" else None, "mean": g.get("mean", {}),
                        "ci95": g.get("ci95", {}), "delta_vs_alpha0": g.get("delta_vs_alpha0", {})})
    return out


def _curves(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation trials: per (K, α), each metric's mean over the folds that tried it."""
    acc: dict[tuple[int, float], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for t in trials:
        if t.get("part") == "val":
            for m in CURVE_METRICS:
                if t.get(m) is not None:
                    acc[(int(t["heads"]), float(t["alpha"]))][m].append(float(t[m]))
    return [{"heads": k, "alpha": a, "mean": {m: sum(v) / len(v) for m, v in ms.items()}}
            for (k, a), ms in sorted(acc.items())]


def _test_trials(trials, names) -> dict[str, list[str]]:
    """Setting name -> keys of its outer test trials (one per fold)."""
    out: dict[str, list[str]] = defaultdict(list)
    for t in trials:
        if t.get("part") != "test":
            continue
        if float(t["alpha"]) == 0:
            out[names["alpha0"]].append(t["key"])
        elif t.get("chosen") in (True, "True", "true"):
            out[names["tuned"]].append(t["key"])
    return out


def _rows(store, keyed: dict[str, list[str]]) -> tuple[list[dict[str, Any]], dict[int, str]]:
    rows, fold0 = [], {}
    for name, keys in keyed.items():
        for key in keys:
            if not store.has(key):
                continue
            art = store.get(key)
            doc = art.read_json("trial.json")
            if int(doc.get("fold", -1)) == 0:
                fold0[name] = key
            rows.extend({**r, "setting": name} for r in doc.get("rows", []))
    return rows, fold0


def read_tune(store, art, ref: str, setting) -> ReportSource:
    if setting is not None:
        raise BadInputError("--setting is for eval reports", "a tune report shows the tuned setting of each fold")
    doc = art.read_json("tune.json")
    names = _names(doc)
    rows, fold0 = _rows(store, _test_trials(doc.get("trials", []), names))
    iv = probes = None
    tuned0 = fold0.get(names["tuned"])
    if tuned0:
        parents = store.get(tuned0).parents
        iv, probes = parents.get("intervention"), parents.get("probes")
    figs = []
    if "pareto.png" in art.manifest.files:
        raw = art.file("pareto.png").read_bytes()
        figs.append(("objective against KL per fold (tune's Pareto plot)",
                     "data:image/png;base64," + base64.b64encode(raw).decode("ascii")))
    m = art.manifest
    params = {**art.params, "chosen": doc.get("chosen", {}).get("label")}
    skipped = {"paper": doc["outer"]["paper_skipped"]} if doc["outer"].get("paper_skipped") else {}
    return ReportSource(
        key=art.key, kind=art.kind, ref=ref, params=params, settings=_settings(doc, names),
        curves=_curves(doc.get("trials", [])), per_question=rows, questions=questions(store, art),
        skipped=skipped,
        base=names["alpha0"], focus=names["tuned"] if rows else None, probes_key=probes, intervention_key=iv,
        figures=figs, created=str(m.doc.get("created", "")), version=str(m.doc.get("itictl_version", "")))
