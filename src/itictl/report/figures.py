"""The report's figures (matplotlib, Agg), each returned as a `data:image/png;base64,…` URI so the
HTML carries them inline: metrics against α with 95 % CIs, the layer × head probe-accuracy heatmap
with the chosen heads marked, and per-category changes against α = 0."""

from __future__ import annotations

import base64
import io
from typing import Any, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _series(settings: Sequence[dict[str, Any]], k: int, metric: str):
    """α, mean, lo, hi of metric for heads K (α = 0 prepended), or None when K never has it."""
    base = [s for s in settings if s["alpha"] == 0]
    rows = sorted(base + [s for s in settings if s["heads"] == k and s["alpha"] != 0], key=lambda s: s["alpha"])
    pts = [(s["alpha"], s["mean"].get(metric), (s.get("ci95") or {}).get(metric)) for s in rows]
    pts = [(a, m, ci) for a, m, ci in pts if m is not None]
    if not pts:
        return None
    xs = np.array([a for a, _, _ in pts])
    ys = np.array([m for _, m, _ in pts])
    lo = np.array([ci[0] if ci else m for _, m, ci in pts])
    hi = np.array([ci[1] if ci else m for _, m, ci in pts])
    return xs, ys, lo, hi


def metrics_vs_alpha(settings: Sequence[dict[str, Any]], metrics: Sequence[str], title: str) -> str | None:
    """One line per (metric, K) against α with its 95 % CI band; None when no metric is present."""
    ks = sorted({s["heads"] for s in settings if s["alpha"] != 0}) or [0]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    drawn = 0
    for metric in metrics:
        for k in ks:
            ser = _series(settings, k, metric)
            if ser is None:
                continue
            xs, ys, lo, hi = ser
            line, = ax.plot(xs, ys, "-o", label=f"{metric} (K={k})" if k else metric)
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("α")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return to_data_uri(fig)


def probe_heatmap(acc_LH: np.ndarray, heads: Sequence[Sequence[int]]) -> str:
    """Validation accuracy by layer (rows, bottom = 0) and head index (columns, not sorted), with the
    intervention's heads boxed in red."""
    from matplotlib.patches import Rectangle

    plt = _plt()
    a = np.asarray(acc_LH, dtype=float)
    L, H = a.shape
    fig, ax = plt.subplots(figsize=(max(4.5, 0.32 * H + 2.8), max(3.2, 0.2 * L + 1.4)))
    im = ax.imshow(a, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
    for l, h in heads:
        ax.add_patch(Rectangle((h - 0.5, l - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.8))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(f"probe validation accuracy; red: the {len(heads)} heads intervened on")
    fig.colorbar(im, ax=ax, label="accuracy")
    fig.tight_layout()
    return to_data_uri(fig)


def category_bars(rows: Sequence[dict[str, Any]], metric: str, setting: str) -> str | None:
    """Horizontal bars of each category's mean change of `metric` against α = 0 (n per category)."""
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, max(2.5, 0.24 * len(rows) + 1.2)))
    ys = np.arange(len(rows))
    deltas = [r["delta"] for r in rows]
    bars = ax.barh(ys, deltas, color=["#2b8a3e" if d > 0 else "#c92a2a" if d < 0 else "#868e96" for d in deltas])
    ax.bar_label(bars, labels=[f"{d:+.4f}" for d in deltas], fontsize=7, padding=2)
    ax.margins(x=0.15)
    ax.set_yticks(ys, [f"{r['category']} (n={r['n']})" for r in rows], fontsize=7)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"change of {metric} against α = 0")
    ax.set_title(f"per category, {setting}")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return to_data_uri(fig)
