"""The reference protocol against the oracle: MC1/MC2/MC3 with the reference's literal MC positions
(tqa_run_probs: log_probs[3:] after the question, edits from len(tokens(input_prompt)) + 4) at α = 0
and α > 0 on tiny random Llama models and the embedded model; the reference's folds (one seeded
stream) and σ over all tuning activations, through itictl's probe and intervene steps."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from tests.oracle import itictl_side as it
from tests.oracle import reference as ref
from tests.oracle.test_oracle_mc import EMBEDDED_FP32_TOL, TINY_QUESTIONS, TOL, WORD_QUESTIONS, _intervention, _questions, _tiny


def _compare(model, tok, questions, deltas, ivs, alpha, record_diff, label, tol=TOL, **packing):
    """itictl (positions='reference') vs the oracle (REFERENCE protocol) -> itictl's scores."""
    stats: dict = {}
    _, scores, metrics = it.mc_scores(model, tok, questions, deltas if alpha else None, positions="reference",
                                      stats=stats, **packing)
    score_diff = mc2_diff = 0.0
    for q, s, m in zip(questions, scores, metrics):
        o = ref.run_probs(model, tok, q.question, q.best_answer, q.correct_answers, q.incorrect_answers,
                          protocol=ref.REFERENCE, ivs=ivs if alpha else None, alpha=alpha)
        score_diff = max(score_diff, float(np.abs(np.asarray(s) - np.asarray(o["true"] + o["false"])).max()))
        assert m["MC1"] == o["MC1"] and m["MC3"] == o["MC3"]
        mc2_diff = max(mc2_diff, abs(m["MC2"] - o["MC2"]))
    record_diff(f"reference MC answer log-prob sums ({label})", score_diff)
    record_diff(f"reference MC2 ({label})", mc2_diff)
    assert score_diff < tol and mc2_diff < TOL
    return scores, stats


@pytest.mark.parametrize("kind", ["bpe", "words"])
@pytest.mark.parametrize("packing", [{}, {"row_tokens": 64, "batch_tokens": 200}], ids=["default", "tight"])
def test_reference_mc_equals_oracle_on_tiny_llama(kind, packing, record_diff):
    model, tok = _tiny(kind)
    qs = _questions(TINY_QUESTIONS if kind == "bpe" else WORD_QUESTIONS)
    cfg = model.config
    L, H, D = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.head_dim
    tuning = np.random.default_rng(1).standard_normal((40, L, H, D))
    deltas, ivs = _intervention(L, H, D, tuning, k=3, alpha=5.0)
    plain, _ = _compare(model, tok, qs, deltas, ivs, 0.0, record_diff, f"tiny {kind}, α=0", **packing)
    steered, _ = _compare(model, tok, qs, deltas, ivs, 5.0, record_diff, f"tiny {kind}, α=5", **packing)
    assert max(abs(a - b) for r, s in zip(plain, steered) for a, b in zip(r, s)) > 1e-2


def test_reference_naive_path_equals_oracle(record_diff):
    """The one-answer-per-forward path (models without tree masks, rows that do not split) too."""
    from itictl.evaluate.mc import groups_for, mc_items, score_groups_naive
    from itictl.evaluate.mc_positions import REFERENCE

    model, tok = _tiny("bpe")
    qs = _questions(TINY_QUESTIONS)
    cfg = model.config
    L, H, D = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.head_dim
    deltas, ivs = _intervention(L, H, D, np.random.default_rng(2).standard_normal((40, L, H, D)), k=4, alpha=8.0)
    _, groups = groups_for(mc_items(qs), "default", "qa", None, positions="reference")
    got = score_groups_naive(model, tok, groups, it.steer_for(model, deltas), scoring=REFERENCE)
    for q, s in zip(qs, got):
        o = ref.run_probs(model, tok, q.question, q.best_answer, q.correct_answers, q.incorrect_answers,
                          protocol=ref.REFERENCE, ivs=ivs, alpha=8.0)
        diff = float(np.abs(np.asarray(s) - np.asarray(o["true"] + o["false"])).max())
        assert record_diff("reference MC, naive path (tiny bpe, α=8)", diff) < TOL


