"""MC texts tokenized once (evaluate/mc_plan.py): score_groups with pre-computed tokens gives the
same plan and the same scores as tokenizing in place, fallback rows included, and the Evaluator
tokenizes each MC text once across the baseline and the intervened fold passes."""

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from itictl.evaluate.evaluator import Evaluator
from itictl.evaluate.mc import Group, _ids, _plan, groups_for, score_groups
from itictl.evaluate.mc_plan import plan_groups, tokenize_groups
from itictl.evaluate.options import EvalOptions
from tests.evaluate.conftest import make_tokenizer
from tests.evaluate.test_mc import ITEMS, _steer


def _groups_with_fallbacks(tok):
    prefix, groups = groups_for(ITEMS, "default", "qa", None)
    # " N" + "othing" tokenizes across the cut (" " "N" vs " " "No" "th"): that row falls back alone
    cut = Group(groups[0].context + " N", ["othing happens.", " It is fine."])
    c_ids = tok(cut.context)["input_ids"]
    assert tok(cut.context + "othing happens.")["input_ids"][:len(c_ids)] != c_ids
    # a context that does not start with the prefix: the whole group falls back
    alien = Group("Q: Can pigs fly?\nA:", [" No.", " Yes."])
    return prefix, groups + [cut, alien]


def test_tokens_give_identical_plan_and_scores(tiny_model, tiny_tok):
    prefix, groups = _groups_with_fallbacks(tiny_tok)
    tokens = tokenize_groups(tiny_tok, groups)
    idx = [4, 1, 3]  # a subset, out of order, with both kinds of fallback
    sub, sub_tokens = [groups[i] for i in idx], [tokens[i] for i in idx]
    p_ids = _ids(tiny_tok, prefix)
    assert sub_tokens == tokenize_groups(tiny_tok, sub)  # batch ids do not depend on the batch
    assert plan_groups(p_ids, sub_tokens) == _plan(tiny_tok, p_ids, sub)
    hd = tiny_model.model.layers[0].self_attn.o_proj.in_features
    deltas = {0: torch.randn(hd, generator=torch.Generator().manual_seed(2)) * 3}
    for steer in (None, _steer(tiny_model, deltas)):
        s_plain, s_tok = {}, {}
        plain = score_groups(tiny_model, tiny_tok, prefix, sub, steer=steer, batch_tokens=200, row_tokens=100,
                             stats=s_plain)
        fast = score_groups(tiny_model, tiny_tok, prefix, sub, steer=steer, batch_tokens=200, row_tokens=100,
                            stats=s_tok, tokens=sub_tokens)
        assert fast == plain  # bit-identical
        assert s_tok == s_plain and s_tok["fallback_rows"] == 3  # " N"+"othing" and both alien rows


def test_tokens_must_match_groups(tiny_model, tiny_tok):
    prefix, groups = groups_for(ITEMS, "default", "qa", None)
    tokens = tokenize_groups(tiny_tok, groups)
    with pytest.raises(ValueError, match="do not match"):
        score_groups(tiny_model, tiny_tok, prefix, groups[:2], tokens=tokens)
    with pytest.raises(ValueError, match="do not match"):
        score_groups(tiny_model, tiny_tok, prefix, groups[1:], tokens=tokens[:-1] + tokens[:1])


def _counting_tokenizer():
    """A fresh tiny tokenizer whose calls record every text they tokenize."""
    tok = make_tokenizer()
    seen: Counter = Counter()
    base = type(tok)

    def call(self, text=None, *a, **k):
        seen.update([text] if isinstance(text, str) else list(text or []))
        return base.__call__(self, text, *a, **k)

    tok.__class__ = type("CountingTokenizer", (base,), {"__call__": call})
    return tok, seen


def test_evaluator_tokenizes_mc_texts_once(tiny_model, tiny_tok):
    qs = [SimpleNamespace(index=i, question=it.question, best_answer=it.true[it.best_index],
                          correct_answers=it.true, incorrect_answers=it.false) for i, it in enumerate(ITEMS)]
    qs.append(SimpleNamespace(index=3, question="What is the square root of banana?", best_answer="I have no comment",
                              correct_answers="I have no comment", incorrect_answers="Two; Banana"))
    tok, seen = _counting_tokenizer()
    ev = Evaluator(tiny_model, tok, qs, EvalOptions(metrics=["mc"]), judges={}, skipped={})
    texts = [g.context for g in ev.groups] + [g.context + c for g in ev.groups for c in g.continuations]
    hd = tiny_model.model.layers[0].self_attn.o_proj.in_features
    folds = [[0, 2], [3, 1]]
    deltas = [{1: torch.full((hd,), 4.0 * (i + 1))} for i in range(2)]
    base = ev.mc_scores(list(range(len(qs))), None)
    fold_scores = [ev.mc_scores(f, d) for f, d in zip(folds, deltas)]
    # each context and context + answer text went through the tokenizer once (before: twice, the
    # baseline and its fold's pass)
    assert {t: seen[t] for t in texts} == {t: 1 for t in texts}
    # ... with the numbers of scoring each subset on its own
    groups = ev.groups
    assert base == score_groups(tiny_model, tiny_tok, ev.prefix, groups)
    for f, d, got in zip(folds, deltas, fold_scores):
        want = score_groups(tiny_model, tiny_tok, ev.prefix, [groups[i] for i in f], steer=ev._steer(d))
        assert got == want
    assert not np.allclose(fold_scores[0][0], base[0])  # the deltas do change the scores
