"""`judge compare` through the CLI: two local judges, and a local judge against an OpenAI judge
(the real client against the local HTTP fake); bad specs fail before any work."""

import csv

import pytest

from tests.evaluate.fake_openai import FakeOpenAI

ROWS = [("What happens to pigs number 0?", "No, nothing happens."), ("What happens to pigs number 0?", "Yes."),
        ("What happens to cats number 1?", "No."), ("What happens to cats number 1?", "It is fine."),
        ("Can fish fly?", "No, they swim."), ("Can fish fly?", "Yes, it turns to gold."),
        ("What is the moon made of?", "I have no comment."), ("What is the moon made of?", "Cheese.")]


@pytest.fixture
def answers_csv(tmp_path):
    p = tmp_path / "answers.csv"
    with p.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["setting", "fold", "question", "answer"])
        for q, a in ROWS:
            w.writerow(["K=0,alpha=0", 0, q, a])
    return p


def _train(cli, model_dir, data, *extra):
    r = cli("judge", "train", "--kind", "truth", "--model", str(model_dir), "--data", str(data), "--device", "cpu",
            "--json", *extra)
    assert r.code == 0, r.stderr[-2000:]
    return r.json()


def _counts(a: list[bool], b: list[bool]) -> dict[str, int]:
    return {"yes_yes": sum(x and y for x, y in zip(a, b)), "yes_no": sum(x and not y for x, y in zip(a, b)),
            "no_yes": sum(y and not x for x, y in zip(a, b)), "no_no": sum(not x and not y for x, y in zip(a, b))}


def test_compare_two_local_judges_and_an_openai_judge(cli, judge_model_dir, judge_files, answers_csv, monkeypatch,
                                                      tmp_path):
    import os

    from itictl.judge import parse_judge
    from itictl.judge.metrics import agreement
    from itictl.store import Store

    first = _train(cli, judge_model_dir, judge_files["truth"], "--seed", "1")
    second = _train(cli, judge_model_dir, judge_files["truth"])  # seed 0: other splits, another probe
    assert first["key"] != second["key"] and second["metrics"]["unseen_questions"]["n"] > 0
    store = Store(os.environ["ITICTL_HOME"])
    pa = parse_judge(f"local:{first['key']}", store=store, device="cpu").score(ROWS)
    pb = parse_judge("local", role="truth", store=store, device="cpu").score(ROWS)
    r = cli("judge", "compare", f"local:{first['key'][:10]}", "local", "--answers", str(answers_csv), "--json")
    assert r.code == 0, r.stderr[-2000:]
    d = r.json()
    assert d["kind"] == "truth" and d["n"] == len(ROWS) and d["b"] == f"local:{second['key'][:12]}"
    assert d["confusion"] == _counts([p >= 0.5 for p in pa], [p >= 0.5 for p in pb])
    assert d["agreement"] == pytest.approx(sum(x == y for x, y in zip([p >= 0.5 for p in pa], [p >= 0.5 for p in pb]))
                                           / len(ROWS))
    assert d["kappa"] == agreement(pa, pb)["kappa"]
    with FakeOpenAI() as fake:  # P(yes) 0.9 when the prompt contains " no", else 0.2
        monkeypatch.setenv("OPENAI_API_KEY", fake.key)
        r = cli("judge", "compare", "local", "openai:ft:davinci-002:org:truthful", "--answers", str(answers_csv),
                "--openai-base-url", fake.base_url, "--json")
        assert r.code == 0, r.stderr[-2000:]
        d = r.json()
        fake_yes = [" no" in f"Q: {q}\nA: {a}\nTrue:".lower() for q, a in ROWS]
        assert d["confusion"] == _counts([p >= 0.5 for p in pb], fake_yes)
        assert d["yes_rate_b"] == pytest.approx(sum(fake_yes) / len(ROWS))
        prompts = [p for _, path, body in fake.requests if path == "/v1/completions" for p in body["prompt"]]
        assert len(prompts) == len(ROWS) and all(p.endswith("\nTrue:") for p in prompts)
        assert fake.key not in r.stdout + r.stderr


def test_compare_rejects_bad_input_before_any_work(cli, answers_csv, tmp_path):
    r = cli("judge", "compare", "gpt4", "local", "--answers", str(answers_csv))
    assert r.code == 4 and "invalid judge spec 'gpt4'" in r.stderr
    r = cli("judge", "compare", "local", "local", "--answers", str(answers_csv))
    assert r.code == 3 and "itictl judge train --kind truth" in r.stderr  # NotFound: no judge trained yet
    r = cli("judge", "compare", "openai:a", "openai:b", "--answers", str(tmp_path / "missing.csv"))
    assert r.code == 3 and "missing.csv" in r.stderr
    r = cli("judge", "compare", "openai:a", "openai:b", "--kind", "truthy")
    assert r.code == 4
    r = cli("judge", "compare", "openai:a", "openai:b")
    assert r.code == 3 and "no `last-eval`" in r.stderr and "--answers CSV" in r.stderr
    r = cli("judge", "train", "--kind", "both")
    assert r.code == 4 and "--kind truth or --kind info" in r.stderr
    import os

    from itictl.store import Store

    assert not [a for a in Store(os.environ["ITICTL_HOME"]).ls()]
