"""The Pareto plot of a tune: validation objective against KL wrt the original model, one colour per
outer fold, every trial a dot, the fold's Pareto front joined, its chosen setting starred, the KL
budget (when there is one) a dashed line. matplotlib with the Agg backend (no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from itictl.tune.select import KL


def pareto_plot(doc: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [r for r in doc["trials"] if r["part"] == "val" and r.get(KL) is not None and r.get("objective") is not None]
    for i, f in enumerate(doc["folds"]):
        color = f"C{i % 10}"
        mine = [r for r in rows if r["fold"] == f["fold"]]
        ax.scatter([r[KL] for r in mine], [r["objective"] for r in mine], s=18, color=color, alpha=0.55,
                   label=f"fold {f['fold']} trials")
        front = sorted((r for r in mine if r["pareto"]), key=lambda r: r[KL])
        ax.plot([r[KL] for r in front], [r["objective"] for r in front], "-", color=color, lw=1.2)
        for r in mine:
            if r["chosen"]:
                ax.scatter([r[KL]], [r["objective"]], marker="*", s=220, color=color, edgecolor="black", zorder=5,
                           label=f"fold {f['fold']} chosen: {f['chosen']['label']}")
    b = doc.get("budget")
    if b and b["metric"] == "kl":
        ax.axvline(b["max"], ls="--", color="grey", lw=1, label=f"KL budget {b['max']:g}")
    ax.set_xlabel("KL wrt original (natural text)")
    ax.set_ylabel(f"{doc['objective_metric']} (validation questions)")
    ax.set_title("tune: objective vs KL (Pareto front per outer fold)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
