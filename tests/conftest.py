"""Shared fixtures, and the test tiers.

Every test gets exactly one tier marker, set here from the fixtures it uses (never by hand):
  slow         launches a multi-process torchrun run or a headless browser: uses the `torchrun` or
               `chromium` fixture.
  integration  needs the embedded SmolLM2-135M-Instruct model or the shared data (../shared/data,
               or $ITICTL_TEST_SHARED_DATA): uses `embedded`, `session_store`, `tqa_dir` or
               `wikitext_path`, directly or through another fixture.
  unit         everything else: tiny random models built in the test, synthetic data, local
               HTTP fakes. Runs on a machine without ../shared (`make test-unit`).
So a test that reads TruthfulQA or wikitext must get the path from `tqa_dir` / `wikitext_path`
(not from a path of its own), and one that runs the embedded model from `embedded` /
`session_store`; otherwise it would land in the unit tier. Selection: `make test` (every tier),
`make test-unit` (-m unit), `make test-integration` (-m integration), `make test-fast` (-m "not
slow"). The embedded model is dequantised once per session into the session store (about 25 s;
ITICTL_TEST_STORE reuses one store across runs).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


INTEGRATION_FIXTURES = frozenset({"embedded", "session_store", "tqa_dir", "wikitext_path"})
SLOW_FIXTURES = frozenset({"torchrun", "chromium"})


def tier(fixturenames) -> str:
    """The one tier of a test from its fixture closure (item.fixturenames: direct and indirect)."""
    names = set(fixturenames)
    if names & SLOW_FIXTURES:
        return "slow"
    if names & INTEGRATION_FIXTURES:
        return "integration"
    return "unit"


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(getattr(pytest.mark, tier(getattr(item, "fixturenames", ()))))


@pytest.fixture(autouse=True)
def _no_leftover_hooks():
    """itictl.hooks callbacks a test registers (pauses, injected failures) end with the test."""
    yield
    from itictl import hooks

    hooks.clear()


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
def torchrun():
    """Run a real 2-process torchrun (gloo, CPU): torchrun(args, runner=False, env=None, timeout=240)
    -> CompletedProcess. runner=True runs tests/distributed_runner.py (failure injection) instead
    of `python -m itictl`. Using this fixture puts a test in the `slow` tier."""
    from tests.helpers import run_torchrun

    return run_torchrun


@pytest.fixture
def chromium():
    """The path of a headless-capable Chromium (Debian: `apt-get install chromium`); skips the test
    when none is installed. Using this fixture puts a test in the `slow` tier."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium binary on PATH (Debian: apt-get install -y chromium)")


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run itictl in-process: cli('store', 'ls', '--json') -> CliResult(code, stdout, stderr)."""
    from tests.helpers import run_cli

    monkeypatch.setenv("ITICTL_HOME", str(tmp_path / "cli-store"))
    return run_cli
