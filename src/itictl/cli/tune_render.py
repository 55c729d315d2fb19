"""Rich tables of a tune document (cli/tune.py): the trials and the outer-fold scores with CIs."""

from __future__ import annotations

from typing import Any


def _f(v, sign: str = "") -> str:
    return "-" if v is None else f"{v:{sign}.4f}"


def _ci(v, ci, sign: str = "") -> str:
    if v is None:
        return "-"
    return _f(v, sign) if not ci else f"{v:{sign}.4f} [{ci[0]:{sign}.3f}, {ci[1]:{sign}.3f}]"


def trials_table(doc: dict[str, Any]):
    from rich.table import Table

    t = Table(title=f"trials (validation questions; objective {doc['objective_metric']})")
    for c in ("fold", "K", "alpha", "dir", doc["objective_metric"], "KL", "CE +", "feasible", "front", "chosen"):
        t.add_column(c, justify="right")
    for r in doc["trials"]:
        if r["part"] != "val":
            continue
        base = r["alpha"] == 0
        t.add_row(str(r["fold"]), "-" if base else str(r["heads"]), f"{r['alpha']:g}", "-" if base else r["direction"],
                  _f(r["objective"]), _f(r.get("KL wrt Original")), _f(r.get("CE increase"), "+"),
                  "yes" if r["feasible"] else "no", "*" if r["pareto"] else "", "<-" if r["chosen"] else "",
                  style="bold" if r["chosen"] else None)
    return t


def outer_table(doc: dict[str, Any]):
    """Test-fold means [95 % CI] and paired changes of the tuned settings."""
    from rich.table import Table

    obj, outer = doc["objective_metric"], doc["outer"]
    keys = [k for k in (obj, "MC1", "MC2", "CE Loss", "KL wrt Original")
            if any(k in g.get("mean", {}) and g["mean"].get(k) is not None for g in outer.values() if isinstance(g, dict))]
    keys = list(dict.fromkeys(keys))
    t = Table(title="outer test folds: mean [95% CI]; changes are paired (n.s.: the CI includes 0)")
    t.add_column("setting")
    for k in keys:
        t.add_column(k, justify="right")
    names = {"tuned": "tuned (per fold)", "alpha0": "alpha=0", "paper": "K=48 alpha=15"}
    for name in ("tuned", "alpha0", "paper"):
        g = outer.get(name)
        if not g:
            continue
        t.add_row(names[name], *[_ci(g["mean"].get(k), g["ci95"].get(k)) for k in keys])
    for name, dk, title in (("tuned", "delta_vs_alpha0", "tuned − alpha=0"), ("tuned", "delta_vs_paper", "tuned − K=48 a=15"),
                            ("paper", "delta_vs_alpha0", "K=48 a=15 − alpha=0")):
        d = (outer.get(name) or {}).get(dk)
        if not d:
            continue
        cells = []
        for k in keys:
            x = d.get(k)
            if not x or x.get("delta") is None:
                cells.append("-")
            else:
                cells.append(_ci(x["delta"], x["ci95"], "+") + ("" if x["excludes_zero"] else " n.s."))
        t.add_row(title, *cells)
    return t
