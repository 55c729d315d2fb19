"""The final intervention for shipping (issue 13.4): after an eval, `itictl bake` / `export` /
`push` with no REF ship the intervention refitted on all questions (probes on every question, 80/20
train/val, no test fold; σ over every tuning prompt) with the eval's options; the card says so and
links the eval. Ambiguous or bad input fails in one line and writes nothing."""

from __future__ import annotations

import json

import pytest

from itictl.errors import BadInputError, NotFoundError, UsageError
from tests.helpers import run_cli
from tests.publish.tiny_eval import N_QUESTIONS, tiny_eval_store


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tqa_dir):
    """A store holding a 2-fold eval of a tiny model on the first 12 questions (K=3, α=4; MC only)."""
    store, tiny, evaluate = tiny_eval_store(tmp_path_factory.mktemp("final"), tqa_dir, "0,4")
    return store, tiny, evaluate()


def _store(path):
    from itictl.store import Store

    return Store(path)


def _keys(path) -> set[str]:
    return {a.key for a in _store(path).ls()}


def test_bake_after_an_eval_ships_the_all_questions_intervention(evaluated, tqa_dir, tmp_path, monkeypatch):
    store_dir, tiny, ev_key = evaluated
    monkeypatch.setenv("ITICTL_DATA", str(tqa_dir))
    r = run_cli("--store", str(store_dir), "bake", "--dtype", "float32", "--device", "cpu", "--json")
    assert r.code == 0, r.stderr[-2000:]
    doc = r.json()
    assert doc["fold"] == "all"
    assert doc["questions"] == f"all {N_QUESTIONS} questions, 80/20 train/val split, no test fold"
    assert "fitted on all 12 questions" in r.stderr and ev_key[:12] in r.stderr  # which one was baked
    store = _store(store_dir)
    ev, inter = store.get(ev_key), store.get(doc["intervention"])
    assert inter.key not in ev.parents.values()  # not fold 0's (nor fold 1's)
    assert inter.params == {"heads": 3, "alpha": 4.0, "direction": "com", "seed": 5}
    probes = store.get(inter.parents["probes"])
    assert probes.params["fold"] == "all" and probes.params["seed"] == 5
    assert probes.parents["activations"] == ev.parents["activations"]  # the eval's extraction, reused
    assert inter.parents["tuning"] == ev.parents["tuning"]
    qs = probes.read_json("probes.json")["questions"]
    assert sorted(qs["train"] + qs["val"]) == list(range(N_QUESTIONS)) and qs["test"] == []
    card = (store.get(doc["key"]).path / "README.md").read_text()
    assert f"all {N_QUESTIONS} questions, 80/20 train/val split, no test fold" in card
    assert f"Measured on held-out folds by itictl eval `{ev_key}`" in card and "refitted on all questions" in card
    mc1 = next(s for s in ev.read_json("eval.json")["settings"] if s["alpha"] == 4)
    assert f"| MC1 | {mc1['mean']['MC1']:.4g} |" in card and "change vs α = 0" in card

    # `intervene --all-questions` with the eval's options is the same object (one chain, one key)
    from itictl.data import build_prompts, load_truthfulqa

    n_prompts = sum(1 for p in build_prompts(load_truthfulqa(tqa_dir), "tqa_mc2") if p.question_index < N_QUESTIONS)
    iv = run_cli("--store", str(store_dir), "intervene", "-m", str(tiny), "-K", "3", "-A", "4", "--limit", str(n_prompts),
                 "--tuning", ev.parents["tuning"], "--seed", "5", "--data", str(tqa_dir), "--device", "cpu",
                 "--all-questions", "--json", "-q")
    assert iv.code == 0, iv.stderr[-2000:]
    assert iv.json()["key"] == inter.key and iv.json()["cached"] is True and iv.json()["fold"] == "all"

    # export DIR and push --dry-run with no REF: the same intervention, and bake's baked model
    ex = run_cli("--store", str(store_dir), "export", str(tmp_path / "out"), "--json", "-q")
    assert ex.code == 0, ex.stderr[-2000:]
    assert ex.json()["intervention"] == inter.key and ex.json()["fold"] == "all"
    assert "no test fold" in (tmp_path / "out" / "README.md").read_text()
    pu = run_cli("--store", str(store_dir), "push", "--repo", "me/tiny-iti", "--dry-run", "--json", "-q")
    assert pu.code == 0, pu.stderr[-2000:]
    assert pu.json()["artifact"] == doc["key"] and "no test fold" in pu.json()["card"]
    # an explicit eval REF keeps its meaning: fold 0's intervention
    ex0 = run_cli("--store", str(store_dir), "export", ev_key[:12], str(tmp_path / "out0"), "--json", "-q")
    assert ex0.code == 0 and ex0.json()["intervention"] == ev.parents["intervention"] and ex0.json()["fold"] == 0
    assert "fold 0's training questions" in (tmp_path / "out0" / "README.md").read_text()


