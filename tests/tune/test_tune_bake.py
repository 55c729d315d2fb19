"""`itictl tune … && itictl bake` (issue 15): with no REF, bake / export / push ship the tune's chosen
setting refitted on all questions (probes with no test fold, σ over every tuning prompt) on the
tune's own activations, and the card names the tune and its outer-fold scores; a tune REF does the
same; the newer of `last-tune` and `last-eval` (the ref files' tag times) is the source; a tune
that chose α = 0 fails in one line before anything is written; --heads/--alpha with a tune source
is a usage error."""

from __future__ import annotations

import os
import time

import pytest

from tests.helpers import run_cli
from tests.tune.conftest import synthetic_questions, write_tqa
from tests.tune.test_tune_tiny import N, _run


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, tiny_dir, text_file):
    """(store, tune artifact, tune.json, data folder): a 2-fold grid tune of the tiny model."""
    from itictl.store import Store

    root = tmp_path_factory.mktemp("tune-bake")
    store = Store(root / "store")
    store.ensure()
    data = write_tqa(root / "data", synthetic_questions(N))
    art, _, doc = _run(store, tiny_dir, data, text_file)
    assert float(doc["chosen"]["alpha"]) != 0 and doc["chosen"]["bakeable"]  # the seeded tiny tune's choice
    return store, art, art.read_json("tune.json"), data


def _newest(store, name: str) -> None:
    """Make ref `name` the most recently tagged of the refs so far (mtimes in the past: a tag made
    after this is newer still)."""
    now = time.time_ns()
    for p in store.refs_dir.iterdir():
        t = now - (10**9 if p.name == name else 10 * 10**9)
        os.utime(p, ns=(t, t))


def _cli(store, *args):
    return run_cli("--store", str(store.root), *args)


def test_tune_then_bake_ships_the_chosen_setting_on_all_questions(tuned, tmp_path):
    store, tune, doc, _ = tuned
    _newest(store, "last-tune")
    r = _cli(store, "bake", "--dtype", "float32", "--device", "cpu", "--json")
    assert r.code == 0, r.stderr[-2000:]
    assert f"no REF: using last-tune (tune {tune.key[:12]})" in r.stderr
    out = r.json()
    assert out["fold"] == "all" and out["questions"] == f"all {N} questions, 60/40 train/val split, no test fold"
    c, chain = doc["chosen"], doc["chain"]
    inter = store.get(out["intervention"])
    assert (inter.params["heads"], inter.params["alpha"], inter.params["direction"]) == (c["heads"], c["alpha"],
                                                                                          c["direction"])
    probes = store.get(inter.parents["probes"])
    assert probes.params["fold"] == "all"
    assert probes.parents["activations"] == chain["activations_key"]  # the tune's extraction, reused
    assert inter.parents["tuning"] == chain["tuning_key"]
    qs = probes.read_json("probes.json")["questions"]
    assert sorted(qs["train"] + qs["val"]) == list(range(N)) and qs["test"] == []
    trial_ivs = {v for k in tune.parents.values() for r, v in store.get(k).parents.items() if r == "intervention"}
    assert trial_ivs and inter.key not in trial_ivs  # not one of the trials' fold interventions
    card = (store.get(out["key"]).path / "README.md").read_text()
    assert f"Setting chosen by itictl tune `{tune.key}` (nested CV: 2 outer folds, grid search; objective MC2, " \
           f"budget KL wrt Original ≤ 0.002)" in card
    tuned_mean = doc["outer"]["tuned"]["mean"]["MC2"]
    lo, hi = doc["outer"]["tuned"]["ci95"]["MC2"]
    assert f"| MC2 | {tuned_mean:.4g} | [{lo:.4g}, {hi:.4g}] |" in card

    # a tune REF: the same intervention and baked model; export with no REF: the same intervention
    r2 = _cli(store, "bake", tune.key[:12], "--dtype", "float32", "--device", "cpu", "--json")
    assert r2.code == 0, r2.stderr[-2000:]
    assert r2.json()["intervention"] == inter.key and r2.json()["key"] == out["key"] and r2.json()["cached"]
    ex = _cli(store, "export", str(tmp_path / "vec"), "--json", "-q")
    assert ex.code == 0, ex.stderr[-2000:]
    assert ex.json()["intervention"] == inter.key
    push = _cli(store, "push", "--dry-run", "--repo", "me/x", "--json", "-q")
    assert push.code == 0, push.stderr[-2000:]
    assert push.json()["artifact"] == out["key"]

    # --heads/--alpha pick an eval's setting: with a tune source they are a usage error
    bad = _cli(store, "bake", "--heads", "2", "--dtype", "float32", "--device", "cpu")
    assert bad.code == 2 and "newest source is last-tune" in bad.stderr


def test_the_newer_of_last_tune_and_last_eval_is_used(tuned, tiny_dir):
    from itictl.publish.final import newest_source

    store, tune, doc, data = tuned
    ev = _cli(store, "eval", "--model", str(tiny_dir), "--data", str(data), "--heads", "4", "--alpha", "0,40",
              "--metrics", "mc", "--val-ratio", "0.4", "--preset", "null", "--instruction-prompt", "none",
              "--device", "cpu", "--dtype", "float32", "--json", "-q")
    assert ev.code == 0, ev.stderr[-2000:]
    assert newest_source(store) == "last-eval"  # just tagged
    r = _cli(store, "export", str(store.root.parent / "ev"), "--json")
    assert r.code == 0, r.stderr[-2000:]
    assert "no REF: using last-eval" in r.stderr
    iv = store.get(r.json()["intervention"])
    assert (iv.params["heads"], iv.params["alpha"]) == (4, 40.0) and r.json()["fold"] == "all"

    _newest(store, "last-tune")
    assert newest_source(store) == "last-tune"
    r = _cli(store, "export", str(store.root.parent / "tu"), "--json")
    assert r.code == 0 and "no REF: using last-tune" in r.stderr
    assert store.get(r.json()["intervention"]).params["alpha"] == doc["chosen"]["alpha"]

    t = (store.refs_dir / "last-tune").stat().st_mtime_ns  # a tie goes to the tune
    os.utime(store.refs_dir / "last-eval", ns=(t, t))
    assert newest_source(store) == "last-tune"
    _newest(store, "last-eval")
    assert newest_source(store) == "last-eval"
    _newest(store, "last-tune")


def test_a_tune_that_chose_alpha_0_fails_before_anything_is_written(tuned, tiny_dir, text_file):
    store, tune, _, data = tuned
    zero, _, zdoc = _run(store, tiny_dir, data, text_file, max_kl=1e-9)  # no α ≠ 0 setting is that close
    try:
        assert zdoc["chosen"]["alpha"] == 0 and zdoc["chosen"]["bakeable"] is False
        assert store.resolve("last-tune") == zero.key
        before = {a.key for a in store.ls()}
        for args in (("bake", "--device", "cpu"), ("bake", zero.key[:12], "--device", "cpu"),
                     ("export", str(store.root.parent / "z")), ("push", "--dry-run", "--repo", "me/x")):
            r = _cli(store, *args)
            assert r.code == 3, (args, r.stderr[-2000:])
            assert "the tune chose α = 0 (no intervention)" in r.stderr and "re-tune with a larger budget" in r.stderr
        assert {a.key for a in store.ls()} == before
        assert not (store.root.parent / "z").exists()
    finally:
        store.tag("last-tune", tune.key)
        _newest(store, "last-tune")
