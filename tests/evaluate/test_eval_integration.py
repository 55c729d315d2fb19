"""`itictl eval` end to end on the embedded model: 12 questions, 2 folds, MC + CE/KL; re-run is a
cache hit with identical numbers; last-eval points at an artifact whose parents hold the
interventions; judges skipped with a reason."""

import pytest

pytestmark = pytest.mark.integration


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
    assert (art.path / "sweep.png").is_file()
