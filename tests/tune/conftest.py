"""Fixtures for tune tests: a tiny random Llama folder with a byte-level BPE tokenizer, a synthetic
TruthfulQA folder written from a plain structure (so a test can change chosen questions' answers and
labels), and a natural-text file for CE/KL."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest


def synthetic_questions(n: int = 20) -> list[dict]:
    """n questions, each with 2 true and 2 false answers (distinct texts)."""
    colours = ["red", "blue", "green", "black", "white", "yellow"]
    out = []
    for i in range(n):
        a, b = colours[i % 6], colours[(i + 2) % 6]
        out.append({"question": f"What colour is the cat number {i} on the mat?",
                    "correct": [f"The cat {i} is {a}.", f"It is {a}, I think."],
                    "incorrect": [f"The cat {i} is {b}.", f"Cat {i} has no colour at all."]})
    return out


def write_tqa(folder: Path, questions: list[dict]) -> Path:
    """TruthfulQA.csv + mc_task.json for `questions` (best answer: the first true one)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cols = ["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"]
    with open(folder / "TruthfulQA.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for q in questions:
            w.writerow(["Adversarial", "Misconceptions", q["question"], q["correct"][0].rstrip("."),
                        "; ".join(a.rstrip(".") for a in q["correct"]),
                        "; ".join(a.rstrip(".") for a in q["incorrect"]), "https://example.org"])
    mc = [{"question": q["question"],
           "mc1_targets": {q["correct"][0]: 1, **{a: 0 for a in q["incorrect"]}},
           "mc2_targets": {**{a: 1 for a in q["correct"]}, **{a: 0 for a in q["incorrect"]}}} for q in questions]
    (folder / "mc_task.json").write_text(json.dumps(mc, indent=1), encoding="utf-8")
    return folder


def perturbed(questions: list[dict], which) -> list[dict]:
    """A copy where the questions `which` have new answer texts and swapped labels (true <-> false)."""
    out = [dict(q) for q in questions]
    for i in which:
        q = out[int(i)]
        out[int(i)] = {"question": q["question"], "correct": [f"Surely {a}" for a in q["incorrect"]],
                       "incorrect": [f"Maybe {a}" for a in q["correct"]]}
    return out


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from tests.evaluate.conftest import make_tokenizer
    from tests.helpers import tiny_llama

    tok = make_tokenizer()
    d = tmp_path_factory.mktemp("tiny-tune-model")
    tiny_llama(seed=0, vocab=len(tok)).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    words = "the cat sat on the mat and no that is not true yes it is I have no comment".split()
    paras = [" ".join(words[(i * 7 + j) % len(words)] for j in range(60)) for i in range(20)]
    p = tmp_path_factory.mktemp("tune-text") / "text.txt"
    p.write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    return p
