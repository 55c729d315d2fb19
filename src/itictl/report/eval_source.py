"""Reads an `eval` artifact into a `ReportSource`: eval.json (settings with CIs and paired changes
against α = 0), per_question.csv (typed), the question texts (answers.csv, else the dataset parent),
and which probes / intervention belong to the focus setting (fold 0)."""

from __future__ import annotations

import csv
from typing import Any

from itictl.errors import BadInputError
from itictl.report.source import ReportSource, setting_name

_INT_COLUMNS = ("heads", "fold", "question_index")
_TEXT_COLUMNS = ("category", "answer")


def _typed(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k in _TEXT_COLUMNS:
            out[k] = v
        elif k in _INT_COLUMNS:
            out[k] = int(float(v))
        else:
            out[k] = float(v) if v not in ("", None) else None
    out["setting"] = setting_name(out["heads"], out["alpha"])
    return out


def _csv_rows(art, name: str) -> list[dict[str, str]]:
    if name not in art.manifest.files:  # evals made before step version 2 have no per_question.csv
        return []
    with art.file(name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def questions(store, art) -> dict[int, str]:
    """question_index -> text, from answers.csv when present, else the dataset parent's table."""
    texts = {int(r["question_index"]): r["question"] for r in _csv_rows(art, "answers.csv") if r.get("question")}
    ds = art.parents.get("dataset")
    if ds and store.has(ds):
        try:
            table = store.get(ds).read_json("table.json")
        except Exception:  # noqa: BLE001 - question texts are a nicety; the answers.csv ones stay
            return texts
        rows = table.get("questions", table) if isinstance(table, dict) else table
        for i, q in enumerate(rows if isinstance(rows, list) else []):
            if isinstance(q, dict) and q.get("question"):
                texts.setdefault(int(q.get("index", i)), q["question"])
    return texts


def _default_focus(store, art, settings) -> tuple[int, float] | None:
    iv = art.parents.get("intervention")
    if iv and store.has(iv):
        p = store.get(iv).params
        if (int(p.get("heads", -1)), float(p.get("alpha", 0))) in {(s["heads"], s["alpha"]) for s in settings}:
            return int(p["heads"]), float(p["alpha"])
    return next(((int(s["heads"]), float(s["alpha"])) for s in settings if s["alpha"] != 0), None)


def read_eval(store, art, ref: str, setting: tuple[int, float] | None) -> ReportSource:
    doc = art.read_json("eval.json")
    settings = [{**s, "heads": int(s["heads"]), "alpha": float(s["alpha"]),
                 "name": setting_name(int(s["heads"]), float(s["alpha"]))} for s in doc.get("settings", [])]
    if setting is not None and setting not in {(s["heads"], s["alpha"]) for s in settings if s["alpha"] != 0}:
        have = ", ".join(f"{s['heads']},{s['alpha']:g}" for s in settings if s["alpha"] != 0) or "none"
        raise BadInputError(f"eval {art.key[:12]} has no setting K={setting[0]}, α={setting[1]:g}",
                            f"pick one of its α ≠ 0 settings with --setting K,ALPHA ({have})")
    focus = setting or _default_focus(store, art, settings)
    probes = iv = None
    if focus is not None:
        iv = art.parents.get(f"intervention.fold0.k{focus[0]}.a{focus[1]:g}")
        if iv is None and focus == _default_focus(store, art, settings):
            iv = art.parents.get("intervention")  # fold 0's intervention of the first α ≠ 0 setting
        if iv and store.has(iv):
            probes = store.get(iv).parents.get("probes")
    m = art.manifest
    return ReportSource(
        key=art.key, kind=art.kind, ref=ref, params=dict(art.params), settings=settings, curves=settings,
        per_question=[_typed(r) for r in _csv_rows(art, "per_question.csv")], questions=questions(store, art),
        skipped=dict(doc.get("skipped", {})), judges=dict(doc.get("judges", {})),
        uncertainty=dict(doc.get("uncertainty", {})), base=next((s["name"] for s in settings if s["alpha"] == 0), None),
        focus=setting_name(*focus) if focus else None, probes_key=probes, intervention_key=iv,
        created=str(m.doc.get("created", "")), version=str(m.doc.get("itictl_version", "")))
