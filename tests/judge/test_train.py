"""`judge train` end to end on a tiny random model: a `judge` artifact with metrics, cached on rerun,
tagged; a local judge scores through the packed extraction engine exactly as a plain forward does."""

import json

import numpy as np
import pytest

from itictl.errors import BadInputError, NotFoundError
from itictl.judge import parse_judge
from itictl.judge.train import run_judge_train


def _plain_probability(model_dir, art, prompts):
    """Independent scoring: one unpadded forward per prompt, hidden_states at the last token."""
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    doc = art.read_json("judge.json")
    t = load_file(str(art.file("judge.safetensors")))
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    for p in prompts:
        with torch.no_grad():
            hs = model(torch.tensor([tok(p)["input_ids"]]), output_hidden_states=True).hidden_states
        x = hs[doc["layer"]][0, -1].double().numpy()
        z = ((x - t["mean"]) / t["std"]) @ t["weight"].astype(np.float64) + float(t["bias"][0])
        out.append(1 / (1 + np.exp(-z)))
    return out


def test_train_produces_a_judge_artifact_and_scores_like_a_plain_forward(store, judge_model_dir, judge_files):
    art, cached, doc = run_judge_train(store, "truth", model=str(judge_model_dir), data=judge_files["truth"],
                                       features="resid", device="cpu")
    assert art.kind == "judge" and not cached
    assert store.resolve("last-judge-truth") == art.key
    assert art.params["kind"] == "truth" and art.params["data"] == store.file_digest(judge_files["truth"])
    assert store.get(art.parents["model"]).kind == "model" and doc["model"] == art.parents["model"]
    assert doc["features"] == "resid" and 0 <= doc["layer"] <= 2 and doc["C"] in art.params["search"]["Cs"]
    c = doc["counts"]
    assert c["records"] == 72 and c["questions"] == 12
    assert c["train"] + c["val"] + c["seen_test"] + c["unseen_test"] == 72
    for part, n in (("unseen_questions", c["unseen_test"]), ("seen_questions", c["seen_test"])):
        m = doc["metrics"][part]
        assert m["n"] == n > 0 and 0 <= m["accuracy"] <= 1
    assert len(doc["search"]["screen"]) == 3  # L + 1 residual points of a 2-layer model
    again, cached2, _ = run_judge_train(store, "truth", model=str(judge_model_dir), data=judge_files["truth"],
                                        features="resid", device="cpu", batch_tokens=64)  # batch size is not in the key
    assert cached2 and again.key == art.key
    j = parse_judge("local", role="truth", store=store, device="cpu")
    assert j.identity == {"type": "local", "key": art.key} and j.kind == "truth"
    pairs = [("What happens to pigs number 0?", "No, nothing happens."),
             ("What happens to pigs number 0?", "Yes, it turns to gold."),
             ("Is the sky green?", "It is not.")]
    got = j.score(pairs)
    want = _plain_probability(judge_model_dir, art, [f"Q: {q}\nA: {a}\nTrue:" for q, a in pairs])
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)
    with pytest.raises(BadInputError, match="truth judge, not an info judge"):
        j.score(pairs, info=True)


def test_head_features_and_limits(store, judge_model_dir, judge_files):
    art, _, doc = run_judge_train(store, "info", model=str(judge_model_dir), data=judge_files["info"],
                                  limit=40, device="cpu")  # features: heads (the default)
    assert doc["width"] == 4 * 8 and len(doc["search"]["screen"]) == 2  # H·D per layer, L layers
    assert art.params["limit"] == 40 and doc["counts"]["records"] == 40
    full, _, _ = run_judge_train(store, "info", model=str(judge_model_dir), data=judge_files["info"],
                                 features="heads", limit=10_000, device="cpu")
    assert full.params["limit"] is None and full.key != art.key  # past the end = the whole file
    assert store.resolve("last-judge-info") == full.key
    with pytest.raises(BadInputError, match="info judge, not a truth judge"):
        parse_judge(f"local:{full.key[:12]}", role="truth", store=store)


def test_bad_inputs_fail_before_any_work(store, judge_files, tmp_path):
    with pytest.raises(BadInputError, match="unknown judge kind"):
        run_judge_train(store, "truthiness", data=judge_files["truth"])
    with pytest.raises(BadInputError, match="not a truth judge prompt"):
        run_judge_train(store, "truth", data=judge_files["info"])
    with pytest.raises(BadInputError, match="--features"):
        run_judge_train(store, "truth", data=judge_files["truth"], features="mlp")
    with pytest.raises(NotFoundError, match="not found"):
        run_judge_train(store, "truth", data=tmp_path / "nope")
    with pytest.raises(NotFoundError, match="no local info judge"):
        parse_judge("local", role="info", store=store)
    assert list(store.ls()) == []  # nothing was made: no model object either
    bad = tmp_path / "finetune_truth.jsonl"
    bad.write_text(json.dumps({"prompt": "hello", "completion": " yes"}) + "\n")
    with pytest.raises(BadInputError):
        run_judge_train(store, "truth", data=tmp_path)


def test_a_killed_training_resumes_from_its_finished_chunks(store, judge_model_dir, judge_files, monkeypatch, tmp_path):
    from itictl.judge import features as F
    from itictl.judge import train as T
    from itictl.store import Store

    monkeypatch.setattr(T, "CHUNK", 16)  # 72 records -> 5 pieces
    real, calls = F.prompt_features, []

    def killed_at_third(*a, **k):
        calls.append(len(a[2]))
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(*a, **k)

    monkeypatch.setattr(F, "prompt_features", killed_at_third)
    kw = dict(model=str(judge_model_dir), data=judge_files["truth"], device="cpu")
    with pytest.raises(RuntimeError, match="killed"):
        run_judge_train(store, "truth", **kw)
    assert not store.ls(kind="judge")
    calls.clear()
    monkeypatch.setattr(F, "prompt_features", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    art, cached, doc = run_judge_train(store, "truth", **kw)
    assert not cached and calls == [16, 16, 8]  # pieces 3-5 only; 1-2 came from the work dir
    fresh_store = Store(tmp_path / "fresh")
    fresh_store.ensure()
    _, _, fresh = run_judge_train(fresh_store, "truth", **kw)
    assert doc["layer"] == fresh["layer"] and doc["C"] == fresh["C"]
    for part, m in doc["metrics"].items():
        assert m["n"] == fresh["metrics"][part]["n"]
        assert [m[k] for k in ("accuracy", "auc", "log_loss")] == pytest.approx(
            [fresh["metrics"][part][k] for k in ("accuracy", "auc", "log_loss")], rel=1e-5)
