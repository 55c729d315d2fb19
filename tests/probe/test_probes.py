"""Probes (itictl.probe.step): batched trainer vs scikit-learn, question splits, the probes artifact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from itictl.errors import BadInputError


def make_model_art(store, name: str = "fake-model"):
    def build(ctx):
        (ctx.out / "model.json").write_text(json.dumps({"name": name}))

    return store.produce("model", {"source": "test", "name": name}, {}, build)[0]


def make_acts_art(store, model_art, *, n_q=60, L=3, H=4, D=6, seed=0, fmt="tqa_mc2", q_offset=0):
    """A fabricated activations artifact: head (l, h) carries a label signal of strength (l*H+h)/(L*H)."""
    import h5py

    rng = np.random.RandomState(seed)
    rows, labels, qidx, aidx = [], [], [], []
    strength = (np.arange(L * H).reshape(L, H) / (L * H))[..., None] * rng.randn(L, H, D)  # [L,H,D]
    for q in range(n_q):
        n_a = rng.randint(2, 6)
        for a in range(n_a):
            y = int(a == 0 or rng.rand() < 0.3)
            x = rng.randn(L, H, D) + (2 * y - 1) * strength * 1.5 + 0.3 * rng.randn(1, 1, D)
            rows.append(x.reshape(L, H * D))
            labels.append(y)
            qidx.append(q + q_offset)
            aidx.append(a)

    def build(ctx):
        with h5py.File(ctx.out / "activations.h5", "w") as f:
            f.create_dataset("head_wise", data=np.stack(rows).astype(np.float16))
            f.create_dataset("label", data=np.array(labels, dtype=np.int8))
            f.create_dataset("question_index", data=np.array(qidx, dtype=np.int32))
            f.create_dataset("answer_index", data=np.array(aidx, dtype=np.int32))
            f.create_dataset("n_tokens", data=np.full(len(rows), 9, dtype=np.int32))
            f.attrs.update({"model": model_art.key, "L": L, "H": H, "D": D, "hidden": H * D + 2, "format": fmt,
                            "dtype": "float32", "store_dtype": "float16", "n_prompts": len(rows)})

    params = {"format": fmt, "seed": seed, "n_q": n_q, "layout": [L, H, D], "q_offset": q_offset}
    return store.produce("activations", params, {"model": model_art.key}, build)[0]


def test_batched_trainer_matches_sklearn_solution():
    from itictl.probe.step import fit_logreg_batched, fit_logreg_sklearn

    rng = np.random.RandomState(1)
    P, n, D = 6, 400, 10
    X = rng.randn(P, n, D) * rng.uniform(0.2, 3.0, size=(P, 1, D))  # unscaled features, like activations
    y = (X[0] @ rng.randn(D) + rng.randn(n) > 0.3).astype(int)
    w, b, iters = fit_logreg_batched(X, y)
    from sklearn.linear_model import LogisticRegression

    assert iters < 30
    for i in range(P):  # sklearn run to (near) exact convergence finds the same optimum
        clf = LogisticRegression(C=1.0, tol=1e-10, max_iter=20000).fit(X[i], y)
        assert np.allclose(w[i].numpy(), clf.coef_[0], atol=1e-5), i
        assert abs(float(b[i]) - clf.intercept_[0]) < 1e-5
    ws, bs = fit_logreg_sklearn(X, y, seed=0)  # the default (tol=1e-4) stops close to it
    assert np.abs(w.numpy() - ws).max() < 2e-2 and np.abs(b.numpy() - bs).max() < 2e-2
    # and it is the optimum of sklearn's objective: the gradient vanishes
    Xa = np.concatenate([X, np.ones((P, n, 1))], 2)
    wa = np.concatenate([w.numpy(), b.numpy()[:, None]], 1)
    p = 1 / (1 + np.exp(-np.einsum("pnd,pd->pn", Xa, wa)))
    grad = np.einsum("pnd,pn->pd", Xa, p - y) + np.concatenate([w.numpy(), np.zeros((P, 1))], 1)
    assert np.abs(grad).max() < 1e-3  # the objective sums n=400 losses


def test_batched_trainer_separable_data_stays_finite():
    from itictl.probe.step import fit_logreg_batched

    X = np.array([[[-2.0], [-1.0], [1.0], [2.0]]])
    w, b, _ = fit_logreg_batched(X, np.array([0, 0, 1, 1]))
    assert np.isfinite(w.numpy()).all() and float(w[0, 0]) > 0  # L2 keeps the separable optimum finite


def test_split_questions_are_disjoint_and_reproducible():
    from itictl.probe.step import split_questions

    qids = np.repeat(np.arange(10, 50), 3)
    s = split_questions(qids, folds=2, fold=0, val_ratio=0.2, seed=3, split="random")
    again = split_questions(qids, folds=2, fold=0, val_ratio=0.2, seed=3, split="random")
    other = split_questions(qids, folds=2, fold=1, val_ratio=0.2, seed=3, split="random")
    assert s == again
    tr, va, te = set(s["train"]), set(s["val"]), set(s["test"])
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert tr | va | te == set(range(10, 50))
    assert len(te) == 20 and len(va) == 4
    assert set(other["test"]) == tr | va  # the two test folds partition the questions
    cont = split_questions(qids, folds=2, fold=0, val_ratio=0.2, seed=3, split="contiguous")
    assert cont["test"] == list(range(10, 30))  # np.array_split of the sorted questions, like the reference


def test_run_probe_writes_artifact_and_caches(store):
    from itictl.probe.step import load_probes, run_probe

    acts = make_acts_art(store, make_model_art(store))
    art, cached = run_probe(store, acts, folds=2, fold=0, val_ratio=0.2, seed=42, split="random", backend="torch")
    assert not cached
    p = load_probes(art)
    assert p.val_acc.shape == (3, 4) and p.weight.shape == (3, 4, 6) and p.bias.shape == (3, 4)
    assert p.com.shape == (3, 4, 6)
    doc = p.doc
    assert doc["model_key"] == acts.parents["model"]
    qs = doc["questions"]
    assert not set(qs["train"]) & set(qs["test"]) and not set(qs["val"]) & set(qs["test"])
    # strong-signal heads (high l*H+h) beat the no-signal head (0, 0)
    assert p.val_acc[2, 3] > 0.8 and p.val_acc[0, 0] < p.val_acc[2, 3]
    assert art.file("heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # com = mean(true) - mean(false) over the train+val prompts, recomputed here independently
    import h5py

    with h5py.File(acts.file("activations.h5")) as f:
        hw = f["head_wise"][...].astype(np.float64).reshape(-1, 3, 4, 6)
        lab, q = f["label"][...], f["question_index"][...]
    sel = np.isin(q, qs["train"] + qs["val"])
    com = hw[sel & (lab == 1)].mean(0) - hw[sel & (lab == 0)].mean(0)
    assert np.allclose(p.com, com, atol=1e-4)
    again, cached2 = run_probe(store, acts, folds=2, fold=0, val_ratio=0.2, seed=42, split="random", backend="torch")
    assert cached2 and again.key == art.key


def test_torch_and_sklearn_backends_agree_on_accuracy(store):
    from itictl.probe.step import load_probes, run_probe

    acts = make_acts_art(store, make_model_art(store), n_q=80, seed=4)
    a_t, _ = run_probe(store, acts, folds=2, fold=1, val_ratio=0.2, seed=1, split="random", backend="torch")
    a_s, _ = run_probe(store, acts, folds=2, fold=1, val_ratio=0.2, seed=1, split="random", backend="sklearn")
    assert a_t.key != a_s.key
    t, s = load_probes(a_t), load_probes(a_s)
    assert t.doc["questions"] == s.doc["questions"]
    assert np.abs(t.val_acc - s.val_acc).mean() <= 0.002  # ≤ 0.2 points: the same optimum


@pytest.mark.parametrize("kw", [dict(folds=1), dict(fold=2), dict(fold=-1), dict(val_ratio=0.0), dict(val_ratio=1.0),
                                dict(split="shuffle"), dict(backend="jax")])
def test_bad_probe_options_write_nothing(store, kw):
    from itictl.probe.step import run_probe

    acts = make_acts_art(store, make_model_art(store), n_q=10)
    before = {a.key for a in store.ls()}
    args = dict(folds=2, fold=0, val_ratio=0.2, seed=42, split="random", backend="torch") | kw
    with pytest.raises(BadInputError):
        run_probe(store, acts, **args)
    assert {a.key for a in store.ls()} == before


def test_heatmap_text_sorted_rows():
    from itictl.probe.heatmap import sorted_rows, text_rows

    acc = np.array([[0.5, 0.9, 0.7], [0.6, 0.55, 0.8]])
    assert sorted_rows(acc).tolist() == [[0.9, 0.7, 0.5], [0.8, 0.6, 0.55]]
    lines = text_rows(acc)
    assert lines[0].startswith("L  1") and lines[0].endswith("0.80")  # top layer first
    assert lines[1].startswith("L  0") and "█" in lines[1]  # the global max is the darkest shade


# ---- integration: the embedded model's activations -------------------------------------------
def collect_mc2_acts(loaded, tqa_dir, n_questions: int):
    """Head-wise activations [N, L, H·D] at the last token of 'Q: … A: …' mc2 prompts, through the
    extraction engine (tree-packed: each question's prefix computed once; the engine equals plain
    per-prompt forwards, tests/extract), with labels and question indices."""
    from itictl.extract.engine import extract_items, tokenize_prompts

    data = json.loads((tqa_dir / "mc_task.json").read_text())[:n_questions]
    items = [(f"Q: {it['question']} A:", f" {ans}", lab, qi) for qi, it in enumerate(data)
             for ans, lab in it["mc2_targets"].items()]
    toks = tokenize_prompts(loaded.tokenizer, [q + a for q, a, _, _ in items], [q for q, _, _, _ in items])
    hw = extract_items(loaded.model, toks, batch_tokens=1024)["head_wise"]
    return hw, np.array([lab for *_, lab, _ in items]), np.array([qi for *_, qi in items])


def test_batched_probes_match_sklearn_on_embedded_model(embedded, tqa_dir):
    from itictl.probe.step import HeadActs, head_accuracy, split_questions, train_probes

    hw, lab, q = collect_mc2_acts(embedded, tqa_dir, 60)
    L, H, D = embedded.layout.L, embedded.layout.H, embedded.layout.D
    acts = HeadActs(hw.reshape(len(hw), L, H, D), lab, q, None)
    s = split_questions(q, folds=2, fold=0, val_ratio=0.2, seed=42, split="random")
    tr, va = np.flatnonzero(np.isin(q, s["train"])), np.flatnonzero(np.isin(q, s["val"]))
    w_t, b_t = train_probes(acts, tr, backend="torch", seed=42)
    w_s, b_s = train_probes(acts, tr, backend="sklearn", seed=42)
    acc_t, acc_s = head_accuracy(acts, va, w_t, b_t), head_accuracy(acts, va, w_s, b_s)
    assert np.abs(acc_t - acc_s).mean() <= 0.002, np.abs(acc_t - acc_s).mean()  # ≤ 0.2 points
    assert acc_t.max() > 0.6  # some head carries signal
