"""Prompt formats: exact counts per format, text/prefix shapes, labels, tqa_gen_end_q draws."""

from __future__ import annotations

import numpy as np
import pytest

from itictl.data import FORMATS, build_prompts, prompt_count
from itictl.data.prompts import other_questions
from itictl.errors import BadInputError

# exact prompt counts of the shipped TruthfulQA files (tqa_gen: 5,918 generation answers minus
# the 31 empty pieces from trailing ';' that TruthfulQA's split drops; see docs/data.md)
EXPECTED = {"tqa_mc2": 5882, "tqa_gen": 5887, "tqa_gen_end_q": 5887}


@pytest.mark.parametrize("fmt", FORMATS)
def test_prompt_counts(tqa, fmt):
    prompts = build_prompts(tqa, fmt)
    assert len(prompts) == prompt_count(tqa, fmt) == EXPECTED[fmt]
    qi = [p.question_index for p in prompts]
    assert qi == sorted(qi) and set(qi) == set(range(817))  # multiple-choice question order
    for p in prompts:
        assert p.text.startswith(p.prefix + " ") and p.prefix.endswith(" A:") and p.prefix.startswith("Q: ")
        assert p.label in (0, 1) and p.category == tqa.questions[p.question_index].category


def test_tqa_mc2_is_every_mc2_choice(tqa):
    prompts = build_prompts(tqa, "tqa_mc2")
    flat = [(q.index, j, a, l) for q in tqa.questions for j, (a, l) in enumerate(q.mc2_targets)]
    assert [(p.question_index, p.answer_index, p.label) for p in prompts] == [(i, j, l) for i, j, _, l in flat]
    assert [p.text for p in prompts] == [f"Q: {tqa.questions[i].question} A: {a}" for i, _, a, _ in flat]
    assert sum(p.label for p in prompts) == sum(l for *_, l in flat)


def test_tqa_gen_correct_then_incorrect(tqa):
    prompts = build_prompts(tqa, "tqa_gen")
    q = tqa.questions[5]
    mine = [p for p in prompts if p.question_index == 5]
    n_c = len(q.correct_answers)
    assert [p.label for p in mine] == [1] * n_c + [0] * len(q.incorrect_answers)
    assert [p.text for p in mine] == [f"Q: {q.question} A: {a}" for a in q.correct_answers + q.incorrect_answers]
    assert [p.answer_index for p in mine] == list(range(len(mine)))


def test_tqa_gen_end_q_draws_another_question_deterministically(tqa):
    a, b = build_prompts(tqa, "tqa_gen_end_q", seed=0), build_prompts(tqa, "tqa_gen_end_q", seed=0)
    assert a == b
    c = build_prompts(tqa, "tqa_gen_end_q", seed=1)
    assert [p.text for p in a] != [p.text for p in c]
    gen = build_prompts(tqa, "tqa_gen")
    qtext = {q.question: q.index for q in tqa.questions}
    others = {}
    for p, g in zip(a, gen):
        assert p.text.startswith(g.text + " Q: ") and p.prefix == g.prefix and p.label == g.label
        other = p.text[len(g.text) + len(" Q: "):]
        assert other in qtext and qtext[other] != p.question_index
        others.setdefault(p.question_index, set()).add(other)
    assert all(len(s) == 1 for s in others.values())  # one draw per question, shared by its answers
    assert len({next(iter(s)) for s in others.values()}) > 400  # spread over many questions


def test_other_questions_never_self_and_cover_all():
    o = other_questions(5, seed=3)
    assert o.shape == (5,) and not np.any(o == np.arange(5)) and o.min() >= 0 and o.max() <= 4
    assert list(other_questions(2, seed=7)) == [1, 0]
    draws = np.concatenate([other_questions(4, s) for s in range(200)])
    assert set(draws.tolist()) == {0, 1, 2, 3}
    with pytest.raises(BadInputError):
        other_questions(1, 0)


def test_unknown_format(tqa):
    with pytest.raises(BadInputError, match="unknown prompt format 'tqa_mc3'") as e:
        build_prompts(tqa, "tqa_mc3")
    assert "tqa_mc2, tqa_gen, tqa_gen_end_q" in e.value.one_line()
