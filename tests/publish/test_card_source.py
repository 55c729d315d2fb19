"""The model card cites the eval a bake came from (publish.final.Final.source, threaded through
bake / export / push), and measured_by's fallback for an intervention given by REF accepts only an
eval whose intervention-shaping protocol switches (backend, sigma_from, tie_break) match it.

Regression: after `eval`, `eval --protocol reference`, `bake`, `eval` (cache hit: last-eval is the
default eval again), `bake`, both cards cited the reference eval (the newest on the same chain)."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli
from tests.publish.tiny_eval import tiny_eval_store


@pytest.fixture(scope="module")
def two_protocols(tmp_path_factory, tqa_dir):
    """The store dir and a function running `eval` with extra options (α = 60: at α = 4 the tiny
    model gives both protocols the same numbers, which could not tell the cards apart)."""
    store, _, evaluate = tiny_eval_store(tmp_path_factory.mktemp("card_source"), tqa_dir, "0,60")
    return store, evaluate


def _store(path):
    from itictl.store import Store

    return Store(path)


def _bake(store_dir) -> dict:
    r = run_cli("--store", str(store_dir), "bake", "--dtype", "float32", "--device", "cpu", "--json")
    assert r.code == 0, r.stderr[-2000:]
    return r.json()


def _cites(card: str, ev) -> bool:
    """The card's evaluation section is eval `ev`'s: its key and its α ≠ 0 MC2 mean."""
    return f"Measured on held-out folds by itictl eval `{ev.key}`" in card and f"| MC2 | {_mc2(ev):.4g} |" in card


def _mc2(ev) -> float:
    return next(s for s in ev.read_json("eval.json")["settings"] if s["alpha"] == 60)["mean"]["MC2"]


def test_each_bake_cites_the_eval_it_came_from(two_protocols, tqa_dir, monkeypatch):
    store_dir, evaluate = two_protocols
    monkeypatch.setenv("ITICTL_DATA", str(tqa_dir))
    default_key = evaluate()
    reference_key = evaluate("--protocol", "reference")
    store = _store(store_dir)
    default, reference = store.get(default_key), store.get(reference_key)
    assert f"{_mc2(default):.4g}" != f"{_mc2(reference):.4g}"  # the two evals' numbers tell the cards apart

    first = _bake(store_dir)  # last-eval: the reference eval
    assert evaluate() == default_key  # a cache hit, tagged last-eval again
    second = _bake(store_dir)
    assert first["intervention"] != second["intervention"]  # sklearn/σ over all/argsort vs torch/train/lower
    cards = [(_store(store_dir).get(d["key"]).path / "README.md").read_text() for d in (first, second)]
    assert _cites(cards[0], reference) and not _cites(cards[0], default)
    assert _cites(cards[1], default) and not _cites(cards[1], reference)  # the old code cited the reference eval
    assert store.get(first["key"]).meta["source"] == reference_key
    assert store.get(second["key"]).meta["source"] == default_key

    # push --dry-run with no REF: the default eval's bake and card; a baked-model REF keeps its source
    pu = run_cli("--store", str(store_dir), "push", "--repo", "me/tiny-iti", "--dry-run", "--json", "-q")
    assert pu.code == 0, pu.stderr[-2000:]
    assert pu.json()["artifact"] == second["key"] and _cites(pu.json()["card"], default)
    pr = run_cli("--store", str(store_dir), "push", first["key"][:12], "--repo", "me/x", "--dry-run", "--json", "-q")
    assert pr.code == 0 and _cites(pr.json()["card"], reference)


def test_fallback_matches_the_intervention_shaping_switches(two_protocols, tqa_dir, monkeypatch):
    """An all-questions intervention given by REF (no known source): the eval with its switches,
    even when an eval of another protocol on the same chain and setting is newer."""
    from itictl.publish.final import for_eval
    from itictl.publish.modelcard import measured_by, render_card

    store_dir, evaluate = two_protocols
    monkeypatch.setenv("ITICTL_DATA", str(tqa_dir))
    default_key, reference_key = evaluate(), evaluate("--protocol", "reference")
    store = _store(store_dir)
    default, reference = store.get(default_key), store.get(reference_key)
    assert reference.manifest.doc["created"] >= default.manifest.doc["created"]
    for ev in (default, reference):
        inter = for_eval(store, ev).intervention
        assert measured_by(store, inter).key == ev.key
        assert _cites(render_card(store, inter), ev)
    # an explicit switch equal to the intervention's still matches; another backend does not
    inter = for_eval(store, default).intervention
    sk = evaluate("--backend", "sklearn")
    assert measured_by(store, inter).key == default_key and sk != default_key


def test_same_intervention_from_two_evals_is_baked_once_and_pushed_with_each_card(two_protocols, tqa_dir, monkeypatch):
    """--mc-positions reference changes only how MC is scored: both evals ship one intervention, so the
    second bake reuses the first's weights (the source is not in the key) and its README keeps citing
    the first eval, while `push` renders the card for the eval it resolves."""
    store_dir, evaluate = two_protocols
    monkeypatch.setenv("ITICTL_DATA", str(tqa_dir))
    a_key = evaluate()
    a = _bake(store_dir)
    b_key = evaluate("--mc-positions", "reference")
    r = run_cli("--store", str(store_dir), "bake", "--dtype", "float32", "--device", "cpu")
    said = " ".join(r.stderr.split())  # rich wraps long lines
    assert r.code == 0 and "(cached)" in said and "`itictl push` writes the card for eval" in said
    store = _store(store_dir)
    b = store.get(store.refs()["last-bake"])
    assert b.key == a["key"] and a_key != b_key and b.meta["source"] == a_key
    assert f"itictl eval `{a_key}`" in (b.path / "README.md").read_text()
    pu = run_cli("--store", str(store_dir), "push", "--repo", "me/tiny-iti", "--dry-run", "--json", "-q")
    assert pu.code == 0 and pu.json()["artifact"] == a["key"]
    assert f"itictl eval `{b_key}`" in pu.json()["card"] and f"itictl eval `{a_key}`" not in pu.json()["card"]
