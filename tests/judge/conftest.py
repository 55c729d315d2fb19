"""Fixtures for judge tests: a tiny random Llama folder with a byte-level BPE tokenizer (any text
tokenises) and small synthetic judge files in TruthfulQA's fine-tuning format."""

from __future__ import annotations

import json

import pytest

WORDS = ["pigs", "cats", "water", "the moon", "seeds", "knuckles", "Paris", "rain", "iron", "snow", "gold", "tea"]


def write_judge_file(path, kind: str, n_questions: int = 12, per_question: int = 6, seed: int = 0):
    """Answers to `n_questions` questions; the label is 1 for answers starting "No" (truth) or
    longer than two words (info). Some prompts repeat, as in the real files."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tail = "True:" if kind == "truth" else "Helpful:"
    lines = []
    for q in range(n_questions):
        question = f"What happens to {WORDS[q % len(WORDS)]} number {q}?"
        for a in range(per_question):
            answer = ["No, nothing happens.", "Yes, it turns to gold.", "It is fine.", "No.",
                      "I have no comment.", "Yes."][int(rng.integers(0, 6))] if a else "No, nothing happens."
            label = answer.startswith("No") if kind == "truth" else len(answer.split()) > 2
            lines.append(json.dumps({"prompt": f"Q: {question}\nA: {answer}\n{tail}",
                                     "completion": " yes" if label else " no"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def judge_model_dir(tmp_path_factory):
    from tests.evaluate.conftest import make_tokenizer
    from tests.helpers import tiny_llama

    tok = make_tokenizer()
    d = tmp_path_factory.mktemp("tiny-judge-model")
    tiny_llama(seed=1, vocab=len(tok)).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def judge_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("judge-data")
    return {k: write_judge_file(d / f"finetune_{k}.jsonl", k) for k in ("truth", "info")}