def test_reference_mc_equals_oracle_on_embedded_model(embedded_case, record_diff):
    c = embedded_case
    model, tok, qs, deltas, ivs = c.model, c.tok, c.qs, c.deltas, c.ivs
    plain, st = _compare(model, tok, qs, deltas, ivs, 0.0, record_diff, "embedded fp32, α=0", tol=EMBEDDED_FP32_TOL)
    assert st["fallback_rows"] == 0  # SmolLM2 splits "question" | "\nA: answer" cleanly: the packed path
    steered, _ = _compare(model, tok, qs, deltas, ivs, 15.0, record_diff, "embedded fp32, α=15", tol=EMBEDDED_FP32_TOL)
    _, itictl_steered, _ = it.mc_scores(model, tok, qs, deltas)
    # SmolLM2 tokenizes "\nA:" as 3 tokens, so at α = 0 the reference scores exactly the answer tokens
    # (itictl's numbers); with the intervention the edit starts one token later than itictl's
    _, itictl_plain, _ = it.mc_scores(model, tok, qs)
    assert max(abs(a - b) for r, s in zip(plain, itictl_plain) for a, b in zip(r, s)) < EMBEDDED_FP32_TOL
    assert max(abs(a - b) for r, s in zip(steered, itictl_steered) for a, b in zip(r, s)) > 1e-3
    import copy

    m64 = copy.deepcopy(model).double()  # fp32 agrees to the fp32 noise floor; fp64 to TOL (as test_oracle_mc)
    _compare(m64, tok, qs[:1], deltas, ivs, 15.0, record_diff, "embedded fp64, α=15")


# ---- folds and σ ---------------------------------------------------------------------------------
L_, H_, D_ = 3, 4, 6


def _h5(art):
    with h5py.File(art.file("activations.h5")) as f:
        return f["head_wise"][...].reshape(-1, L_, H_, D_), f["question_index"][...].astype(int)


@pytest.mark.parametrize("n_q,folds", [(60, 2), (61, 3)])
def test_reference_folds_equal_validate_2fold(n_q, folds):
    from itictl.probe.step import split_questions

    want = ref.reference_folds(n_q, folds, 0.2, seed=5)
    qidx = np.repeat(np.arange(n_q), 3)  # every question has several prompts
    for i in range(folds):
        got = split_questions(qidx, folds=folds, fold=i, val_ratio=0.2, seed=5, split="contiguous",
                              val_draw="stream")
        assert got == {k: sorted(v) for k, v in want[i].items()}
    if folds > 1:  # the per-fold-seeded draw differs from the stream after fold 0
        seeded = split_questions(qidx, folds=folds, fold=1, val_ratio=0.2, seed=5, split="contiguous")
        assert seeded["train"] != sorted(want[1]["train"])


def test_reference_sigma_over_all_tuning_questions(store, record_diff):
    from itictl.intervene.build import read_intervention, run_intervene
    from itictl.probe.step import load_probes, run_probe
    from tests.probe.test_probes import make_acts_art, make_model_art

    model = make_model_art(store)
    acts = make_acts_art(store, model, n_q=60, L=L_, H=H_, D=D_, seed=0)
    tuning = make_acts_art(store, model, n_q=60, L=L_, H=H_, D=D_, seed=7, fmt="tqa_gen_end_q")
    probes_art, _ = run_probe(store, acts, folds=2, fold=1, val_ratio=0.2, seed=3, split="contiguous",
                              backend="torch", val_draw="stream")
    p = load_probes(probes_art)
    t_hw, t_q = _h5(tuning)
    assert set(t_q.tolist()) - set(p.doc["questions"]["train"] + p.doc["questions"]["val"])  # a test fold exists
    for sigma_from, rows in (("all", np.ones(len(t_q), bool)),
                             ("train", np.isin(t_q, p.doc["questions"]["train"] + p.doc["questions"]["val"]))):
        art, _ = run_intervene(store, probes_art, tuning, heads=5, alpha=3.0, seed=1, sigma_from=sigma_from,
                               tie_break="argsort")
        heads = ref.reference_top_heads(p.val_acc, 5)
        ivs = ref.interventions(heads, [p.com[l, h] for l, h in heads], t_hw[rows])
        doc = read_intervention(art)
        assert [tuple(x) for x in doc["heads"]] == heads and doc["sigma_from"] == sigma_from
        sig = {(l, h): s for l, hs in ivs.items() for h, _, s in hs}
        diff = max(abs(s - sig[tuple(lh)]) for lh, s in zip(doc["heads"], doc["sigma"]))
        assert record_diff(f"reference sigma ({sigma_from})", diff) < TOL
