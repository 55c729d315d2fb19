"""Uncertainty of eval results: 95 % percentile-bootstrap confidence intervals of every reported
mean and paired-bootstrap intervals of every α ≠ 0 setting's change against α = 0.

Owns `bootstrap_ci`, `paired_delta` (the primitives), `setting_stats` (one setting's `ci95` and
`delta_vs_alpha0` from its per-question rows and per-sample CE/KL values) and `attach` (all
settings of an eval). Method (docs/eval.md): 10,000 resamples, seeded, percentile interval.
Question metrics are resampled within each fold (the reported mean is the mean of fold means, so
the bootstrap statistic is that same mean of fold means); a paired interval applies the same
resampled questions to the setting and to α = 0, so its point value equals the difference of the
two reported means. True*Info is recomputed from the resampled True and Info means. CE/KL are per
text sample (the same samples in every fold and setting): a sample's value is its mean over the
folds' interventions, and the interval resamples samples (paired for the change against α = 0).
Missing values (NaN) are left out of each resample's mean.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

N_RESAMPLES = 10_000
LEVEL = 0.95
QUESTION_METRICS = ("MC1", "MC2", "MC3", "True", "Info", "True prob", "Info prob", "BLEU acc", "ROUGE-1 acc",
                    "ROUGE-L acc")
SAMPLE_METRICS = {"ce": "CE Loss", "kl": "KL wrt Original"}


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN resample gives NaN, dropped later
        return np.nanmean(a, axis=axis)


def _fold_indices(sizes: Sequence[int], n_resamples: int, seed: int) -> list[np.ndarray]:
    """Per fold, how often each question is drawn in each resample [n_resamples, n_fold] (seeded;
    n_fold draws with replacement per resample; the same for every setting of a run)."""
    return _fold_counts(tuple(int(n) for n in sizes), int(n_resamples), int(seed))


@functools.lru_cache(maxsize=2)  # the question folds and the text samples of one run
def _fold_counts(sizes: tuple[int, ...], n_resamples: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        ix = rng.integers(0, n, size=(n_resamples, n)) if n else np.zeros((n_resamples, 0), np.int64)
        flat = (ix + np.arange(n_resamples)[:, None] * n).ravel()
        out.append(np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64))
    return out


def _stat(groups: Sequence[np.ndarray], idx: Sequence[np.ndarray] | None) -> np.ndarray:
    """Mean over groups of each group's (resampled) NaN-skipping mean: [n_resamples] (or [1] for
    idx None, the point value). `idx`: per group, draw counts [n_resamples, n_group]."""
    per = []
    for gi, v in enumerate(groups):
        w = np.ones((1, len(v))) if idx is None else idx[gi]
        ok = ~np.isnan(v)
        with np.errstate(invalid="ignore", divide="ignore"):
            den = float(v.shape[0]) if ok.all() else w @ ok.astype(np.float64)  # draws per resample = n
            per.append((w @ np.where(ok, v, 0.0)) / den)
    return _nanmean(np.stack(per), axis=0)


def percentile_ci(dist: np.ndarray, level: float = LEVEL) -> list[float] | None:
    d = np.asarray(dist, dtype=np.float64)
    d = d[~np.isnan(d)]
    if not len(d):
        return None
    q = (1 - level) / 2 * 100
    lo, hi = np.percentile(d, [q, 100 - q])
    return [float(lo), float(hi)]


def bootstrap_ci(values: Sequence[float] | np.ndarray, *, groups: Sequence[int] | None = None,
                 n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = LEVEL) -> list[float] | None:
    """Percentile bootstrap CI of the mean (of group means when `groups` labels each value)."""
    v = np.asarray(values, dtype=np.float64)
    g = np.zeros(len(v), dtype=int) if groups is None else np.asarray(groups)
    parts = [v[g == k] for k in np.unique(g)]
    idx = _fold_indices([len(p) for p in parts], n_resamples, seed)
    return percentile_ci(_stat(parts, idx), level)


def paired_delta(values: Sequence[float] | np.ndarray, base: Sequence[float] | np.ndarray, *,
                 groups: Sequence[int] | None = None, n_resamples: int = N_RESAMPLES, seed: int = 0,
                 level: float = LEVEL) -> dict[str, Any]:
    """Change of the mean of `values` against `base` (paired: position i of both is the same
    question or sample), with the paired percentile bootstrap CI and whether it excludes 0."""
    v, b = np.asarray(values, dtype=np.float64), np.asarray(base, dtype=np.float64)
    g = np.zeros(len(v), dtype=int) if groups is None else np.asarray(groups)
    keys = np.unique(g)
    pv, pb = [v[g == k] for k in keys], [b[g == k] for k in keys]
    idx = _fold_indices([len(p) for p in pv], n_resamples, seed)
    delta = float(_stat(pv, None)[0] - _stat(pb, None)[0])
    return _delta_doc(delta, _stat(pv, idx) - _stat(pb, idx), level)


def _delta_doc(delta: float, dist: np.ndarray, level: float) -> dict[str, Any]:
    ci = percentile_ci(dist, level)
    return {"delta": None if math.isnan(delta) else delta, "ci95": ci,
            "excludes_zero": bool(ci is not None and (ci[0] > 0 or ci[1] < 0))}


def _question_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[int, int]], dict[str, np.ndarray]]:
    """(fold, question_index) keys in order and one float column per question metric present."""
    rows = sorted(rows, key=lambda r: (r["fold"], r["question_index"]))
    keys = [(int(r["fold"]), int(r["question_index"])) for r in rows]
    cols = {}
    for m in QUESTION_METRICS:
        if any(r.get(m) is not None for r in rows):
            cols[m] = np.array([np.nan if r.get(m) is None else float(r[m]) for r in rows])
    return keys, cols


def _question_dists(cols: Mapping[str, np.ndarray], folds: np.ndarray, idx) -> dict[str, np.ndarray]:
    """Per metric, the statistic (mean of fold means) under `idx` (None: the point value); all
    metrics in one product per fold."""
    if not cols:
        return {}
    names, ks = list(cols), np.unique(folds)
    mat = np.stack([cols[m] for m in names], axis=1)  # [questions, metrics]
    per = []  # per fold [resamples, metrics]
    for gi, k in enumerate(ks):
        v = mat[folds == k]
        w = np.ones((1, len(v))) if idx is None else idx[gi]
        ok = ~np.isnan(v)
        with np.errstate(invalid="ignore", divide="ignore"):
            den = float(v.shape[0]) if ok.all() else w @ ok.astype(np.float64)  # draws per resample = n
            per.append((w @ np.where(ok, v, 0.0)) / den)
    fold_means = np.stack(per)  # [folds, resamples, metrics]
    out = {m: _nanmean(fold_means[:, :, j], axis=0) for j, m in enumerate(names)}
    if "True" in cols and "Info" in cols:  # True*Info = mean over folds of (fold True × fold Info)
        t, i = names.index("True"), names.index("Info")
        out["True*Info"] = _nanmean(fold_means[:, :, t] * fold_means[:, :, i], axis=0)
    return out


def _question_stats(rows, base_rows, n_resamples: int, seed: int, level: float) -> tuple[dict, dict]:
    keys, cols = _question_table(rows)
    if not keys:
        return {}, {}
    folds = np.array([f for f, _ in keys])
    sizes = [int((folds == k).sum()) for k in np.unique(folds)]
    idx = _fold_indices(sizes, n_resamples, seed)
    ci = {m: percentile_ci(d, level) for m, d in _question_dists(cols, folds, idx).items()}
    if base_rows is None:
        return ci, {}
    bkeys, bcols = _question_table(base_rows)
    if bkeys != keys:  # paired only over the very same questions
        common = sorted(set(keys) & set(bkeys))
        if not common:
            return ci, {}
        pos, bpos = {k: i for i, k in enumerate(keys)}, {k: i for i, k in enumerate(bkeys)}
        cols = {m: c[[pos[k] for k in common]] for m, c in cols.items()}
        bcols = {m: c[[bpos[k] for k in common]] for m, c in bcols.items()}
        folds = np.array([f for f, _ in common])
        idx = _fold_indices([int((folds == k).sum()) for k in np.unique(folds)], n_resamples, seed)
    shared = {m: c for m, c in cols.items() if m in bcols}
    bshared = {m: bcols[m] for m in shared}
    point, bpoint = _question_dists(shared, folds, None), _question_dists(bshared, folds, None)
    dist, bdist = _question_dists(shared, folds, idx), _question_dists(bshared, folds, idx)
    return ci, {m: _delta_doc(float(point[m][0] - bpoint[m][0]), dist[m] - bdist[m], level) for m in point}


def _sample_values(per_fold: Mapping[int, Mapping[str, Sequence[float]]], which: str) -> np.ndarray | None:
    """Per text sample, its mean over the folds' values."""
    vals = [np.asarray(f[which], dtype=np.float64) for f in per_fold.values() if f.get(which) is not None]
    return np.mean(np.stack(vals), axis=0) if vals else None


