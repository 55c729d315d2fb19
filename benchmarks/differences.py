"""The measured effect of each protocol switch (docs/differences.md), with paired CIs.

Reads the `per_question.csv` of several evals of the same questions and setting (one per switch, as
docs/differences.md's "Measuring the table" runs them) and prints, for each eval against the base
eval, the change of MC1/MC2/MC3 (or any per-question column) at one (K, α), paired by question
(question i of both runs, whatever fold it fell in), with a seeded percentile bootstrap 95 % CI
over questions (itictl.evaluate.stats.paired_delta). Also the change each run makes against its
own α = 0 rows, so a switch that moves the baseline (e.g. --mc-positions) shows it.

  python benchmarks/differences.py DIR --base itictl --heads 48 --alpha 15
      DIR holds NAME.per_question.csv (copied from each eval artifact: `itictl store path REF`)

Output: a markdown table (stdout) and, with --json FILE, every number.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def _rows(path: Path, heads: int, alpha: float) -> dict[int, dict[str, float]]:
    """{question_index: {metric: value}} of one setting of one eval."""
    out: dict[int, dict[str, float]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            a = float(r["alpha"])
            if (a == 0 and alpha == 0) or (a == alpha and int(float(r["heads"])) == heads):
                vals = {}
                for k, v in r.items():
                    try:
                        vals[k] = float(v)
                    except (TypeError, ValueError):
                        continue
                out[int(r["question_index"])] = vals
    return out


def _paired(run: dict, base: dict, metric: str, seed: int) -> dict | None:
    from itictl.evaluate.stats import paired_delta

    qs = sorted(q for q in set(run) & set(base) if metric in run[q] and metric in base[q])
    if not qs:
        return None
    v = np.array([run[q][metric] for q in qs])
    b = np.array([base[q][metric] for q in qs])
    doc = paired_delta(v, b, seed=seed)
    return {**doc, "n": len(qs), "mean": float(v.mean())}


def _fmt(d: dict | None) -> str:
    if d is None or d.get("delta") is None:
        return "–"
    lo, hi = d["ci95"]
    mark = "" if d["excludes_zero"] else " (n.s.)"
    return f"{100 * d['delta']:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]{mark}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--base", default="itictl", help="name of the base eval (NAME.per_question.csv)")
    ap.add_argument("--heads", type=int, default=48)
    ap.add_argument("--alpha", type=float, default=15.0)
    ap.add_argument("--metrics", default="MC1,MC2,MC3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    metrics = [m.strip() for m in a.metrics.split(",") if m.strip()]
    files = {p.name[: -len(".per_question.csv")]: p for p in sorted(a.dir.glob("*.per_question.csv"))}
    if a.base not in files:
        raise SystemExit(f"no {a.base}.per_question.csv in {a.dir}")
    base = _rows(files[a.base], a.heads, a.alpha)
    result: dict[str, dict] = {}
    print("| run | n | " + " | ".join(f"Δ{m} vs {a.base} (points) [95 % CI]" for m in metrics)
          + " | " + " | ".join(f"Δ{m} vs own α = 0" for m in metrics) + " |")
    print("|---|---|" + "---|" * (2 * len(metrics)))
    for name, path in files.items():
        run, own0 = _rows(path, a.heads, a.alpha), _rows(path, 0, 0.0)
        vs_base = {m: _paired(run, base, m, a.seed) for m in metrics}
        vs_own = {m: _paired(run, own0, m, a.seed) for m in metrics}
        result[name] = {"vs_base": vs_base, "vs_own_alpha0": vs_own}
        n = next((d["n"] for d in vs_base.values() if d), 0)
        print(f"| {name} | {n} | " + " | ".join(_fmt(vs_base[m]) for m in metrics) + " | "
              + " | ".join(_fmt(vs_own[m]) for m in metrics) + " |")
    if a.json:
        a.json.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
