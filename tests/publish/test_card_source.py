"""The model card cites the eval a bake came from (publish.final.Final.source, threaded through
bake / export / push), and measured_by's fallback for an intervention given by REF accepts only an
eval whose intervention-shaping protocol switches (backend, sigma_from, tie_break) match it.

Regression: after `eval`, `eval --protocol reference`, `bake`, `eval` (cache hit: last-eval is the
default eval again), `bake`, both cards cited the reference eval (the newest on the same chain)."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli

N_QUESTIONS = 12


@pytest.fixture(scope="module")
def two_protocols(tmp_path_factory, tqa_dir):
    """A store with a tiny model, its store dir, and a function running `eval` with extra options."""
    from tests.reliability.tinymodel import write_tiny_model

    root = tmp_path_factory.mktemp("card_source")
    tiny = write_tiny_model(root / "tiny")
    store = root / "store"

    def evaluate(*extra: str) -> str:
        r = run_cli("--store", str(store), "eval", "--model", str(tiny), "--data", str(tqa_dir), "--limit-questions",
                    str(N_QUESTIONS), "--heads", "3", "--alpha", "0,60", "--metrics", "mc", "--device", "cpu",
                    "--seed", "5", *extra, "--json", "-q")
        assert r.code == 0, r.stderr[-2000:]
        return r.json()["key"]

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
    assert store.get(first["key"]).params["source"] == reference_key
    assert store.get(second["key"]).params["source"] == default_key

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


def test_same_intervention_from_two_evals_gives_two_cards(two_protocols, tqa_dir, monkeypatch):
    """--mc-positions reference changes only how MC is scored: both evals ship one intervention,
    and each bake's card (its key holds the source) cites its own eval."""
    store_dir, evaluate = two_protocols
    monkeypatch.setenv("ITICTL_DATA", str(tqa_dir))
    a_key = evaluate()
    a = _bake(store_dir)
    b_key = evaluate("--mc-positions", "reference")
    b = _bake(store_dir)
    assert a["intervention"] == b["intervention"] and a["key"] != b["key"] and a_key != b_key
    store = _store(store_dir)
    for baked, ev_key in ((a, a_key), (b, b_key)):
        card = (store.get(baked["key"]).path / "README.md").read_text()
        assert f"itictl eval `{ev_key}`" in card
    again = _bake(store_dir)  # last-eval is still b: a cache hit of b's bake
    assert again["key"] == b["key"] and again["cached"] is True
