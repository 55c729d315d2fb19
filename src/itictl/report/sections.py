"""The report's tables, computed from a `ReportSource` (no drawing, no HTML): the summary rows
(mean, 95 % CI, paired change against α = 0 and its CI per setting and metric), the per-category
changes of the focus setting, and the sample of answers unsteered vs steered with judge verdicts."""

from __future__ import annotations

import random
from typing import Any, Sequence

from itictl.report.source import ReportSource

METRIC_ORDER = ("MC1", "MC2", "MC3", "True", "Info", "True*Info", "True prob", "Info prob", "BLEU acc",
                "ROUGE-1 acc", "ROUGE-L acc", "CE Loss", "KL wrt Original")
CATEGORY_METRICS = ("MC2", "True", "MC1", "Info", "BLEU acc", "ROUGE-L acc")


def _ci(ci) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "–"


def metrics_present(settings: Sequence[dict[str, Any]]) -> list[str]:
    seen = {m for s in settings for m, v in s["mean"].items() if v is not None}
    return [m for m in METRIC_ORDER if m in seen] + sorted(seen - set(METRIC_ORDER))


def summary_table(settings: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(metrics, rows): one row per setting, one cell per metric (None where the setting has no
    value) with mean, CI, and for α ≠ 0 the paired change against α = 0 and its CI."""
    metrics = metrics_present(settings)
    rows = []
    for s in settings:
        ci, deltas = s.get("ci95") or {}, s.get("delta_vs_alpha0") or {}
        cells = []
        for m in metrics:
            v, d = s["mean"].get(m), deltas.get(m) or {}
            cells.append(None if v is None else {
                "metric": m, "mean": f"{v:.4f}", "ci": _ci(ci.get(m)),
                "delta": None if d.get("delta") is None else f"{d['delta']:+.4f}",
                "delta_ci": _ci(d.get("ci95")), "significant": bool(d.get("excludes_zero"))})
        rows.append({"setting": s["name"], "base": s["alpha"] == 0, "cells": cells})
    return metrics, rows


def _by_question(rows, setting: str) -> dict[tuple[int, int], dict[str, Any]]:
    return {(r["fold"], r["question_index"]): r for r in rows if r["setting"] == setting}


def _pairs(src: ReportSource):
    """(baseline row, focus row) per question present in both, in question order."""
    if src.focus is None or src.base is None:
        return []
    b, f = _by_question(src.per_question, src.base), _by_question(src.per_question, src.focus)
    return [(b[k], f[k]) for k in sorted(set(b) & set(f), key=lambda k: (k[1], k[0]))]


def category_rows(src: ReportSource) -> tuple[str | None, list[dict[str, Any]]]:
    """(metric, rows sorted by change): per category, n questions and the mean change of the first
    metric of CATEGORY_METRICS both settings have."""
    pairs = _pairs(src)
    metric = next((m for m in CATEGORY_METRICS
                   if pairs and all(b.get(m) is not None and f.get(m) is not None for b, f in pairs)), None)
    if metric is None:
        return None, []
    groups: dict[str, list[tuple[float, float]]] = {}
    for b, f in pairs:
        groups.setdefault(b.get("category") or "(none)", []).append((b[metric], f[metric]))
    rows = [{"category": c, "n": len(v), "base": sum(x for x, _ in v) / len(v),
             "steered": sum(y for _, y in v) / len(v), "delta": sum(y - x for x, y in v) / len(v)}
            for c, v in groups.items()]
    return metric, sorted(rows, key=lambda r: (r["delta"], r["category"]))


def _verdict(row: dict[str, Any]) -> str:
    parts = []
    for name in ("True", "Info"):
        if row.get(name) is not None:
            p = row.get(f"{name} prob")
            ok = "yes" if row[name] >= 0.5 else "no"
            parts.append(f"{name.lower()}: {ok}" + (f" ({p:.2f})" if p is not None else ""))
    return "; ".join(parts)


def answer_samples(src: ReportSource, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Up to n questions (seeded sample, question order) with both answers and their verdicts."""
    pairs = [(b, f) for b, f in _pairs(src) if b.get("answer") is not None and f.get("answer") is not None]
    if len(pairs) > n:
        keep = sorted(random.Random(seed).sample(range(len(pairs)), n))
        pairs = [pairs[i] for i in keep]
    return [{"question_index": b["question_index"], "category": b.get("category", ""),
             "question": src.questions.get(b["question_index"], ""), "base": b["answer"], "steered": f["answer"],
             "base_verdict": _verdict(b), "steered_verdict": _verdict(f), "changed": b["answer"] != f["answer"]}
            for b, f in pairs]
