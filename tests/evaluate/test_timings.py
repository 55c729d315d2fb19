"""Per-phase timings of `itictl eval` (issue 14): the PhaseTimer's exclusive accounting, and the
timings of a real small eval in --json and the artifact's manifest meta, never in eval.json or the key."""

import threading

import pytest

from itictl import hooks
from itictl.evaluate.timings import PhaseTimer, rows


def _spin(n: int = 20000) -> int:
    return sum(i * i for i in range(n))


def _other_thread() -> None:
    with hooks.timed("mc"):
        _spin()


def test_timer_exclusive_nested_lists_and_other_threads():
    with PhaseTimer(rename={"extract:tqa_gen_end_q": "extract_tuning"}) as t:
        with hooks.timed("extract:tqa_gen_end_q"):
            _spin()
            with hooks.timed("model_load"):
                _spin()
        for _ in range(2):
            with hooks.timed("probes"):
                _spin()
        th = threading.Thread(target=_other_thread)  # another thread's phases are not counted
        th.start()
        th.join()
        with pytest.raises(ValueError), hooks.timed("write"):
            raise ValueError("a failing phase is still timed")
        r = t.result()
    with hooks.timed("interventions"):  # after exit: the timer no longer listens
        pass
    assert list(r) == ["model_load_s", "extract_tuning_s", "probes_s", "write_s", "other_s", "total_s"]
    assert len(r["probes_s"]) == 2 and all(x >= 0 for x in r["probes_s"])
    spent = r["model_load_s"] + r["extract_tuning_s"] + sum(r["probes_s"]) + r["write_s"] + r["other_s"]
    assert spent == pytest.approx(r["total_s"], abs=0.01)  # exclusive: nothing counted twice
    assert t.result()["total_s"] >= r["total_s"] and "interventions_s" not in t.result()
    table = rows(r)
    assert table[-1][0] == "total" and table[2][0].startswith("probes (")


def test_eval_json_and_meta_carry_timings(tmp_path, tiny_model_dir, tqa_dir, wikitext_path):
    from itictl.store import Store
    from tests.helpers import run_cli

    text = tmp_path / "text.txt"
    text.write_text(wikitext_path.read_text(encoding="utf-8")[:3000], encoding="utf-8")
    store = tmp_path / "store"
    args = ["--store", str(store), "eval", "--model", str(tiny_model_dir), "--data", str(tqa_dir),
            "--limit-questions", "8", "--val-ratio", "0.5", "--heads", "2", "--alpha", "0,4",
            "--metrics", "mc,bleu,ce,kl", "--text", str(text), "--text-samples", "4", "--device", "cpu", "--json"]
    r = run_cli(*args)
    assert r.code == 0, r.stderr
    t = r.json()["timings"]
    for k in ("plan_s", "identity_hash_s", "model_artifact_s", "extract_tqa_mc2_s", "extract_tuning_s", "interventions_s",
              "eval_setup_s", "mc_s", "generation_s", "bleu_rouge_s", "ce_kl_s", "write_s", "other_s", "total_s"):
        assert isinstance(t[k], float) and t[k] >= 0, k
    assert len(t["probes_s"]) == 2  # one probe step per fold
    assert t["background"]["preload_adopted"] is True  # loaded while hashed: no model_load phase after it
    assert "model_load_s" not in t and t["background"]["preload_model_load_s"] >= 0
    art = Store(store).open("last-eval")
    assert set(art.meta["timings"]) >= set(t) - {"other_s", "process"}  # process: this run's start, the --json only
    assert t["process"]["before_s"] >= 0
    assert "timings" not in art.read_json("eval.json")  # the payload stays reproducible
    again = run_cli(*args)  # cached: same key, this run's (small) timings
    assert again.json()["key"] == r.json()["key"] and again.json()["cached"] is True
    assert "model_load_s" not in again.json()["timings"] and "total_s" in again.json()["timings"]
    verbose = run_cli(*[a for a in args if a != "--json"], "-v")
    assert verbose.code == 0 and "time per phase" in verbose.stdout + verbose.stderr
