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


def test_random_means_random_heads_and_directions(chain):
    # the reference's use_random_dir: K heads from a permutation of all L·H, Gaussian directions
    from itictl.intervene.build import load_deltas, read_intervention, run_intervene, top_heads
    from itictl.probe.step import load_probes

    store, _, probes_art, tuning = chain
    p = load_probes(probes_art)
    k = 4
    probe_heads = set(top_heads(p.val_acc, k))
    docs, deltas = {}, {}
    for seed in (1, 2, 3):
        art, _ = run_intervene(store, probes_art, tuning, heads=k, alpha=1.0, direction="random", seed=seed)
        docs[seed], deltas[seed] = read_intervention(art), load_deltas(art)
        heads = [tuple(x) for x in docs[seed]["heads"]]
        assert len(set(heads)) == k and all(0 <= l < L and 0 <= h < H for l, h in heads)
        assert set(heads) != probe_heads  # not the probe ranking
        rng = np.random.default_rng(seed)  # the documented protocol: permutation, then directions
        assert heads == [(int(i // H), int(i % H)) for i in rng.permutation(L * H)[:k]]
        theta = rng.standard_normal((k, D))
        theta /= np.linalg.norm(theta, axis=1, keepdims=True)
        for i, ((l, h), sigma) in enumerate(zip(heads, docs[seed]["sigma"])):
            got = deltas[seed][l][h * D:(h + 1) * D].double().numpy()
            assert np.allclose(got, sigma * theta[i], atol=1e-6)
    assert len({tuple(map(tuple, d["heads"])) for d in docs.values()}) == 3  # the seed moves the heads
    again, cached = run_intervene(store, probes_art, tuning, heads=k, alpha=1.0, direction="random", seed=1)
    assert cached and read_intervention(again)["heads"] == docs[1]["heads"]
    again_deltas = load_deltas(again)
    assert all(np.array_equal(again_deltas[l].numpy(), v.numpy()) for l, v in deltas[1].items())


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


def test_check_deltas_fit_is_the_one_fit_check():
    """One check (layers in range, H·D features) behind steering, bake and import; GPT-2's Conv1D
    o_proj (no in_features) is checked too."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from itictl.intervene.build import check_deltas_fit
    from itictl.intervene.steering import intervened
    from itictl.publish.bake import residual_shifts

    check_deltas_fit({0: torch.zeros(8), 2: np.zeros(8)}, 3, 8)
    check_deltas_fit({0: torch.zeros(7)}, 3, None)  # width unknown: layers only
    with pytest.raises(BadInputError, match="layer 3 but model x has 3 layers"):
        check_deltas_fit({3: torch.zeros(8)}, 3, 8, model_label="model x")
    with pytest.raises(BadInputError, match="7 features but the model's o_proj takes 8"):
        check_deltas_fit({1: np.zeros(7)}, 3, 8)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=2, vocab_size=32, n_positions=16)).eval()
    for bad, text in (({0: torch.zeros(15)}, "15 features but the model's o_proj takes 16"),
                      ({2: torch.zeros(16)}, "layer 2 but the model has 2 layers")):
        with pytest.raises(BadInputError, match=text):
            with intervened(gpt2, bad):
                pass
        with pytest.raises(BadInputError, match=text):
            residual_shifts(gpt2, bad)


def test_sigma_over_rows_equals_sigma_over_the_selected_copy():
    """build_deltas(rows=…) gathers per chosen head instead of copying the selection: same bits."""
    from itictl.intervene.build import build_deltas
    from tests.oracle.itictl_side import probes_like

    rng = np.random.default_rng(3)
    hw = rng.normal(size=(40, L, H, D)).astype(np.float16)
    probes = probes_like(rng.uniform(0.5, 1, size=(L, H)), rng.normal(size=(L, H, D)))
    rows = np.sort(rng.choice(40, size=23, replace=False))
    got = build_deltas(probes, hw, heads=5, alpha=7.0, direction="com", seed=1, rows=rows)
    want = build_deltas(probes, hw[rows], heads=5, alpha=7.0, direction="com", seed=1)
    assert got[1] == want[1] and np.array_equal(got[2], want[2])
    assert all(np.array_equal(got[0][layer], want[0][layer]) for layer in want[0]) and got[0].keys() == want[0].keys()
    assert not np.array_equal(build_deltas(probes, hw, heads=5, alpha=7.0, direction="com", seed=1)[2], want[2])
