"""A store with a tiny random model and a function that runs `itictl eval` on it (the first 12
TruthfulQA questions, K=3, MC only, CPU): the starting point of the final-intervention and card tests."""

from __future__ import annotations

from tests.helpers import run_cli

N_QUESTIONS = 12


def tiny_eval_store(root, tqa_dir, alpha: str):
    """-> (store dir, tiny model dir, evaluate(*extra options) -> eval key)."""
    from tests.reliability.tinymodel import write_tiny_model

    tiny = write_tiny_model(root / "tiny")
    store = root / "store"

    def evaluate(*extra: str) -> str:
        r = run_cli("--store", str(store), "eval", "--model", str(tiny), "--data", str(tqa_dir), "--limit-questions",
                    str(N_QUESTIONS), "--heads", "3", "--alpha", alpha, "--metrics", "mc", "--device", "cpu",
                    "--seed", "5", *extra, "--json", "-q")
        assert r.code == 0, r.stderr[-2000:]
        return r.json()["key"]

    return store, tiny, evaluate
