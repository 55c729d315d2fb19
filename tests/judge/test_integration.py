"""Local probe judges on the embedded model: `judge train` on a small slice of the real judge files,
then `eval --judge local --info-judge local` gives True / Info / True*Info from them."""

import csv

import pytest

from tests.helpers import run_cli

LIMIT = "150"


def _ok(r):
    assert r.code == 0, r.stderr[-2000:]
    return r.json()


def test_embedded_judges_score_eval_answers(embedded, session_store, tqa_dir):
    from itictl.judge import parse_judge

    base = ["--store", str(session_store.root)]
    keys = {}
    for kind in ("truth", "info"):
        d = _ok(run_cli(*base, "judge", "train", "--kind", kind, "--data", str(tqa_dir), "--limit", LIMIT,
                        "--device", "cpu", "--json"))
        assert d["kind"] == "judge" and d["judge_kind"] == kind and d["counts"]["records"] == int(LIMIT)
        for part in ("unseen_questions", "seen_questions"):
            m = d["metrics"][part]
            assert m["n"] > 0 and 0 <= m["accuracy"] <= 1 and 0 <= m["auc"] <= 1
        keys[kind] = d["key"]
    d = _ok(run_cli(*base, "eval", "--data", str(tqa_dir), "--device", "cpu", "--dtype", "float32", "--json",
                    "--limit-questions", "4", "--alpha", "0", "--metrics", "judge,info",
                    "--judge", "local", "--info-judge", "local"))
    assert d["skipped"] == {} and d["judges"] == {k: f"local:{v[:12]}" for k, v in keys.items()}
    art = session_store.get(d["key"])
    assert art.params["judge"] == {"type": "local", "key": keys["truth"]}
    assert art.params["info_judge"] == {"type": "local", "key": keys["info"]}
    with art.file("answers.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    mean = d["settings"][0]["mean"]
    for name, kind in (("True", "truth"), ("Info", "info")):
        ps = [float(r[f"{name.lower()}_p_yes"]) for r in rows]
        assert mean[name] == pytest.approx(sum(p >= 0.5 for p in ps) / len(ps))
        direct = parse_judge("local", role=kind, store=session_store, device="cpu").score(
            [(r["question"], r["answer"]) for r in rows], info=kind == "info")
        assert ps == pytest.approx(direct, abs=2e-6)
    assert mean["True*Info"] == pytest.approx(mean["True"] * mean["Info"])
    assert "True*Info Score: skipped" not in d["summary"][0]
    # compare reads last-eval's answers by default: the truth judge against itself agrees throughout
    c = _ok(run_cli(*base, "judge", "compare", "local", f"local:{keys['truth']}", "--device", "cpu", "--json"))
    assert c["source"] == f"eval {d['key'][:12]}" and c["n"] == 4 and c["agreement"] == 1.0
    assert c["yes_rate_a"] == pytest.approx(mean["True"])
