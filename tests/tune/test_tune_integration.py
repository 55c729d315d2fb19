"""`itictl tune` end to end on the embedded model: 12 questions (the eval integration test's chain,
so its activations and probes are reused), a 2-point grid under a KL budget; --json carries the
trials, each fold's choice, the outer-fold scores with paired CIs against α = 0 and K=48 α=15, the
chosen setting and the chain bake needs; pareto.png is in the artifact; `last-tune` points at it; a
rerun reuses every trial."""


def test_tune_small_end_to_end(embedded, session_store, tqa_dir, wikitext_path):
    from tests.helpers import run_cli

    args = ["--store", str(session_store.root), "tune", "--data", str(tqa_dir), "--limit-questions", "12",
            "--heads", "4", "--alpha", "0,15", "--max-kl", "0.5", "--text", str(wikitext_path), "--text-samples", "2",
            "--preset", "null", "--instruction-prompt", "none",  # short MC prompts: quick on CPU
            "--device", "cpu", "--dtype", "float32", "--json"]
    r1 = run_cli(*args)
    assert r1.code == 0, r1.stderr
    d = r1.json()
    assert d["kind"] == "tune" and d["n_questions"] == 12 and d["budget"] == {"metric": "kl", "max": 0.5}
    vals = [t for t in d["trials"] if t["part"] == "val"]
    assert len(vals) == 4 and {(t["heads"], t["alpha"]) for t in vals} == {(0, 0.0), (4, 15.0)}
    for f in d["folds"]:
        assert f["n_test"] == 6 and f["n_val"] + f["n_train"] == 6
        c = f["chosen"]
        row = next(t for t in vals if t["fold"] == f["fold"] and (t["heads"], t["alpha"]) == (c["heads"], c["alpha"]))
        assert row["feasible"] and row["KL wrt Original"] <= 0.5
    out = d["outer"]
    assert set(out) == {"tuned", "alpha0", "paper"}
    assert [s["heads"] for s in out["paper"]["settings"]] == [48, 48]
    for k in ("MC2", "KL wrt Original"):
        lo, hi = out["tuned"]["ci95"][k]
        assert lo - 1e-9 <= out["tuned"]["mean"][k] <= hi + 1e-9
        assert "ci95" in out["tuned"]["delta_vs_alpha0"][k] and "ci95" in out["tuned"]["delta_vs_paper"][k]
    assert out["paper"]["mean"]["KL wrt Original"] > 0 and out["alpha0"]["mean"]["KL wrt Original"] == 0
    assert set(d["chosen"]) >= {"heads", "alpha", "direction", "bakeable"}
    assert d["chain"]["spec"]["limit_questions"] == 12 and d["chain"]["model_key"]
    art = session_store.open("last-tune")
    assert art.key == d["key"] and art.kind == "tune"
    from matplotlib.image import imread

    png = imread(art.file("pareto.png"))
    assert png.shape[0] > 100 and len({tuple(px) for px in png.reshape(-1, png.shape[2])[::97]}) > 5
    r2 = run_cli(*args)
    d2 = r2.json()
    assert d2["cached"] and d2["trials_run"]["cached"] == d2["trials_run"]["total"] and d2["chosen"] == d["chosen"]
