"""Choosing under a budget: feasibility, the choice rule and the Pareto front (no store, no model).

A trial is feasible when its budget metric is within the limit: KL wrt the original model ≤
--max-kl, or CE − CE(α = 0) ≤ --max-ce-increase (both on the natural-text samples); without a
budget every trial is. The choice is the feasible trial with the highest objective; ties go to the
smaller change: lower KL, then smaller |α|, then fewer heads, then the direction's name. The
baseline (α = 0, KL 0) is always feasible, so there is always a choice. The Pareto front keeps the
trials no other trial beats on both objective (higher) and KL (lower).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

KL = "KL wrt Original"
CE = "CE Loss"


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def violation(metrics: dict[str, Any], budget: tuple[str, float] | None, base_ce: float | None) -> float | None:
    """How far over the budget (≤ 0: within it); None without a budget or a measurement."""
    if budget is None:
        return None
    which, limit = budget
    if which == "kl":
        kl = _num(metrics.get(KL))
        return None if kl is None else kl - limit
    ce = _num(metrics.get(CE))
    return None if ce is None or base_ce is None else (ce - base_ce) - limit


def feasible(metrics: dict[str, Any], budget: tuple[str, float] | None, base_ce: float | None) -> bool:
    v = violation(metrics, budget, base_ce)
    return budget is None or (v is not None and v <= 1e-12)


def rank_key(metrics: dict[str, Any], setting, objective: str) -> tuple:
    """Sort key: best first (higher objective, then lower KL, smaller |α|, fewer heads)."""
    obj = _num(metrics.get(objective))
    kl = _num(metrics.get(KL))
    return (-(obj if obj is not None else -math.inf), kl if kl is not None else math.inf,
            abs(setting.alpha), setting.heads, setting.direction)


def choose(entries: Sequence[tuple[Any, dict[str, Any]]], objective: str, budget, base_ce) -> Any:
    """The chosen setting among (setting, metrics) entries (the baseline, α = 0, when nothing beats it)."""
    ok = [(s, m) for s, m in entries if feasible(m, budget, base_ce) and _num(m.get(objective)) is not None]
    if not ok:
        ok = [(s, m) for s, m in entries if s.alpha == 0]
    return min(ok, key=lambda e: rank_key(e[1], e[0], objective))[0]


def pareto(entries: Sequence[tuple[Any, dict[str, Any]]], objective: str) -> list[Any]:
    """Settings on the front of (objective ↑, KL ↓), by increasing KL (those without both: left out)."""
    pts = [(s, _num(m.get(objective)), _num(m.get(KL))) for s, m in entries]
    pts = [p for p in pts if p[1] is not None and p[2] is not None]
    front = []
    for s, o, k in pts:
        beaten = any((o2 >= o and k2 <= k) and (o2 > o or k2 < k) for _, o2, k2 in pts)
        if not beaten:
            front.append((k, -o, s))
    return [s for _, _, s in sorted(front, key=lambda t: (t[0], t[1]))]
