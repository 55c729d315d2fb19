"""Heatmaps of per-head probe accuracy: a PNG (drawn with Pillow) and a compact terminal rendering.

As in the ITI paper's figure, heads are sorted within each layer (best first), so each row shows
how a layer's accuracy is distributed rather than which head index holds it. The PNG is drawn
directly with Pillow (cells, axis ticks, labels, a colour bar with its range) rather than through
matplotlib, whose import and layout cost more than the rest of the probe step on a CPU; its bytes
depend only on the accuracies and the title.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHADES = " ░▒▓█"
# viridis at 0, 1/4, 1/2, 3/4, 1 (its published colour stops), interpolated linearly between them
STOPS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)
INK, PAPER = (0, 0, 0), (255, 255, 255)


def sorted_rows(acc_LH: np.ndarray) -> np.ndarray:
    """Each layer's accuracies sorted descending -> [L, H]."""
    return -np.sort(-np.asarray(acc_LH, dtype=float), axis=1)


def colours(t: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (NaN: grey) -> uint8 RGB [..., 3] on the viridis stops."""
    t = np.asarray(t, dtype=np.float64)
    x = np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0) * (len(STOPS) - 1)
    i = np.minimum(x.astype(int), len(STOPS) - 2)
    f = (x - i)[..., None]
    rgb = STOPS[i] * (1 - f) + STOPS[i + 1] * f
    rgb[np.isnan(t)] = 160
    return rgb.round().astype(np.uint8)


def write_png(acc_LH: np.ndarray, path: Path, title: str = "probe validation accuracy") -> None:
    """The heatmap: layer 0 at the bottom, heads sorted within each layer, a colour bar from the
    lowest to the highest accuracy."""
    from PIL import Image, ImageDraw, ImageFont

    a = sorted_rows(acc_LH)
    L, H = a.shape
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    span = hi - lo if hi > lo else 1.0
    cw, ch = max(4, min(40, 480 // H)), max(3, min(24, 360 // L))
    x0, y0, gw, gh = 56, 34, cw * H, ch * L
    img = Image.new("RGB", (x0 + gw + 110, y0 + gh + 48), PAPER)
    cells = colours((a[::-1] - lo) / span)  # top row = last layer
    img.paste(Image.fromarray(np.repeat(np.repeat(cells, ch, 0), cw, 1)), (x0, y0))
    bar = colours(np.linspace(1, 0, gh))[:, None, :].repeat(14, 1)
    bx = x0 + gw + 18
    img.paste(Image.fromarray(np.ascontiguousarray(bar)), (bx, y0))
    d, font = ImageDraw.Draw(img), ImageFont.load_default(size=11)
    d.rectangle((x0 - 1, y0 - 1, x0 + gw, y0 + gh), outline=INK)
    d.rectangle((bx - 1, y0 - 1, bx + 14, y0 + gh), outline=INK)
    d.text((x0, 8), title, fill=INK, font=ImageFont.load_default(size=13))
    step = max(1, -(-L // 12))
    for layer in range(0, L, step):
        y = y0 + gh - (layer + 0.5) * ch
        d.line((x0 - 4, y, x0 - 1, y), fill=INK)
        d.text((x0 - 6, y), str(layer), fill=INK, font=font, anchor="rm")
    d.text((8, y0 + gh / 2), "layer", fill=INK, font=font, anchor="lm")
    d.text((x0 + gw / 2, y0 + gh + 8), "head (sorted by accuracy within each layer)", fill=INK, font=font,
           anchor="ma")
    for y, v in ((y0, hi), (y0 + gh, lo)):
        d.text((bx + 18, y), f"{v:.3f}", fill=INK, font=font, anchor="lm")
    d.text((bx + 18, y0 + gh / 2), "accuracy", fill=INK, font=font, anchor="lm")
    img.save(path, format="PNG", optimize=False, compress_level=6)


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
