"""run_tune end to end on a tiny random Llama and synthetic TruthfulQA data: the nested CV never
lets a test-fold question influence a choice (perturbing only those questions' answers and labels
leaves every validation score and the choice unchanged, while perturbing validation questions
does change them); a rerun reuses every trial; an interrupted tune resumes; a larger grid reuses
the smaller one's trials; TPE runs and resumes."""

from __future__ import annotations

import pytest

from itictl.errors import ItictlError
from tests.tune.conftest import perturbed, synthetic_questions, write_tqa

N = 24
METRICS = ("MC1", "MC2", "CE Loss", "KL wrt Original")


def _run(store, model_dir, data, text, **kw):
    from itictl.evaluate.options import EvalOptions
    from itictl.tune.options import TuneOptions
    from itictl.tune.run import run_tune

    ev = EvalOptions(model=str(model_dir), data_dir=str(data), text=str(text), text_samples=2, val_ratio=0.4,
                     device="cpu", dtype="float32", preset="null", instruction="none")  # short MC prompts
    opts = dict(heads="2,4", alpha="0,5,40", max_kl=0.002)
    opts.update(kw)
    return run_tune(store, TuneOptions(eval=ev, **opts))


def _trials(doc, fold, part):
    return {(r["heads"], r["alpha"], r["direction"]): r for r in doc["trials"] if r["fold"] == fold and r["part"] == part}


def test_test_fold_questions_never_influence_the_choice(store, tmp_path, tiny_dir, text_file):
    from itictl.data import question_folds

    qs = synthetic_questions(N)
    test0 = [int(i) for i in question_folds(N, 2, 42, "random")[0]]
    _, _, base = _run(store, tiny_dir, write_tqa(tmp_path / "a", qs), text_file)
    _, _, pert = _run(store, tiny_dir, write_tqa(tmp_path / "b", perturbed(qs, test0)), text_file)
    a, b = _trials(base, 0, "val"), _trials(pert, 0, "val")
    assert a.keys() == b.keys() and len(a) == 5
    for k in a:
        assert a[k]["key"] != b[k]["key"]  # really rebuilt from the changed data, not read back
        for m in METRICS:
            assert b[k][m] == pytest.approx(a[k][m], abs=1e-6), (k, m)
    assert base["folds"][0]["chosen"] == pert["folds"][0]["chosen"]
    assert base["folds"][0]["pareto"] == pert["folds"][0]["pareto"]
    ta, tb = _trials(base, 0, "test"), _trials(pert, 0, "test")
    assert any(abs(ta[k]["MC2"] - tb[k]["MC2"]) > 1e-3 for k in ta.keys() & tb.keys())  # the change reached the data
    # control: the same change on two of fold 0's validation questions does move its validation scores
    val0 = store.get(a[(0, 0.0, "none")]["key"]).read_json("trial.json")["questions"]
    assert not set(val0) & set(test0)
    _, _, ctrl = _run(store, tiny_dir, write_tqa(tmp_path / "c", perturbed(qs, val0[:2])), text_file)
    c = _trials(ctrl, 0, "val")
    assert any(abs(c[k]["MC2"] - a[k]["MC2"]) > 1e-3 for k in a)


def test_grid_rerun_reuses_every_trial_and_outer_report(store, tmp_path, tiny_dir, text_file):
    data = write_tqa(tmp_path / "d", synthetic_questions(N))
    art1, cached1, d1 = _run(store, tiny_dir, data, text_file)
    assert not cached1 and d1["trials_run"]["cached"] == 0
    assert len([r for r in d1["trials"] if r["part"] == "val"]) == 2 * 5
    for f in d1["folds"]:
        c = f["chosen"]
        row = _trials(d1, f["fold"], "val")[(c["heads"], c["alpha"], c["direction"])]
        assert row["feasible"] and row["chosen"]
        assert all(r["objective"] <= row["objective"] + 1e-12 for r in _trials(d1, f["fold"], "val").values()
                   if r["feasible"])
    out = d1["outer"]
    assert set(out) == {"tuned", "alpha0", "paper_skipped"}  # the tiny model has 8 heads < 48
    assert out["alpha0"]["mean"]["KL wrt Original"] == 0.0
    assert set(out["tuned"]["delta_vs_alpha0"]) >= {"MC2", "KL wrt Original"}
    art2, cached2, d2 = _run(store, tiny_dir, data, text_file)
    assert cached2 and art2.key == art1.key and d2["trials_run"] == {"total": d1["trials_run"]["total"],
                                                                       "cached": d1["trials_run"]["total"]}
    assert d2["trials"] == d1["trials"] and d2["chosen"] == d1["chosen"]
    assert store.resolve("last-tune") == art1.key
    assert set(art1.parents) >= {"model", "dataset", "activations", "tuning"}
    assert {"tune.json", "trials.csv", "pareto.png"} <= set(art1.manifest.files)
    assert art1.meta["chosen"] == {k: d1["chosen"][k] for k in ("heads", "alpha", "direction")}
    chain = d1["chain"]
    assert chain["spec"]["model"] == str(tiny_dir) and chain["activations_key"] == art1.parents["activations"]
    # a larger grid reuses the smaller one's validation trials
    _, _, d3 = _run(store, tiny_dir, data, text_file, alpha="0,5,20,40")
    keys3 = {r["key"] for r in d3["trials"]}
    assert {r["key"] for r in d1["trials"] if r["part"] == "val"} <= keys3
    assert d3["trials_run"]["cached"] >= 10 and len([r for r in d3["trials"] if r["part"] == "val"]) == 2 * 7


