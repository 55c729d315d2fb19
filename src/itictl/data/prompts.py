"""Prompt formats for activation extraction (DESIGN §2, honest_llama utils.py semantics).

- `tqa_mc2`: "Q: {question} A: {answer}" for every mc2 choice in mc_task.json order (labels 1/0).
- `tqa_gen`: the same format over the generation split's answers: correct ones (label 1) then
  incorrect ones (label 0), per question, with the question's category.
- `tqa_gen_end_q`: "Q: {question} A: {answer} Q: {other question}", where the other question is
  drawn once per question from `seed` (numpy default_rng; never the question itself).

Prompts follow the table's (multiple-choice) question order. `prefix` is "Q: {question} A:", a
string prefix of `text` shared by all answers of a question (extraction computes it once).
`answer_index` indexes the question's mc2 choices (tqa_mc2) or its correct-then-incorrect answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from itictl.data.truthfulqa import TruthfulQA, iter_answers
from itictl.errors import BadInputError

FORMATS = ("tqa_mc2", "tqa_gen", "tqa_gen_end_q")  # the one list of prompt formats
SEEDED_FORMATS = ("tqa_gen_end_q",)  # formats whose prompts depend on the seed


@dataclass(frozen=True)
class Prompt:
    text: str
    prefix: str  # text up to and including "A:"
    label: int  # 1 true, 0 false
    question_index: int
    answer_index: int
    category: str | None


def qa_prefix(question: str) -> str:
    return f"Q: {question} A:"


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise BadInputError(f"unknown prompt format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    return fmt


def other_questions(n: int, seed: int) -> np.ndarray:
    """For each question i, the index of a different question, drawn uniformly with `seed`."""
    if n < 2:
        raise BadInputError("tqa_gen_end_q needs at least 2 questions", "use a larger dataset")
    draw = np.random.default_rng(seed).integers(0, n - 1, size=n)  # [n] in [0, n-2]
    return draw + (draw >= np.arange(n))  # skip i itself


def build_prompts(tqa: TruthfulQA, fmt: str, seed: int = 0) -> list[Prompt]:
    check_format(fmt)
    qs = tqa.questions
    out: list[Prompt] = []
    if fmt == "tqa_mc2":
        for q in qs:
            pre = qa_prefix(q.question)
            out += [Prompt(f"{pre} {a}", pre, int(l), q.index, j, q.category) for j, (a, l) in enumerate(q.mc2_targets)]
        return out
    others = other_questions(len(qs), seed) if fmt == "tqa_gen_end_q" else None
    for i, q in enumerate(qs):
        pre = qa_prefix(q.question)
        tail = f" Q: {qs[int(others[i])].question}" if others is not None else ""
        out += [Prompt(f"{pre} {a}{tail}", pre, l, q.index, j, q.category) for j, (a, l) in enumerate(iter_answers(q))]
    return out


def prompt_count(tqa: TruthfulQA, fmt: str) -> int:
    """The number of prompts `build_prompts(tqa, fmt)` makes (without building them)."""
    check_format(fmt)
    if fmt == "tqa_mc2":
        return sum(len(q.mc2_targets) for q in tqa.questions)
    return sum(len(q.correct_answers) + len(q.incorrect_answers) for q in tqa.questions)