def _sample_stats(samples, base_samples, n_resamples: int, seed: int, level: float) -> tuple[dict, dict]:
    ci, delta = {}, {}
    for which, name in SAMPLE_METRICS.items():
        v = _sample_values(samples or {}, which)
        if v is None:
            continue
        ci[name] = bootstrap_ci(v, n_resamples=n_resamples, seed=seed, level=level)
        b = _sample_values(base_samples, which) if base_samples else None
        if b is not None and len(b) == len(v):
            delta[name] = paired_delta(v, b, n_resamples=n_resamples, seed=seed, level=level)
    return ci, delta


def setting_stats(rows: Sequence[Mapping[str, Any]], samples: Mapping[int, Mapping[str, Sequence[float]]] | None,
                  base_rows: Sequence[Mapping[str, Any]] | None = None,
                  base_samples: Mapping[int, Mapping[str, Sequence[float]]] | None = None, *,
                  n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict[str, Any]:
    """{"ci95": {metric: [lo, hi]}} and, with a baseline, {"delta_vs_alpha0": {metric: {delta,
    ci95, excludes_zero}}}. `rows`: per-question rows (fold, question_index, metric columns);
    `samples`: {fold: {"ce": [per sample], "kl": [...]}}."""
    qci, qdelta = _question_stats(rows, base_rows, n_resamples, seed, level)
    sci, sdelta = _sample_stats(samples, base_samples, n_resamples, seed, level)
    out: dict[str, Any] = {"ci95": {**qci, **sci}}
    if base_rows is not None or base_samples is not None:
        out["delta_vs_alpha0"] = {**qdelta, **sdelta}
    return out


def attach(results: list[dict[str, Any]], rows: Sequence[Mapping[str, Any]],
           samples: Mapping[tuple[int, float], Mapping[int, Mapping[str, Sequence[float]]]], *,
           n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = LEVEL) -> None:
    """Add `ci95` to every setting of `results` (evaluate_grid's list) and `delta_vs_alpha0` to
    every α ≠ 0 setting when the run has an α = 0 setting."""
    by: dict[tuple[int, float], list] = {}
    for r in rows:
        by.setdefault((int(r["heads"]), float(r["alpha"])), []).append(r)
    base = next(((s["heads"], s["alpha"]) for s in results if s["alpha"] == 0), None)
    for s in results:
        key = (int(s["heads"]), float(s["alpha"]))
        paired = base is not None and s["alpha"] != 0
        bkey = (int(base[0]), float(base[1])) if paired else None
        s.update(setting_stats(by.get(key, []), samples.get(key), by.get(bkey) if paired else None,
                               samples.get(bkey) if paired else None,
                               n_resamples=n_resamples, seed=seed, level=level))
