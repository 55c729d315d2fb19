"""Transfer sets (NQ-open / TriviaQA validation) from small local files the tests write."""

from __future__ import annotations

import json

import pytest

from itictl.data import TransferItem, load_transfer
from itictl.errors import BadInputError, NotFoundError

NQ = [{"question": "who wrote hamlet", "answer": ["William Shakespeare", "Shakespeare"], "false_answer": "Marlowe"},
      {"question": "capital of france", "answer": ["Paris"], "false_answer": "Lyon"}]
TRIVIA = [{"question": "Which planet is red?", "answer": {"aliases": ["Mars", "Red Planet"], "value": "Mars",
                                                           "normalized_aliases": ["mars"]},
           "false_answer": "Venus"}]


def test_nq_jsonl(tmp_path):
    p = tmp_path / "nq.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in NQ) + "\n", encoding="utf-8")
    items = load_transfer("nq_open", p)
    assert items == [TransferItem("who wrote hamlet", ["William Shakespeare", "Shakespeare"], "Marlowe"),
                     TransferItem("capital of france", ["Paris"], "Lyon")]


def test_trivia_json_uses_aliases(tmp_path):
    p = tmp_path / "trivia.json"
    p.write_text(json.dumps({"validation": TRIVIA}), encoding="utf-8")
    assert load_transfer("trivia_qa", p) == [TransferItem("Which planet is red?", ["Mars", "Red Planet"], "Venus")]


def test_csv_and_parquet(tmp_path):
    p = tmp_path / "nq.csv"
    p.write_text('question,answer,false_answer\nwho wrote hamlet,"[""Shakespeare"", ""W. S.""]",Marlowe\n'
                 "capital of france,Paris,Lyon\n", encoding="utf-8")
    assert [(i.answers, i.false_answer) for i in load_transfer("nq_open", p)] == [(["Shakespeare", "W. S."], "Marlowe"),
                                                                                  (["Paris"], "Lyon")]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    q = tmp_path / "trivia.parquet"
    pq.write_table(pa.Table.from_pylist(TRIVIA), q)
    assert load_transfer("trivia_qa", q)[0].answers == ["Mars", "Red Planet"]


def test_bad_transfer_input(tmp_path):
    with pytest.raises(BadInputError, match="unknown transfer set"):
        load_transfer("squad", tmp_path / "x.json")
    with pytest.raises(NotFoundError, match="not found"):
        load_transfer("nq_open", tmp_path / "missing.jsonl")
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"question": "q", "answer": ["a"]}) + "\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="bad.jsonl row 0 lacks column.*false_answer"):
        load_transfer("nq_open", p)
    p.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="bad.jsonl line 1 is not JSON"):
        load_transfer("nq_open", p)
    p = tmp_path / "empty.json"
    p.write_text("[]", encoding="utf-8")
    with pytest.raises(BadInputError, match="has no rows"):
        load_transfer("nq_open", p)
    p = tmp_path / "noalias.json"
    p.write_text(json.dumps([{"question": "q", "answer": {"value": "x"}, "false_answer": "y"}]), encoding="utf-8")
    with pytest.raises(BadInputError, match="no 'aliases'"):
        load_transfer("trivia_qa", p)
    p = tmp_path / "x.txt"
    p.write_text("hi", encoding="utf-8")
    with pytest.raises(BadInputError, match="unsupported"):
        load_transfer("nq_open", p)
