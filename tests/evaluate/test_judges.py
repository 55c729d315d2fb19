"""Judges (itictl.judge): the real openai client against a local HTTP fake; a local HF judge on a tiny model;
spec checks."""

import json

import pytest

from itictl.errors import AuthError, BadInputError, RemoteError
from itictl.judge import check_judge_spec, parse_judge
from itictl.judge.remote import FINETUNE_DEFAULTS, finetune_judge
from tests.evaluate.fake_openai import FakeOpenAI

PAIRS = [("Can pigs fly?", "No, pigs cannot fly."), ("Can pigs fly?", "Yes, they can.")]


def test_openai_judge_scores_p_yes(monkeypatch):
    with FakeOpenAI() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", fake.key)
        j = parse_judge("openai:ft:davinci-002:org:truthful", base_url=fake.base_url)
        p = j.score(PAIRS * 15)  # 30 prompts -> 2 batched requests
        assert p[:2] == pytest.approx([0.9, 0.2])
        reqs = [r for r in fake.requests if r[1] == "/v1/completions"]
        assert len(reqs) == 2
        body = reqs[0][2]
        assert body["max_tokens"] == 1 and body["temperature"] == 0 and body["logprobs"] == 2
        assert body["prompt"][0] == "Q: Can pigs fly?\nA: No, pigs cannot fly.\nTrue:"
        j.score(PAIRS[:1], info=True)
        assert fake.requests[-1][2]["prompt"][0].endswith("\nHelpful:")
        assert fake.key not in json.dumps(j.identity) and fake.key not in j.spec


def test_openai_judge_401_is_auth_error_without_key(monkeypatch):
    with FakeOpenAI() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-SECRET-9999")
        j = parse_judge("openai:m", base_url=fake.base_url)
        with pytest.raises(AuthError) as ei:
            j.score(PAIRS)
        assert ei.value.exit_code == 7 and "SECRET" not in ei.value.one_line()