def test_interrupted_tune_resumes(store, tmp_path, tiny_dir, text_file):
    from itictl import hooks

    data = write_tqa(tmp_path / "e", synthetic_questions(N))
    built = []

    def stop(kind, key):
        if kind == "tune-trial":
            built.append(key)
            if len(built) == 4:
                raise ItictlError("interrupted", "")

    remove = hooks.register("store.build_start", stop)
    with pytest.raises(ItictlError, match="interrupted"):
        _run(store, tiny_dir, data, text_file)
    remove()
    assert not store.has(built[-1]) and all(store.has(k) for k in built[:3])
    _, cached, d = _run(store, tiny_dir, data, text_file)
    assert not cached and d["trials_run"]["cached"] == 3


def test_tpe_search_runs_and_resumes(store, tmp_path, tiny_dir, text_file):
    data = write_tqa(tmp_path / "f", synthetic_questions(N))
    kw = dict(search="tpe", heads="1..8", alpha="0..40", trials=3, directions=["com", "probe"])
    _, _, d1 = _run(store, tiny_dir, data, text_file, **kw)
    vals = [r for r in d1["trials"] if r["part"] == "val"]
    assert 2 <= len(vals) <= 2 * 4 + 2  # baseline + ≤ 3 distinct points per fold (+ cross-fold checks)
    assert all(1 <= r["heads"] <= 8 and 0 <= r["alpha"] <= 40 for r in vals if r["alpha"] != 0)
    _, cached, d2 = _run(store, tiny_dir, data, text_file, **kw)
    assert cached and d2["trials_run"]["cached"] == d2["trials_run"]["total"] and d2["chosen"] == d1["chosen"]


@pytest.mark.parametrize("objective, extra", [
    ("mc1", {"mc_style": "harness"}),
    ("true*info", {"metrics_judges": True}),
])
def test_every_objective(store, tmp_path, tiny_dir, text_file, objective, extra):
    """MC1 in lm-eval-harness style, and True×Info with local hf: judges (the tiny model as judge)."""
    from dataclasses import replace

    from itictl.evaluate.options import EvalOptions
    from itictl.tune.options import TuneOptions
    from itictl.tune.run import run_tune

    data = write_tqa(tmp_path / "g", synthetic_questions(N))
    ev = EvalOptions(model=str(tiny_dir), data_dir=str(data), text=str(text_file), text_samples=2, val_ratio=0.4,
                     device="cpu", dtype="float32")
    if extra.get("metrics_judges"):
        ev = replace(ev, judge=f"hf:{tiny_dir}", info_judge=f"hf:{tiny_dir}", preset="null", instruction="none")
    else:
        ev = replace(ev, mc_style="harness")
    _, _, d = run_tune(store, TuneOptions(eval=ev, objective=objective, heads="2", alpha="0,5", max_kl=1.0))
    metric = {"mc1": "MC1", "true*info": "True*Info"}[objective]
    assert d["objective_metric"] == metric
    vals = [r for r in d["trials"] if r["part"] == "val"]
    assert len(vals) == 4 and all(r["objective"] is not None and 0 <= r["objective"] <= 1 for r in vals)
    assert all(r["objective"] == r[metric] for r in vals)
    assert metric in d["outer"]["tuned"]["mean"] and metric in d["outer"]["tuned"]["ci95"]
