"""Sweep rendering: the grid table of a multi-(K, α) eval and the best setting by MC2 gain.

The grid itself runs in runner.run_eval (one artifact; shared work reused). This module turns its
document into rows for tables and docs.
"""

from __future__ import annotations

from typing import Any

COLUMNS = ("heads", "alpha", "MC1", "MC2", "MC3", "True", "Info", "True*Info", "BLEU acc", "ROUGE-L acc",
           "CE Loss", "KL wrt Original")


def grid_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for s in doc["settings"]:
        r = {"heads": s["heads"], "alpha": s["alpha"]}
        r.update({k: s["mean"].get(k) for k in COLUMNS[2:]})
        rows.append(r)
    return rows


def best_setting(doc: dict[str, Any], key: str = "MC2") -> dict[str, Any] | None:
    base = next((s for s in doc["settings"] if s["alpha"] == 0), None)
    cands = [s for s in doc["settings"] if s["alpha"] != 0 and s["mean"].get(key) is not None]
    if not cands:
        return None
    best = max(cands, key=lambda s: s["mean"][key])
    out = {"heads": best["heads"], "alpha": best["alpha"], key: best["mean"][key],
           "CE Loss": best["mean"].get("CE Loss"), "KL wrt Original": best["mean"].get("KL wrt Original")}
    if base is not None and base["mean"].get(key) is not None:
        out[f"{key} gain"] = best["mean"][key] - base["mean"][key]
    return out
