"""Session fixtures for the reliability suite: a tiny random model folder (`--model DIR`), a short
natural-text file, and `base`: a store holding one finished object of every kind, built by an
uninterrupted run (the reference that crash/rerun tests compare keys and payload digests with).
TruthfulQA and wikitext come from the `tqa_dir` / `wikitext_path` fixtures, so every test using
`base` is in the integration tier (tests/conftest.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability.harness import payload_digests, run_many

LIMIT = "40"
EVAL_Q = "32"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from tests.reliability.tinymodel import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny")


@pytest.fixture(scope="session")
def text_file(tmp_path_factory, wikitext_path) -> Path:
    p = tmp_path_factory.mktemp("text") / "text.txt"
    p.write_text(wikitext_path.read_text(encoding="utf-8")[:3000], encoding="utf-8")
    return p


@dataclass
class Base:
    store: Path
    tiny: Path
    text: Path
    data: Path  # the TruthfulQA folder (`--data`)
    keys: dict[str, str] = field(default_factory=dict)  # role -> key
    digests: dict[str, dict[str, str]] = field(default_factory=dict)

    def args(self, role: str) -> list[str]:
        """The exact command line that made `role` (reruns must give the same key)."""
        return commands(self.tiny, self.text, self.data, self.keys)[role]


def commands(tiny: Path, text: Path, data: Path, keys: dict[str, str]) -> dict[str, list[str]]:
    d = str(data)
    c = {
        "acts": ["extract", "-m", str(tiny), "--data", d, "--limit", LIMIT, "--batch-tokens", "256", "--json", "-q"],
        "tune": ["extract", "-m", str(tiny), "--data", d, "-d", "tqa_gen_end_q", "--limit", LIMIT, "--json", "-q"],
    }
    if "acts" in keys:
        c["probes"] = ["probe", "-a", keys["acts"], "--json", "-q"]
    if "probes" in keys:
        c["iv"] = ["intervene", "-p", keys["probes"], "--tuning", keys["tune"], "-K", "4", "-A", "5", "--json", "-q"]
    if "iv" in keys:
        c["baked"] = ["bake", keys["iv"], "--json", "-q"]
    c["eval"] = ["eval", "--model", str(tiny), "--data", d, "--limit-questions", EVAL_Q, "--val-ratio", "0.5",
                 "--heads", "2", "--alpha", "4", "--metrics", "ce,kl", "--text", str(text), "--json", "-q"]
    return c


@pytest.fixture(scope="session")
def base(tmp_path_factory, tiny_dir, text_file, tqa_dir) -> Base:
    b = Base(tmp_path_factory.mktemp("base") / "store", tiny_dir, text_file, tqa_dir)
    for stage in (["acts", "tune"], ["probes"], ["iv"], ["baked", "eval"]):
        cmds = commands(tiny_dir, text_file, tqa_dir, b.keys)
        res = run_many(b.store, [cmds[r] for r in stage])
        for role, r in zip(stage, res):
            b.keys[role] = json.loads(r["stdout"])["key"]
    doc = json.loads((b.store / "objects" / b.keys["acts"][:2] / b.keys["acts"][2:] / "manifest.json").read_text())
    b.keys["model"] = doc["parents"]["model"]
    b.keys["dataset"] = doc["parents"]["dataset"]
    for role, key in b.keys.items():
        b.digests[role] = payload_digests(b.store, key)
    return b
