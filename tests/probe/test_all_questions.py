"""Probes on all questions (fold None, the final intervention for bake/push, issue 13.4): every
question in the train/val split, no test fold, a key of its own, σ over every tuning prompt."""

from __future__ import annotations

import numpy as np
import pytest

from itictl.errors import BadInputError
from tests.probe.test_probes import make_acts_art, make_model_art


def test_fold_none_uses_every_question_and_has_its_own_key(store):
    from itictl.data import train_val_split
    from itictl.probe.step import load_probes, run_probe

    acts = make_acts_art(store, make_model_art(store), n_q=40, seed=2)
    kw = dict(folds=2, val_ratio=0.2, seed=7, split="random", backend="torch")
    art, cached = run_probe(store, acts, fold=None, **kw)
    assert not cached and art.params["fold"] == "all" and "folds" not in art.params
    qs = load_probes(art).doc["questions"]
    assert qs["test"] == [] and not set(qs["train"]) & set(qs["val"])
    assert sorted(qs["train"] + qs["val"]) == list(range(40))  # every question
    tr, va = train_val_split(np.arange(40), 0.2, 7)  # the reference's edit_weight.py draw
    assert qs["train"] == sorted(tr.tolist()) and qs["val"] == sorted(va.tolist()) and len(va) == 8
    assert load_probes(art).doc["test_acc"] is None
    folds = {run_probe(store, acts, fold=f, **kw)[0].key for f in (0, 1)}
    assert art.key not in folds and len(folds) == 2
    # folds / split do not change an all-questions fit: one key
    assert run_probe(store, acts, fold=None, **{**kw, "folds": 3, "split": "contiguous"}) == (art, True)
    assert run_probe(store, acts, fold=None, **{**kw, "seed": 8})[0].key != art.key


def test_all_questions_sigma_uses_every_tuning_prompt(store):
    from itictl.intervene.build import read_intervention, run_intervene
    from itictl.probe.step import run_probe

    model = make_model_art(store)
    acts = make_acts_art(store, model, n_q=30, seed=3)
    tuning = make_acts_art(store, model, n_q=30, seed=4, fmt="tqa_gen_end_q")
    import h5py

    with h5py.File(tuning.file("activations.h5")) as f:
        n_tuning = len(f["label"])
    kw = dict(folds=2, val_ratio=0.2, seed=1, split="random", backend="torch")
    every, _ = run_probe(store, acts, fold=None, **kw)
    fold0, _ = run_probe(store, acts, fold=0, **kw)
    iv_all, _ = run_intervene(store, every, tuning, heads=3, alpha=2.0)
    iv_0, _ = run_intervene(store, fold0, tuning, heads=3, alpha=2.0)
    assert read_intervention(iv_all)["n_tuning_prompts"] == n_tuning  # σ over all tuning prompts
    assert read_intervention(iv_0)["n_tuning_prompts"] < n_tuning  # a fold: its training questions only
    assert iv_all.key != iv_0.key


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("val_ratio", [0.1, 0.2, 0.5, 0.9, 1e-17])
def test_check_questions_agrees_with_the_all_questions_split(n, val_ratio):
    """pipeline.check_questions (before any work) fails exactly when the probe step's split would."""
    from itictl.pipeline import ChainSpec, check_questions
    from itictl.probe.step import split_all

    spec = ChainSpec(val_ratio=val_ratio)
    try:
        split_all(np.arange(n), val_ratio=val_ratio, seed=0)
    except BadInputError:
        with pytest.raises(BadInputError, match="part of"):
            check_questions(n, spec, None)
        return
    check_questions(n, spec, None)
    ChainSpec(folds=3).check_fold(None)  # all questions: allowed with any --folds
