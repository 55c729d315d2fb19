"""Shared fixtures.

Tiers: unit tests use tiny random models built in the test (fast); tests marked `integration`
use the embedded SmolLM2-135M-Instruct and small TruthfulQA subsets read from ../shared/data.
The embedded model is dequantised once per session into a session store (about 25 s).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("ITICTL_TEST_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tqa_dir() -> Path:
    d = shared_data_dir() / "truthfulqa"
    if not (d / "TruthfulQA.csv").is_file():
        pytest.fail(f"TruthfulQA not found at {d}; set ITICTL_TEST_SHARED_DATA")
    return d


@pytest.fixture(scope="session")
def wikitext_path() -> Path:
    p = shared_data_dir() / "text" / "wikitext-2-raw-test.txt"
    if not p.is_file():
        pytest.fail(f"wikitext not found at {p}; set ITICTL_TEST_SHARED_DATA")
    return p


@pytest.fixture
def store(tmp_path):
    from itictl.store import Store

    s = Store(tmp_path / "store")
    s.ensure()
    return s


@pytest.fixture(scope="session")
def session_store(tmp_path_factory):
    """A store shared by integration tests; ITICTL_TEST_STORE reuses one across runs (dev only)."""
    from itictl.store import Store

    env = os.environ.get("ITICTL_TEST_STORE")
    s = Store(Path(env) if env else tmp_path_factory.mktemp("session-store"))
    s.ensure()
    return s


@pytest.fixture(scope="session")
def embedded(session_store):
    """The embedded default model (SmolLM2-135M-Instruct), fp32 on CPU, loaded once."""
    from itictl.models import ensure_model, load_model

    art = ensure_model(session_store, None)
    return load_model(session_store, art, dtype="float32", device="cpu")


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run itictl in-process: cli('store', 'ls', '--json') -> CliResult(code, stdout, stderr)."""
    from tests.helpers import run_cli

    monkeypatch.setenv("ITICTL_HOME", str(tmp_path / "cli-store"))
    return run_cli
