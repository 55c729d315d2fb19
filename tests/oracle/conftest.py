"""Oracle fixtures: a recorder of the largest |itictl − oracle| difference per comparison, printed in
pytest's terminal summary ("oracle max |Δ|")."""

from __future__ import annotations

import pytest

_DIFFS: dict[str, float] = {}


@pytest.fixture
def record_diff():
    """record_diff(name, value): keep the largest value seen under `name` for the summary."""

    def record(name: str, value: float) -> float:
        _DIFFS[name] = max(float(value), _DIFFS.get(name, 0.0))
        return float(value)

    return record


def pytest_terminal_summary(terminalreporter):
    if _DIFFS:
        terminalreporter.section("oracle max |Δ| (itictl vs naive reference)")
        for name, v in sorted(_DIFFS.items()):
            terminalreporter.write_line(f"{name}: {v:.3g}")



@pytest.fixture(scope="session")
def embedded_case(embedded, tqa_dir):
    """The embedded model's oracle case, built once for both MC oracle suites: (model, tokenizer,
    3 TruthfulQA questions, deltas, the same intervention in the reference's form) — 12 heads at
    α = 15 with σ from real o_proj inputs of those questions' answers."""
    from types import SimpleNamespace

    from itictl.data.truthfulqa import load_truthfulqa
    from tests.oracle import reference as ref
    from tests.oracle.test_oracle_mc import _intervention

    model, tok = embedded.model, embedded.tokenizer
    qs = [load_truthfulqa(tqa_dir).questions[i] for i in (0, 6, 33)]
    cfg = model.config
    prompts = [f"Q: {q.question} A: {a}" for q in qs for a in q.correct_answers[:2] + q.incorrect_answers[:2]]
    tuning = ref.collect_head_wise(model, tok, prompts)  # real o_proj inputs [N, L, H, D]
    deltas, ivs = _intervention(cfg.num_hidden_layers, cfg.num_attention_heads, tuning.shape[-1], tuning,
                                k=12, alpha=15.0)
    return SimpleNamespace(model=model, tok=tok, qs=qs, deltas=deltas, ivs=ivs)
