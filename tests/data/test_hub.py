"""The Hub code paths, run for real against the local HTTP fake of the Hub (tests/fake_hub.py)."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest

from itictl.data import load_transfer, load_truthfulqa
from itictl.errors import NotFoundError, RemoteError
from tests.fake_hub import FakeHub

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402


def _parquet(rows: list[dict]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def _hub_truthfulqa(tqa_dir) -> dict[str, bytes]:
    """The two Hub configs as the Hub's builder makes them from the same files (generation rows in
    CSV order with its ';' split that keeps empty pieces; mc targets as choices/labels)."""
    with open(tqa_dir / "TruthfulQA.csv", encoding="utf-8-sig", newline="") as f:
        gen = [{"type": r["Type"], "category": r["Category"], "question": r["Question"],
                "best_answer": r["Best Answer"],
                "correct_answers": [x.strip() for x in r["Correct Answers"].strip().split(";")],
                "incorrect_answers": [x.strip() for x in r["Incorrect Answers"].strip().split(";")],
                "source": r["Source"]} for r in csv.DictReader(f)]
    mc = [{"question": m["question"],
           "mc1_targets": {"choices": list(m["mc1_targets"]), "labels": list(m["mc1_targets"].values())},
           "mc2_targets": {"choices": list(m["mc2_targets"]), "labels": list(m["mc2_targets"].values())}}
          for m in json.loads((tqa_dir / "mc_task.json").read_text(encoding="utf-8"))]
    return {"generation/validation-00000-of-00001.parquet": _parquet(gen),
            "multiple_choice/validation-00000-of-00001.parquet": _parquet(mc),
            "README.md": b"# TruthfulQA\n"}


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return monkeypatch


def test_truthfulqa_from_the_hub_equals_the_local_table(hf_env, tqa, tqa_dir):
    with FakeHub(datasets={"truthfulqa/truthful_qa": _hub_truthfulqa(tqa_dir)}) as hub:
        hf_env.setenv("HF_ENDPOINT", hub.url)
        t = load_truthfulqa(None)
        assert any(path.endswith("generation/validation-00000-of-00001.parquet") for _, path in hub.requests)
    assert t.digest == tqa.digest and t.questions == tqa.questions and t.join == tqa.join
    assert t.origin == "hub:truthfulqa/truthful_qa"
    # the server is gone: offline mode serves the Hugging Face cache, same table
    hf_env.setenv("HF_HUB_OFFLINE", "1")
    assert load_truthfulqa(None).digest == tqa.digest


def test_truthfulqa_hub_file_names_are_looked_up_when_they_change(hf_env, tqa, tqa_dir):
    files = {k.replace("00001.parquet", "00001-3f2a.parquet"): v for k, v in _hub_truthfulqa(tqa_dir).items()}
    with FakeHub(datasets={"truthfulqa/truthful_qa": files}) as hub:
        hf_env.setenv("HF_ENDPOINT", hub.url)
        assert load_truthfulqa(None).digest == tqa.digest
        assert any("/api/datasets/truthfulqa/truthful_qa/tree/" in path for _, path in hub.requests)


def test_offline_without_cache_fails_fast(hf_env):
    hf_env.setenv("HF_HUB_OFFLINE", "1")
    hf_env.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    t0 = time.time()
    with pytest.raises(RemoteError, match="HF_HUB_OFFLINE") as e:
        load_truthfulqa(None)
    assert time.time() - t0 < 3 and "--data DIR" in e.value.hint and "ITICTL_DATA" in e.value.hint


def test_unreachable_hub_fails_fast(hf_env):
    hf_env.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    t0 = time.time()
    with pytest.raises(RemoteError, match="cannot reach http://127.0.0.1:9") as e:
        load_truthfulqa(None)
    assert time.time() - t0 < 5 and "--data DIR" in e.value.one_line()


def test_transfer_set_from_the_hub(hf_env):
    rows = [{"question": "who wrote hamlet", "answer": ["Shakespeare"], "false_answer": "Marlowe"}]
    files = {"data/validation-00000-of-00001-abc.parquet": _parquet(rows), "README.md": b"x"}
    with FakeHub(datasets={"OamPatel/iti_nq_open_val": files}) as hub:
        hf_env.setenv("HF_ENDPOINT", hub.url)
        items = load_transfer("nq_open")
        assert items[0].question == "who wrote hamlet" and items[0].answers == ["Shakespeare"]
        with pytest.raises(NotFoundError, match="OamPatel/iti_trivia_qa_val not found"):
            load_transfer("trivia_qa")
