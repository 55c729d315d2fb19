"""Heatmaps of per-head probe accuracy: a PNG (matplotlib, Agg) and a compact terminal rendering.

As in the ITI paper's figure, heads are sorted within each layer (best first), so each row shows
how a layer's accuracy is distributed rather than which head index holds it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHADES = " ░▒▓█"


def sorted_rows(acc_LH: np.ndarray) -> np.ndarray:
    """Each layer's accuracies sorted descending -> [L, H]."""
    return -np.sort(-np.asarray(acc_LH, dtype=float), axis=1)


def preload() -> None:
    """Start importing matplotlib (Agg) on a background thread, so that a later write_png does not
    wait for it: the import takes ~0.3-1 s, and the probe step has its data to read meanwhile."""
    import threading

    threading.Thread(target=_import_pyplot, name="itictl-pyplot-import", daemon=True).start()


def _import_pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_png(acc_LH: np.ndarray, path: Path, title: str = "probe validation accuracy") -> None:
    plt = _import_pyplot()

    a = sorted_rows(acc_LH)
    L, H = a.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.18 * H + 2.5), max(3.0, 0.16 * L + 1.5)), dpi=100)
    im = ax.imshow(a, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel("head (sorted by accuracy within each layer)")
    ax.set_ylabel("layer")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="accuracy")
    fig.tight_layout()
    # fixed metadata so the PNG bytes depend only on the data
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def text_rows(acc_LH: np.ndarray) -> list[str]:
    """One line per layer (top layer first): 'L 12 ▓▓▒▒░  0.71' with shades scaled min..max."""
    a = sorted_rows(acc_LH)
    lo, hi = float(a.min()), float(a.max())
    span = hi - lo if hi > lo else 1.0
    lines = []
    for layer in range(a.shape[0] - 1, -1, -1):
        idx = np.clip(((a[layer] - lo) / span * (len(SHADES) - 1)).round().astype(int), 0, len(SHADES) - 1)
        cells = "".join(SHADES[i] for i in idx)
        lines.append(f"L{layer:>3} {cells} {a[layer, 0]:.2f}")
    lines.append(f"     shades: '{SHADES[0]}'={lo:.2f} .. '{SHADES[-1]}'={hi:.2f} (number: the layer's best head)")
    return lines