def test_probe_all_questions_cli(evaluated):
    store_dir, _, ev_key = evaluated
    acts = _store(store_dir).get(ev_key).parents["activations"]
    r = run_cli("--store", str(store_dir), "probe", "-a", acts, "--seed", "5", "--all-questions", "--json", "-q")
    assert r.code == 0, r.stderr[-2000:]
    assert r.json()["fold"] == "all" and r.json()["n_prompts"]["test"] == 0
    bad = run_cli("--store", str(store_dir), "probe", "-a", acts, "--all-questions", "--fold", "1", "--json")
    assert bad.code == 2 and "--fold does not apply" in bad.stderr


def test_ambiguous_or_bad_choices_fail_in_one_line_and_write_nothing(evaluated, tqa_dir, tmp_path, monkeypatch):
    store_dir, tiny, _ = evaluated
    monkeypatch.setenv("ITICTL_DATA", str(tqa_dir))
    grid = run_cli("--store", str(store_dir), "eval", "--model", str(tiny), "--data", str(tqa_dir), "--limit-questions",
                   str(N_QUESTIONS), "--heads", "2,3", "--alpha", "4", "--metrics", "mc", "--device", "cpu", "--seed",
                   "5", "--json", "-q")
    assert grid.code == 0, grid.stderr[-2000:]
    before = _keys(store_dir)
    cases = [(["bake"], 2, "ambiguous"), (["bake", "--heads", "9"], 4, "no setting K=9"),
             (["bake", "last-eval", "--alpha", "4"], 2, "do not apply to a REF"),
             (["export", str(tmp_path / "x")], 2, "ambiguous"),
             (["push", "--repo", "me/x", "--dry-run"], 2, "ambiguous")]
    for args, code, text in cases:
        r = run_cli("--store", str(store_dir), *args, "--dtype", "float32") if args[0] == "bake" else \
            run_cli("--store", str(store_dir), *args)
        assert r.code == code and text in r.stderr, (args, r.code, r.stderr[-500:])
        assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error:")]) == 1
        assert _keys(store_dir) == before, args  # nothing half-written
    assert not (tmp_path / "x").exists()
    ok = run_cli("--store", str(store_dir), "export", str(tmp_path / "k2"), "--heads", "2", "--json", "-q")
    assert ok.code == 0, ok.stderr[-2000:]
    assert _store(store_dir).get(ok.json()["intervention"]).params["heads"] == 2 and ok.json()["fold"] == "all"


def _fake_eval(store, params, doc):
    return store.produce("eval", params, {}, lambda ctx: (ctx.out / "eval.json").write_text(json.dumps(doc)))[0]


def test_which_setting_an_eval_ships(store):
    from itictl.publish.final import eval_setting, eval_spec

    grid = [{"heads": 0, "alpha": 0.0}, {"heads": 16, "alpha": 5.0}, {"heads": 48, "alpha": 15.0}]
    ev = _fake_eval(store, {"direction": "probe", "folds": 3, "seed": 9, "val_ratio": 0.25, "limit_questions": 40,
                            "dtype": "float32", "split": "contiguous", "device": "cuda", "metrics": ["mc"]},
                    {"settings": grid})
    with pytest.raises(UsageError, match="2 settings"):
        eval_setting(ev)
    assert eval_setting(ev, alpha=15) == eval_setting(ev, heads=48)
    s = eval_setting(ev, heads=16)
    assert (s.heads, s.alpha, s.direction) == (16, 5.0, "probe")
    with pytest.raises(BadInputError, match="no setting K=16 α=15"):
        eval_setting(ev, heads=16, alpha=15)
    chosen = _fake_eval(store, {"direction": "com"}, {"settings": grid, "chosen": {"heads": 48, "alpha": 15}})
    assert (eval_setting(chosen).heads, eval_setting(chosen).alpha) == (48, 15.0)  # what tune marks
    marked = _fake_eval(store, {"direction": "com", "t": 2}, {"settings": grid, "chosen": {"heads": 16, "alpha": 5,
                                                                                  "direction": "probe"}})
    assert eval_setting(marked) == eval_setting(ev, heads=16)  # the chosen direction wins
    with pytest.raises(NotFoundError, match="chose α = 0"):
        eval_setting(_fake_eval(store, {"t": 3}, {"settings": grid, "chosen": {"heads": 0, "alpha": 0}}))
    only = _fake_eval(store, {"heads": [8], "alphas": [0, 10]}, {})  # no settings list: the params' grid
    assert (eval_setting(only).heads, eval_setting(only).alpha) == (8, 10.0)
    with pytest.raises(NotFoundError, match="α = 0 only"):
        eval_setting(_fake_eval(store, {"x": 1}, {"settings": grid[:1]}))
    spec = eval_spec(ev)
    assert (spec.folds, spec.seed, spec.val_ratio, spec.limit_questions, spec.dtype, spec.split, spec.device) == \
        (3, 9, 0.25, 40, "float32", "contiguous", "auto")  # where it ran is not the eval's to decide
