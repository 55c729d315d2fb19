"""`itictl judge finetune` through the CLI entry point against the local OpenAI fake."""

from tests.evaluate.fake_openai import FakeOpenAI


def test_finetune_cli_prints_model_and_401_exits_7(cli, monkeypatch, tmp_path):
    data = tmp_path / "finetune_info.jsonl"
    data.write_text('{"prompt": "Q: a\\nA: b\\nHelpful:", "completion": " yes"}\n')
    with FakeOpenAI() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", fake.key)
        r = cli("judge", "finetune", "--kind", "info", "--data", str(data), "--openai-base-url", fake.base_url,
                "--poll", "0.01", "--json")
        assert r.code == 0, r.stderr
        assert r.json()["model"] == "ft:davinci-002:org:informative:abc123"
        assert fake.key not in r.stdout + r.stderr
        monkeypatch.setenv("OPENAI_API_KEY", "sk-bad-SECRET-777")
        r = cli("judge", "finetune", "--kind", "info", "--data", str(data), "--openai-base-url", fake.base_url)
        assert r.code == 7 and "rejected" in r.stderr and "SECRET" not in r.stderr


def test_eval_rejects_bad_metric(cli):
    r = cli("eval", "--metrics", "mc,foo", "--limit-questions", "4")
    assert r.code == 4 and "foo" in r.stderr
