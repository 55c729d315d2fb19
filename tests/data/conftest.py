"""Fixtures for the data tests: the real TruthfulQA table (loaded once) and writable copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tqa(tqa_dir):
    from itictl.data import load_truthfulqa

    return load_truthfulqa(tqa_dir)


@pytest.fixture
def tqa_copy(tqa_dir, tmp_path) -> Path:
    """A writable copy of TruthfulQA.csv + mc_task.json in a temp dir (tests edit it)."""
    d = tmp_path / "tqa-copy"
    d.mkdir()
    for name in ("TruthfulQA.csv", "mc_task.json"):
        shutil.copyfile(tqa_dir / name, d / name)
    return d
