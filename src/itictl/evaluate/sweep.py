"""Sweep rendering: the grid table of a multi-(K, α) eval.

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
