"""`itictl eval` end to end on the embedded model: 12 questions, 2 folds, MC + CE/KL; re-run is a
cache hit with identical numbers; last-eval points at an artifact whose parents hold the
interventions; judges skipped with a reason; per_question.csv averages to the fold metrics and
--json carries the CIs and the paired changes against α = 0."""


def test_eval_small_end_to_end_and_cache(embedded, session_store, tqa_dir, wikitext_path):
    from tests.helpers import run_cli

    args = ["--store", str(session_store.root), "eval", "--data", str(tqa_dir), "--limit-questions", "12",
            "--heads", "4", "--alpha", "0,15", "--metrics", "mc,judge,ce,kl", "--text", str(wikitext_path), "--text-samples", "8",
            "--device", "cpu", "--dtype", "float32", "--json"]
    r1 = run_cli(*args)
    assert r1.code == 0, r1.stderr
    d1 = r1.json()
    assert d1["kind"] == "eval" and len(d1["settings"]) == 2 and "True" in d1["skipped"]
    base, iv = d1["settings"]
    assert base["alpha"] == 0 and base["mean"]["KL wrt Original"] == 0.0
    assert iv["mean"]["KL wrt Original"] > 0 and 0 <= iv["mean"]["MC2"] <= 1
    assert "True Score: skipped" in iv["summary"] and "MC2 Score:" in iv["summary"]
    r2 = run_cli(*args)
    d2 = r2.json()
    assert d2["cached"] is True and d2["key"] == d1["key"] and d2["summary"] == d1["summary"]
    art = session_store.open("last-eval")
    assert art.key == d1["key"] and "intervention" in art.parents
    assert any(k.startswith("intervention.fold1") for k in art.parents)
    stored = art.read_json("eval.json")  # the payload holds what --json printed
    assert stored["settings"] == [{k: v for k, v in s.items() if k in t} for s, t in zip(d1["settings"], stored["settings"])]
    _check_per_question_and_uncertainty(art, d1)
    assert stored["n_questions"] == 12 and stored["folds"] == [6, 6] and stored["skipped"] == d1["skipped"]
    from matplotlib.image import imread

    png = imread(art.file("sweep.png"))  # digest-checked; an 11 x 4.2 in figure at 110 dpi
    assert png.shape[:2] == (462, 1210)
    assert len({tuple(px) for px in png.reshape(-1, png.shape[2])[::97]}) > 10  # drawn, not blank


def _check_per_question_and_uncertainty(art, d1):
    import csv

    import numpy as np
    import pytest

    with art.file("per_question.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 * 2 and set(rows[0]) >= {"heads", "alpha", "fold", "question_index", "category", "MC1", "MC2"}
    for s in d1["settings"]:
        mine = [r for r in rows if float(r["alpha"]) == s["alpha"] and int(r["heads"]) == s["heads"]]
        assert sorted(int(r["question_index"]) for r in mine) == list(range(12))
        for i, f in enumerate(s["folds"]):
            for k in ("MC1", "MC2", "MC3"):
                assert f[k] == pytest.approx(np.mean([float(r[k]) for r in mine if int(r["fold"]) == i]))
        for k in ("MC2", "CE Loss", "KL wrt Original"):
            lo, hi = s["ci95"][k]
            assert lo - 1e-9 <= s["mean"][k] <= hi + 1e-9
    base, iv = d1["settings"]
    assert "delta_vs_alpha0" not in base and d1["uncertainty"]["resamples"] == 10000
    d = iv["delta_vs_alpha0"]
    assert d["MC2"]["delta"] == pytest.approx(iv["mean"]["MC2"] - base["mean"]["MC2"])
    assert d["CE Loss"]["delta"] == pytest.approx(iv["mean"]["CE Loss"] - base["mean"]["CE Loss"])
    assert d["KL wrt Original"]["excludes_zero"] is True  # every sample's KL > 0 under α = 15
    assert d["MC2"]["excludes_zero"] == (not d["MC2"]["ci95"][0] <= 0 <= d["MC2"]["ci95"][1])
