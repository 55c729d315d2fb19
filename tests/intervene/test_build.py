"""Interventions (itictl.intervene.build): top-K heads, directions, σ over training questions, validation."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from itictl.errors import BadInputError
from tests.probe.test_probes import make_acts_art, make_model_art

L, H, D = 3, 4, 6


@pytest.fixture
def chain(store):
    from itictl.probe.step import run_probe

    model = make_model_art(store)
    acts = make_acts_art(store, model, n_q=60, L=L, H=H, D=D, seed=0)
    tuning = make_acts_art(store, model, n_q=60, L=L, H=H, D=D, seed=7, fmt="tqa_gen_end_q")
    probes, _ = run_probe(store, acts, folds=2, fold=0, val_ratio=0.2, seed=42, split="random", backend="torch")
    return store, model, probes, tuning


def _tuning_rows(tuning, questions):
    with h5py.File(tuning.file("activations.h5")) as f:
        hw = f["head_wise"][...].astype(np.float64).reshape(-1, L, H, D)
        q = f["question_index"][...]
    return hw, q


def test_intervention_deltas_follow_the_method(chain):
    from itictl.intervene.build import load_deltas, read_intervention, run_intervene
    from itictl.probe.step import load_probes

    store, _, probes_art, tuning = chain
    art, cached = run_intervene(store, probes_art, tuning, heads=3, alpha=5.0, direction="com", seed=0)
    assert not cached
    p = load_probes(probes_art)
    doc = read_intervention(art)
    flat = p.val_acc.reshape(-1)
    assert sorted(flat[[l * H + h for l, h in doc["heads"]]], reverse=True) == sorted(flat, reverse=True)[:3]
    deltas = load_deltas(art)
    assert sorted(deltas) == sorted({l for l, _ in doc["heads"]}) == doc["layers"]
    hw, q = _tuning_rows(tuning, None)
    keep = np.isin(q, p.doc["questions"]["train"] + p.doc["questions"]["val"])
    assert 0 < keep.sum() < len(q)  # the test fold's tuning prompts exist and are excluded
    for (l, h), sigma in zip(doc["heads"], doc["sigma"]):
        theta = p.com[l, h].astype(np.float64)
        theta /= np.linalg.norm(theta)
        exp_sigma = np.std(hw[keep, l, h] @ theta)
        assert math.isclose(sigma, exp_sigma, rel_tol=1e-5)
        assert not math.isclose(sigma, np.std(hw[:, l, h] @ theta), rel_tol=1e-4)  # all-questions σ differs
        got = deltas[l][h * D:(h + 1) * D].double().numpy()
        assert np.allclose(got, 5.0 * exp_sigma * theta, atol=1e-5)
    chosen = {tuple(x) for x in doc["heads"]}
    for l, vec in deltas.items():
        assert vec.shape == (H * D,)
        for h in range(H):
            if (l, h) not in chosen:
                assert not vec[h * D:(h + 1) * D].any()
    again, cached2 = run_intervene(store, probes_art, tuning, heads=3, alpha=5.0, direction="com", seed=0)
    assert cached2 and again.key == art.key


def test_probe_and_random_directions(chain):
    from itictl.intervene.build import load_deltas, read_intervention, run_intervene
    from itictl.probe.step import load_probes

    store, _, probes_art, tuning = chain
    p = load_probes(probes_art)
    a_probe, _ = run_intervene(store, probes_art, tuning, heads=2, alpha=1.0, direction="probe", seed=0)
    doc = read_intervention(a_probe)
    l, h = doc["heads"][0]
    w = p.weight[l, h] / np.linalg.norm(p.weight[l, h])
    got = load_deltas(a_probe)[l][h * D:(h + 1) * D].numpy()
    assert np.allclose(got / np.linalg.norm(got), w, atol=1e-5)
    r1, _ = run_intervene(store, probes_art, tuning, heads=2, alpha=1.0, direction="random", seed=1)
    r1b, cached = run_intervene(store, probes_art, tuning, heads=2, alpha=1.0, direction="random", seed=1)
    r2, _ = run_intervene(store, probes_art, tuning, heads=2, alpha=1.0, direction="random", seed=2)
    assert cached and r1b.key == r1.key
    d1, d2 = load_deltas(r1), load_deltas(r2)
    assert not np.allclose(d1[l].numpy(), d2[l].numpy())


@pytest.mark.parametrize("kw", [dict(heads=0), dict(heads=-3), dict(heads=L * H + 1), dict(alpha=float("nan")),
                                dict(alpha=float("inf")), dict(direction="mean")])
def test_bad_input_writes_nothing(chain, kw):
    from itictl.intervene.build import run_intervene

    store, _, probes_art, tuning = chain
    before = {a.key for a in store.ls()}
    args = dict(heads=2, alpha=1.0, direction="com", seed=0) | kw
    with pytest.raises(BadInputError) as e:
        run_intervene(store, probes_art, tuning, **args)
    assert "\n" not in e.value.one_line()
    assert {a.key for a in store.ls()} == before


def test_probes_from_another_model_are_refused(chain):
    from itictl.intervene.build import run_intervene

    store, model, probes_art, tuning = chain
    other = make_model_art(store, "other-model")
    before = {a.key for a in store.ls()}
    with pytest.raises(BadInputError, match="trained on model"):
        run_intervene(store, probes_art, tuning, heads=2, alpha=1.0, model_key=other.key)
    other_tuning = make_acts_art(store, other, n_q=60, L=L, H=H, D=D, seed=7, fmt="tqa_gen_end_q")
    before.add(other_tuning.key)
    with pytest.raises(BadInputError, match="tuning activations come from model"):
        run_intervene(store, probes_art, other_tuning, heads=2, alpha=1.0)
    assert {a.key for a in store.ls()} == before
    art, _ = run_intervene(store, probes_art, tuning, heads=2, alpha=1.0, model_key=model.key)  # the right model
    assert art.kind == "intervention"


def test_top_heads_tie_break():
    from itictl.intervene.build import top_heads

    acc = np.array([[0.5, 0.9], [0.9, 0.7]])
    assert top_heads(acc, 3) == [(0, 1), (1, 0), (1, 1)]


@pytest.mark.parametrize("args", [("--heads", "0", "--alpha", "1"), ("--heads", "4", "--alpha", "nan"),
                                  ("--heads", "4", "--alpha", "inf"), ("--heads", "4", "--alpha", "1", "--direction", "up")])
def test_cli_bad_input_is_one_line_exit_4(cli, args, tmp_path):
    r = cli("intervene", *args, "--json")
    assert r.code == 4, r.stderr
    assert r.stdout == ""
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert not (tmp_path / "cli-store" / "objects").exists() or not any((tmp_path / "cli-store" / "objects").iterdir())
