"""Judge data: records are checked (kind, shape, labels); splits hold out whole questions and keep
identical prompts on one side."""

import json

import numpy as np
import pytest

from itictl.errors import BadInputError, NotFoundError
from itictl.judge.data import (
    default_data_file,
    load_examples,
    parse_record,
    split_examples,
)


def _line(q, a, tail="True:", c=" yes"):
    return json.dumps({"prompt": f"Q: {q}\nA: {a}\n{tail}", "completion": c})


def test_parse_record_and_kind_checks():
    e = parse_record(_line("Can pigs fly?", "No."), "truth", "x")
    assert (e.question, e.label, e.prefix) == ("Can pigs fly?", 1, "Q: Can pigs fly?\nA:")
    with pytest.raises(BadInputError, match="not a truth judge prompt") as ei:
        parse_record(_line("q", "a", "Helpful:"), "truth", "x")
    assert "--kind info" in ei.value.one_line()
    with pytest.raises(BadInputError, match="not ' yes' or ' no'"):
        parse_record(_line("q", "a", c="yes"), "truth", "x")
    with pytest.raises(BadInputError, match="JSON record"):
        parse_record("{}", "info", "x")


def test_the_shared_files_have_the_documented_shape(tqa_dir):
    for kind in ("truth", "info"):
        ex = load_examples(default_data_file(kind, tqa_dir), kind)
        assert len(ex) == 22114 and len({e.question for e in ex}) == 817
        assert {e.label for e in ex} == {0, 1}


def test_default_file_needs_a_location(monkeypatch, tmp_path):
    monkeypatch.delenv("ITICTL_DATA", raising=False)
    with pytest.raises(NotFoundError, match="no judge training data"):
        default_data_file("truth", None)
    with pytest.raises(NotFoundError, match="finetune_info.jsonl"):
        default_data_file("info", tmp_path)


def test_splits_by_question(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for q in range(40):
        for a in range(int(rng.integers(2, 8))):
            lines += [_line(f"question {q}?", f"answer {a % 4}", c=" yes" if a % 2 else " no")]
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join(lines) + "\n")
    ex = load_examples(f, "truth")
    sp = split_examples(ex, seed=3)
    allidx = np.concatenate(list(sp.values()))
    assert sorted(allidx.tolist()) == list(range(len(ex)))  # each record exactly once
    q_of = {k: {ex[i].question for i in v} for k, v in sp.items()}
    assert q_of["unseen_test"] and not q_of["unseen_test"] & (q_of["train"] | q_of["val"] | q_of["seen_test"])
    assert len(q_of["unseen_test"]) == 4  # 10 % of 40 questions
    p_of = {k: {ex[i].prompt for i in v} for k, v in sp.items()}
    assert not p_of["train"] & p_of["seen_test"] and not p_of["train"] & p_of["val"]
    assert q_of["seen_test"] <= q_of["train"] | q_of["val"] | q_of["seen_test"]
    assert split_examples(ex, seed=3)["unseen_test"].tolist() == sp["unseen_test"].tolist()
    assert load_examples(f, "truth", limit=12)[-1].prompt == ex[11].prompt
