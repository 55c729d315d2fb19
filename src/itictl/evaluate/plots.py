"""The sweep plot: MC2 and True×Info against α (one line per K), CE loss and KL on a second panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def import_in_background() -> None:
    """Import matplotlib (Agg) in a daemon thread: an eval that will draw the sweep plot at its end
    starts this before its GPU phases, which leave the main thread waiting (~0.6 s of import hidden)."""
    import threading

    def run() -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot  # noqa: F401
        except Exception:  # sweep_plot imports it again and reports any error
            pass

    threading.Thread(target=run, name="itictl-matplotlib", daemon=True).start()


def sweep_plot(results: Sequence[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = next((r for r in results if r["alpha"] == 0), None)
    ks = sorted({r["heads"] for r in results if r["alpha"] != 0})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k in ks:
        rows = sorted([r for r in results if r["heads"] == k and r["alpha"] != 0], key=lambda r: r["alpha"])
        if base is not None:
            rows = [base] + rows
        xs = [r["alpha"] for r in rows]
        for key, style in (("MC2", "-o"), ("True*Info", "--s")):
            ys = [r["mean"].get(key) for r in rows]
            if any(y is not None for y in ys):
                ax1.plot(xs, [float("nan") if y is None else y for y in ys], style, label=f"{key} K={k}")
        for key, style in (("CE Loss", "-o"), ("KL wrt Original", "--s")):
            ys = [r["mean"].get(key) for r in rows]
            if any(y is not None for y in ys):
                ax2.plot(xs, [float("nan") if y is None else y for y in ys], style, label=f"{key} K={k}")
    ax1.set_xlabel("alpha")
    ax1.set_ylabel("score")
    ax1.set_title("MC2 / True×Info (mean over folds)")
    ax2.set_xlabel("alpha")
    ax2.set_title("CE loss / KL wrt original")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
