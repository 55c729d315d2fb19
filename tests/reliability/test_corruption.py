"""Corruption: one flipped byte in a payload file or a manifest of every artifact kind is detected
before the object is used: exit 5, one stderr line naming the key and the fix
(`itictl store rm KEY`), and nothing new in the store."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli
from tests.reliability.harness import copy_store, flip_byte, object_dir, objects_listing, one_error_line


def consumer(base, role: str, tmp_path) -> list[str]:
    """A command that must read the object of `role` to do new work."""
    k, d = base.keys, str(base.data)
    return {
        "model": ["extract", "-m", str(base.tiny), "--data", d, "--limit", "39", "--json", "-q"],
        "dataset": ["extract", "-m", str(base.tiny), "--data", d, "--limit", "39", "--json", "-q"],
        "acts": ["probe", "-a", k["acts"], "--seed", "11", "--json", "-q"],
        "probes": ["intervene", "-p", k["probes"], "--tuning", k["tune"], "-K", "3", "-A", "5", "--json", "-q"],
        "iv": ["export", k["iv"], str(tmp_path / "export"), "--format", "safetensors", "--json", "-q"],
        "baked": ["push", k["baked"], "--repo", "someone/honest-tiny", "--dry-run", "--json", "-q"],
        "eval": base.args("eval"),
    }[role]


CASES = [
    ("model", "model.json"),
    ("dataset", "table.json"),
    ("acts", "activations.h5"),
    ("probes", "probes.safetensors"),
    ("probes", "probes.json"),
    ("iv", "intervention.safetensors"),
    ("iv", "intervention.json"),
    ("baked", "model/model.safetensors"),
    ("baked", "model/config.json"),
    ("eval", "eval.json"),
] + [(role, "manifest.json") for role in ("model", "dataset", "acts", "probes", "iv", "baked", "eval")]


@pytest.mark.parametrize("role,name", CASES,
                         ids=[f"{c[0]}-{c[1]}" if isinstance(c, tuple) else None for c in CASES])
def test_flipped_byte_is_detected_before_use(base, tmp_path, role, name):
    store = copy_store(base.store, tmp_path / "s")
    key = base.keys[role]
    target = object_dir(store, key) / name
    assert target.is_file(), f"{role} has no {name}"
    flip_byte(target)
    before = objects_listing(store)
    r = run_cli("--store", str(store), *consumer(base, role, tmp_path))
    assert r.code == 5, f"exit {r.code}: {r.stderr[-1500:]}"
    line = one_error_line(r)
    assert key[:12] in line
    assert f"itictl store rm {key[:12]}" in line
    assert objects_listing(store) == before, "something was written from a corrupt parent"
    # `store verify` reports it too (exit 5), naming the object
    v = run_cli("--store", str(store), "store", "verify", "--json")
    assert v.code == 5 and key[:12] in v.stderr + v.stdout


def test_truncated_large_payload_is_detected_by_size(base, tmp_path):
    """Files over the digest-on-read limit are checked by size on read (and fully by verify)."""
    store = copy_store(base.store, tmp_path / "s")
    key = base.keys["acts"]
    target = object_dir(store, key) / "activations.h5"
    target.chmod(0o644)
    with open(target, "r+b") as f:
        f.truncate(target.stat().st_size - 100)
    r = run_cli("--store", str(store), *consumer(base, "acts", tmp_path))
    assert r.code == 5
    assert key[:12] in one_error_line(r)
