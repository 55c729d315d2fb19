"""A synthetic eval and its lineage in a temporary store (no model): model, dataset, two activations,
two folds of probes, two interventions and an eval whose CIs and paired changes come from the real
evaluate.stats over hand-chosen per-question values, so every number the report shows is known."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

CATEGORIES = ["Health", "Health", "Law", "Law", "Law", "Misconceptions"]
MC2_BASE = [0.2, 0.4, 0.5, 0.5, 0.6, 0.3]
MC2_STEER = [0.3, 0.5, 0.5, 0.4, 0.6, 0.9]
TRUE_BASE = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
TRUE_STEER = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
FOLDS = [[0, 1, 2], [3, 4, 5]]
HEADS = [[1, 2], [3, 0]]  # (layer, head) of fold 0's intervention
VAL_ACC = [[0.5, 0.6, 0.7], [0.55, 0.62, 0.91], [0.5, 0.5, 0.5], [0.88, 0.6, 0.52]]  # [L=4, H=3]
CE = {0: [3.0, 3.2, 2.8, 3.1], 5: [3.1, 3.3, 2.9, 3.3]}
KL = {0: [0.0, 0.0, 0.0, 0.0], 5: [0.05, 0.07, 0.04, 0.06]}


@dataclass
class Synthetic:
    store: object
    eval_key: str
    probes_key: str
    intervention_key: str
    doc: dict


def _put(store, kind, params, parents, files):
    def build(ctx):
        for name, content in files.items():
            (ctx.out / name).write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")

    return store.produce(kind, params, parents, build)[0].key


def _rows():
    rows, answers = [], []
    for a, mc2, tru in ((0.0, MC2_BASE, TRUE_BASE), (5.0, MC2_STEER, TRUE_STEER)):
        k = 0 if a == 0 else 2
        for f, qs in enumerate(FOLDS):
            for q in qs:
                ans = f"answer {q} at alpha {a:g}" if not (a and q == 1) else "answer 1 at alpha 0"
                rows.append({"heads": k, "alpha": a, "fold": f, "question_index": q, "category": CATEGORIES[q],
                             "MC1": float(mc2[q] > 0.45), "MC2": mc2[q], "MC3": mc2[q] / 2, "answer": ans,
                             "True": tru[q], "Info": 1.0, "True prob": 0.2 + 0.6 * tru[q], "Info prob": 0.9})
                answers.append({"setting": f"K={k},alpha={a:g}", "fold": f, "question_index": q,
                                "question": f"Question number {q}?", "answer": ans})
    return rows, answers


def _eval_doc(rows):
    from itictl.evaluate import stats

    results, samples = [], {}
    for k, a in ((0, 0.0), (2, 5.0)):
        mine = [r for r in rows if r["alpha"] == a]
        folds = [{m: float(np.mean([r[m] for r in mine if r["fold"] == f])) for m in ("MC1", "MC2", "MC3", "True", "Info")}
                 for f in range(2)]
        for fd in folds:
            fd["True*Info"] = fd["True"] * fd["Info"]
            fd["CE Loss"], fd["KL wrt Original"] = float(np.mean(CE[int(a)])), float(np.mean(KL[int(a)]))
        mean = {m: float(np.mean([fd[m] for fd in folds])) for m in folds[0]}
        results.append({"heads": k, "alpha": a, "folds": folds, "mean": mean})
        samples[(k, a)] = {f: {"ce": CE[int(a)], "kl": KL[int(a)]} for f in range(2)}
    stats.attach(results, rows, samples, n_resamples=2000, seed=0)
    return {"mc_style": "truthfulqa", "eval_dataset": "truthfulqa", "n_questions": 6, "folds": [3, 3],
            "settings": results, "skipped": {}, "judges": {"truth": "local", "info": "local"},
            "uncertainty": {"method": "percentile bootstrap", "resamples": 2000, "level": 0.95, "seed": 0}}


def _write_csvs(tmp, rows, answers):
    from itictl.evaluate.evaluator import write_per_question_csv
    from itictl.evaluate.generate import write_answers_csv

    write_per_question_csv(tmp / "pq.csv", rows)
    write_answers_csv(tmp / "ans.csv", answers)
    return (tmp / "pq.csv").read_text(encoding="utf-8"), (tmp / "ans.csv").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Synthetic:
    """Module-scoped (tests only read it): its own store under a fresh temporary folder."""
    from itictl.store import Store

    tmp_path = tmp_path_factory.mktemp("synthetic-eval")
    store = Store(tmp_path / "store")
    store.ensure()
    model = _put(store, "model", {"source": "gguf", "sha256": "ab" * 32}, {}, {"model.json": {"name": "m"}})
    questions = [{"index": i, "question": f"Question number {i}?", "category": c} for i, c in enumerate(CATEGORIES)]
    dataset = _put(store, "dataset", {"name": "truthfulqa", "digest": "cd" * 32}, {}, {"table.json": {"questions": questions}})
    acts = _put(store, "activations", {"format": "tqa_mc2", "limit": 40}, {"model": model, "dataset": dataset}, {"a.txt": "x"})
    tuning = _put(store, "activations", {"format": "tqa_gen_end_q", "limit": 40}, {"model": model, "dataset": dataset},
                  {"a.txt": "y"})
    ivs, probes = [], []
    for fold in range(2):
        probes.append(_put(store, "probes", {"fold": fold, "folds": 2}, {"activations": acts},
                           {"probes.json": {"val_acc": VAL_ACC}}))
        ivs.append(_put(store, "intervention", {"heads": 2, "alpha": 5.0, "direction": "com", "fold": fold},
                        {"probes": probes[fold], "tuning": tuning}, {"intervention.json": {"heads": HEADS}}))
    rows, answers = _rows()
    doc = _eval_doc(rows)
    pq, ans = _write_csvs(tmp_path, rows, answers)
    parents = {"model": model, "dataset": dataset, "activations": acts, "tuning": tuning, "intervention": ivs[0],
               "intervention.fold0.k2.a5": ivs[0], "intervention.fold1.k2.a5": ivs[1]}
    key = _put(store, "eval", {"heads": [2], "alphas": [0.0, 5.0], "n_questions": 6, "metrics": ["ce", "judge", "kl", "mc"]},
               parents, {"eval.json": json.dumps(doc, default=float), "per_question.csv": pq, "answers.csv": ans})
    store.tag("last-eval", key)
    return Synthetic(store, key, probes[0], ivs[0], doc)


@pytest.fixture(scope="module")
def rendered(synthetic, tmp_path_factory):
    """(the --json document, the page's path) of `itictl report` on the synthetic eval, once per module."""
    from tests.helpers import run_cli

    path = tmp_path_factory.mktemp("report") / "report.html"
    r = run_cli("--store", str(synthetic.store.root), "report", "-o", str(path), "--json")
    assert r.code == 0, r.stderr
    return r.json(), path
