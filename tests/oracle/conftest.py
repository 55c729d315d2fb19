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

