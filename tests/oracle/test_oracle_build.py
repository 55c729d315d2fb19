"""Heads, directions and σ: itictl's probe + intervene steps (run_probe, run_intervene →
build_deltas) against the plain-numpy oracle on fabricated activations, for every direction."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from tests.oracle import reference as ref
from tests.probe.test_probes import make_acts_art, make_model_art

L, H, D = 3, 4, 6
TOL = 1e-5


@pytest.fixture
def chain(store):
    from itictl.probe.step import run_probe

    model = make_model_art(store)
    acts = make_acts_art(store, model, n_q=60, L=L, H=H, D=D, seed=0)
    tuning = make_acts_art(store, model, n_q=60, L=L, H=H, D=D, seed=7, fmt="tqa_gen_end_q")
    probes, _ = run_probe(store, acts, folds=2, fold=1, val_ratio=0.2, seed=3, split="random", backend="torch")
    return store, acts, probes, tuning


def _h5(art):
    with h5py.File(art.file("activations.h5")) as f:
        return (f["head_wise"][...].reshape(-1, L, H, D), f["label"][...].astype(int),
                f["question_index"][...].astype(int))


def _delta_diff(deltas, ivs, alpha) -> float:
    """max |itictl δ − oracle α·σ·θ| over every slice (zeros where the oracle has no head)."""
    want = {l: np.zeros(H * D) for l in ivs}
    for l, heads in ivs.items():
        for h, theta, sigma in heads:
            want[l][h * D:(h + 1) * D] = alpha * sigma * theta
    assert sorted(deltas) == sorted(want)
    return max(float(np.abs(deltas[l].double().numpy() - want[l]).max()) for l in want)


@pytest.mark.parametrize("direction", ["com", "probe", "random"])
def test_intervention_equals_oracle(chain, direction, record_diff):
    from itictl.intervene.build import load_deltas, read_intervention, run_intervene
    from itictl.probe.step import load_probes

    store, acts, probes_art, tuning = chain
    k, alpha, seed = 5, 7.0, 11
    art, _ = run_intervene(store, probes_art, tuning, heads=k, alpha=alpha, direction=direction, seed=seed)
    p = load_probes(probes_art)
    hw, labels, qidx = _h5(acts)
    t_hw, _, t_qidx = _h5(tuning)
    train_val = p.doc["questions"]["train"] + p.doc["questions"]["val"]
    if direction == "random":
        heads, raw = ref.random_heads_and_directions(L, H, D, k, seed)
    else:
        heads = ref.top_heads(p.val_acc, k)
        if direction == "com":
            com = ref.com_directions(hw, labels, qidx, train_val)
            record_diff("com direction (probe step) vs oracle", np.abs(p.com - com).max())
            assert np.allclose(p.com, com, atol=TOL)
            raw = [com[l, h] for l, h in heads]
        else:
            raw = [p.weight[l, h] for l, h in heads]
    tuning_rows = np.array([q in set(train_val) for q in t_qidx])
    ivs = ref.interventions(heads, raw, t_hw[tuning_rows])
    doc = read_intervention(art)
    assert sorted(map(tuple, doc["heads"])) == sorted(heads)
    sig = {(l, h): s for l, hs in ivs.items() for h, _, s in hs}
    sigma_diff = max(abs(s - sig[tuple(lh)]) for lh, s in zip(doc["heads"], doc["sigma"]))
    assert record_diff(f"sigma ({direction})", sigma_diff) < TOL
    assert record_diff(f"deltas ({direction})", _delta_diff(load_deltas(art), ivs, alpha)) < TOL