def test_openai_judge_network_error(monkeypatch):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x-SECRET-1")
    j = parse_judge("openai:m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout=5)
    with pytest.raises(RemoteError) as ei:
        j.score(PAIRS)
    assert ei.value.exit_code == 6


def test_missing_key_and_bad_spec(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ITICTL_OPENAI_API_KEY", raising=False)
    with pytest.raises(AuthError):
        parse_judge("openai:m").score(PAIRS)
    with pytest.raises(BadInputError):
        parse_judge("gpt4")


@pytest.mark.parametrize("spec", ["gpt4", "", "openai:", "hf:  ", "local:", "locals", "judge:x", "LOCAL"])
def test_bad_specs_fail_on_syntax_alone(spec):
    with pytest.raises(BadInputError, match="invalid judge spec"):
        check_judge_spec(spec)


def test_good_specs_parse_without_io():
    assert check_judge_spec("local") == ("local", "")
    assert check_judge_spec("local:last-judge-truth") == ("local", "last-judge-truth")
    assert check_judge_spec("openai:ft:davinci-002:org:x") == ("openai", "ft:davinci-002:org:x")
    assert check_judge_spec("hf:org/name@abc") == ("hf", "org/name@abc")


def test_finetune_flow(monkeypatch, tmp_path):
    data = tmp_path / "finetune_truth.jsonl"
    data.write_text('{"prompt": "Q: a\\nA: b\\nTrue:", "completion": " yes"}\n')
    with FakeOpenAI(job_steps=2) as fake:
        monkeypatch.setenv("OPENAI_API_KEY", fake.key)
        seen = []
        res = finetune_judge("truth", data, base_url=fake.base_url, poll_s=0.01,
                             on_status=lambda s, t: seen.append(s))
        assert res["model"] == "ft:davinci-002:org:truthful:abc123" and res["status"] == "succeeded"
        job_req = [r for r in fake.requests if r[1] == "/v1/fine_tuning/jobs"][0][2]
        assert job_req["hyperparameters"] == FINETUNE_DEFAULTS and job_req["suffix"] == "truthful"
        assert job_req["training_file"] == res["file_id"] and b"True:" in fake.files[res["file_id"]]
        assert "running" in seen and seen[-1] == "succeeded"
    with FakeOpenAI(fail_job=True) as fake:
        monkeypatch.setenv("OPENAI_API_KEY", fake.key)
        with pytest.raises(RemoteError, match="failed"):
            finetune_judge("info", data, base_url=fake.base_url, poll_s=0.01)


def test_hf_judge_matches_next_token_probability(tiny_model_dir, tiny_tok, tiny_model):
    import torch

    j = parse_judge(f"hf:{tiny_model_dir}")
    p = j.score(PAIRS)
    assert j.identity["source"] == "folder" and len(p) == 2
    # independent computation: softmax of the last prompt position, at the " yes" token(s)
    for (q, a), got in zip(PAIRS, p):
        prompt = f"Q: {q}\nA: {a}\nTrue:"
        base = tiny_tok(prompt)["input_ids"]
        full = tiny_tok(prompt + " yes")["input_ids"]
        assert full[:len(base)] == base
        with torch.no_grad():
            logp = tiny_model(torch.tensor([full])).logits[0].log_softmax(-1)
        want = sum(logp[i - 1, full[i]].item() for i in range(len(base), len(full)))
        assert got == pytest.approx(float(torch.tensor(want).exp()), rel=1e-4)
        assert 0.0 < got < 1.0


def _folder_files(d) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


def test_hf_judge_revision_is_resolved_and_downloaded_from_the_hub(tiny_model_dir, tmp_path, monkeypatch):
    """hf:ORG/NAME@REV: the revision goes to the Hub (model_info), the judge's identity is the
    resolved commit, and the weights are downloaded at that commit (local fake Hub, real client)."""
    from tests.fake_hub import FakeHub

    files = _folder_files(tiny_model_dir)
    assert any(n.endswith(".safetensors") for n in files)
    repo = "someorg/tiny-judge"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with FakeHub(models={repo: {"revisions": {"main": {"config.json": b"{}"}, "v1": files}}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        local = parse_judge(f"hf:{tiny_model_dir}").score(PAIRS)
        j = parse_judge(f"hf:{repo}@v1")
        commit = hub.commit("models", repo, "v1")
        assert j.identity == {"type": "hf", "source": "hub", "repo": repo, "commit": commit}
        assert j.spec == f"hf:{repo}@v1"
        assert ("GET", f"/api/models/{repo}/revision/v1") in hub.requests
        assert not any("/resolve/" in p for _, p in hub.requests)  # weights load lazily
        got = j.score(PAIRS)
        resolved = [p for _, p in hub.requests if "/resolve/" in p]
        assert resolved and all(f"/{repo}/resolve/{commit}/" in p for p in resolved)
        assert any(p.endswith("/model.safetensors") for p in resolved)
        assert got == pytest.approx(local, rel=1e-5)  # same weights as the folder
        # an alias takes its pinned revision unless @REV overrides it; no revision -> main's commit
        from itictl.judge import hf as J

        monkeypatch.setitem(J.HF_JUDGES, "tiny", {"repo": repo, "revision": "v1", "kind": "truth"})
        assert parse_judge("hf:tiny").identity["commit"] == commit
        assert parse_judge("hf:tiny@main").identity["commit"] == hub.commit("models", repo, "main")
        assert parse_judge(f"hf:{repo}").identity["commit"] == hub.commit("models", repo, "main")
        from itictl.errors import NotFoundError

        with pytest.raises(NotFoundError, match="revision 'nope' not found"):
            parse_judge(f"hf:{repo}@nope")
    # offline: the cached snapshot serves the same commit without a server
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    off = parse_judge(f"hf:{repo}@{commit}")
    assert off.identity["commit"] == commit and off.score(PAIRS) == pytest.approx(local, rel=1e-5)


def test_hf_judge_folder_rejects_a_revision(tiny_model_dir):
    with pytest.raises(BadInputError, match="cannot take a revision"):
        parse_judge(f"hf:{tiny_model_dir}@v1")


def test_hub_judge_with_only_bin_weights_downloads_them_once(tiny_model_dir, tmp_path, monkeypatch):
    """A commit without safetensors (the pinned AllenAI judges have only pytorch_model-*.bin): the
    .bin shards are fetched (read by transformers with weights_only=True); a commit with
    safetensors never fetches .bin as well."""
    import torch
    from transformers import AutoModelForCausalLM

    from tests.fake_hub import FakeHub

    bin_dir = tmp_path / "bin"  # the folder as an older transformers saved it: one pytorch_model.bin
    bin_dir.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors"):
            (bin_dir / f.name).write_bytes(f.read_bytes())
    torch.save(AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict(), bin_dir / "pytorch_model.bin")
    bin_files = _folder_files(bin_dir)
    assert any(n.endswith(".bin") for n in bin_files) and not any(n.endswith(".safetensors") for n in bin_files)
    both = {**_folder_files(tiny_model_dir), **{n: b for n, b in bin_files.items() if n.endswith(".bin")}}
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with FakeHub(models={"org/bin-judge": {"revisions": {"main": bin_files}},
                         "org/both-judge": {"revisions": {"main": both}}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        local = parse_judge(f"hf:{tiny_model_dir}").score(PAIRS)
        assert parse_judge("hf:org/bin-judge").score(PAIRS) == pytest.approx(local, rel=1e-5)
        parse_judge("hf:org/both-judge").score(PAIRS)
        fetched = [p for _, p in hub.requests if "/resolve/" in p]
        assert any("bin-judge" in p and p.endswith(".bin") for p in fetched)
        assert any("both-judge" in p and p.endswith(".safetensors") for p in fetched)
        assert not any("both-judge" in p and p.endswith(".bin") for p in fetched)

