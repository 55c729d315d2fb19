"""The architecture matrix: every causal-LM model_type of the installed transformers, as a tiny
random model, through extract / bake / steered generation / pyvene export (tests/models/arch_checks.py),
and docs/architectures.md is exactly what scripts/arch_matrix.py writes from these results."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models.arch_checks import CHECKS, matrix_types, render, run_matrix

DOC = Path(__file__).resolve().parents[2] / "docs" / "architectures.md"


@pytest.fixture(scope="module")
def matrix():
    import transformers

    transformers.logging.set_verbosity_error()
    types, skipped, outside = matrix_types()
    return run_matrix(types), skipped, outside


def test_no_architecture_gives_a_wrong_result(matrix):
    """Every check either passes or is refused with an UnsupportedError: never a wrong number,
    never an unexpected exception."""
    rows, _, _ = matrix
    bad = {r.model_type: r.first_problem() for r in rows
           if any(not (r.checks.get(c, "ok").startswith(("ok", "unsupported:"))) for c in CHECKS)}
    assert not bad


def test_at_least_25_types_pass_every_check(matrix):
    rows, _, _ = matrix
    passed = [r.model_type for r in rows if r.passed]
    assert len(passed) >= 25, passed
    assert {"llama", "gpt2", "gpt_neox", "olmo", "gemma2", "deepseek_v3", "bloom", "phi"} <= set(passed)


def test_table_entries_are_used_and_map_correctly(matrix):
    from itictl.models.arch import ARCHS

    rows, _, _ = matrix
    for r in rows:
        if r.model_type in ARCHS:
            assert r.source == "table" and r.checks["map"] == "ok" and r.checks["extract"] == "ok", r
    assert sum(r.source == "discovered" and r.passed for r in rows) >= 25  # discovery alone covers many


def test_architectures_page_matches_the_matrix(matrix):
    rows, skipped, outside = matrix
    assert DOC.read_text(encoding="utf-8") == render(rows, skipped, outside), \
        "docs/architectures.md is stale: run .venv/bin/python scripts/arch_matrix.py"
