"""Data-parallel extract (issue 8): the rank/world parsing, the batch assignment, the collective
helpers in one process, and REAL 2-process runs under torchrun with the gloo backend on CPU:
same key and payload digests as a single-process run, cached reruns, disagreeing ranks, a
failing rank and a SIGKILLed rank (non-zero exit, nothing half-written, a rerun resumes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from itictl.compute import distributed as D
from itictl.errors import BadInputError, UsageError
from tests.helpers import ROOT, run_cli

LIMIT = "40"


# ---- pure units ---------------------------------------------------------------------------------

def test_env_context_parsing():
    assert D.env_context({}) == D.SINGLE and not D.SINGLE.distributed and D.SINGLE.is_main
    assert D.env_context({"WORLD_SIZE": "1", "RANK": "0"}) == D.SINGLE
    ctx = D.env_context({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "29500"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.backend) == (3, 4, 1, None)
    assert ctx.distributed and not ctx.is_main
    base = {"WORLD_SIZE": "2", "MASTER_ADDR": "localhost", "MASTER_PORT": "1"}
    assert D.env_context({**base, "RANK": "1"}).local_rank == 1  # LOCAL_RANK defaults to RANK
    for bad in ({**base, "RANK": "2"}, {**base, "RANK": "x"}, {"WORLD_SIZE": "2", "RANK": "0"},
                {**base, "RANK": "-1"}):
        with pytest.raises(UsageError):
            D.env_context(bad)


def test_rank_device_maps_ranks_to_gpus_and_keeps_single_process():
    ctx = D.DistContext(rank=1, world_size=2, local_rank=1)
    assert D.rank_device(ctx, "cpu") == "cpu"
    with pytest.raises(UsageError, match="all 2 ranks on one GPU"):
        D.rank_device(ctx, "cuda:0")
    assert D.rank_device(D.SINGLE, "cuda:1") == "cuda:1"
    assert D.rank_device(D.SINGLE, "auto") == "auto"
    import torch

    if not torch.cuda.is_available():
        assert D.rank_device(ctx, "auto") == "cpu"
        with pytest.raises(BadInputError):
            D.rank_device(ctx, "cuda")


def test_single_process_init_imports_no_torch():
    code = ("import sys; from itictl.compute import distributed as d; c = d.init('auto', {}); d.barrier(); "
            "assert d.broadcast_object(5) == 5 and d.all_gather_object(7) == [7]; d.shutdown(); "
            "print(c.world_size, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["1", "False"]


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_assign_balanced_every_item_once_and_balanced(world):
    import random

    rng = random.Random(world)
    costs = [rng.randint(1, 5000) for _ in range(57)]
    owner = D.assign_balanced(costs, world)
    assert len(owner) == len(costs) and set(owner) <= set(range(world))
    loads = [sum(c for c, o in zip(costs, owner) if o == r) for r in range(world)]
    assert sum(loads) == sum(costs)
    assert max(loads) <= sum(costs) / world + max(costs)
    assert max(loads) - min(loads) <= max(costs)
    assert owner == D.assign_balanced(list(costs), world)  # deterministic: every rank computes the same
    if world > 1:
        assert min(loads) > 0


def test_assign_balanced_edge_cases():
    assert D.assign_balanced([], 2) == []
    assert D.assign_balanced([10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 2) == [0] + [1] * 10
    with pytest.raises(ValueError):
        D.assign_balanced([1], 0)


def test_synced_errors_stay_synced_when_wrapped():
    """An error every rank already raised (run_phase) stays 'synced' when a wrapper re-raises it
    (the store turns OSError into StoreError), so rank 0 does not open a phase the others skip."""
    from itictl.errors import StoreError

    inner = OSError("disk full")
    inner._itictl_synced = True
    try:
        try:
            raise inner
        except OSError as e:
            raise StoreError("cannot write", "free some space") from e
    except StoreError as wrapped:
        assert D.synced(wrapped)
    assert not D.synced(StoreError("x", "y")) and not D.synced(None)


def test_default_batch_tokens_leave_batches_to_share():
    from itictl.extract import default_batch_tokens

    assert default_batch_tokens("cpu", 10**6) == 4096 and default_batch_tokens("cuda:0") == 65536
    assert default_batch_tokens("cuda:0", 161_687) == 8192      # all tqa_mc2 prompts: 10 batches, not 2
    assert default_batch_tokens("cuda:1", 1_000_000) == 32768   # ≥ 32 forwards, a power of two
    assert default_batch_tokens("cuda:1", 20_000) == 8192       # never below 8192
    assert default_batch_tokens("cuda", 10**8) == 65536         # capped


def test_phase_and_agreement_in_one_process():
    assert D.run_phase("x", lambda: 41 + 1) == [42]
    with pytest.raises(KeyError):
        D.run_phase("x", lambda: {}["missing"])
    assert D.same(["a" * 64, "a" * 64], "key") == "a" * 64
    with pytest.raises(BadInputError, match="rank 1 has bbbbbbbbbbbbbbbb"):
        D.same(["a" * 64, "b" * 64], "activations key")
    assert D.agree(3, "n") == 3


def test_device_map_choices_and_not_with_torchrun(cli, tmp_path):
    r = cli("extract", "--device-map", "diagonal", "--limit", "2")
    assert r.code == 4 and "unknown device map 'diagonal'" in r.stderr and r.stderr.count("\n") == 1

    D.check_device_map("balanced", D.SINGLE)
    with pytest.raises(UsageError, match="torchrun"):
        D.check_device_map("auto", D.DistContext(0, 2, 0))


# ---- real torchrun runs (gloo, 2 processes; the `torchrun` fixture makes them the slow tier) -----

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from tests.reliability.tinymodel import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("dist-model") / "tiny")


def _extract_args(store: Path, tiny: Path, tqa_dir: Path) -> list[str]:
    return ["--store", str(store), "extract", "-m", str(tiny), "--data", str(tqa_dir), "--limit", LIMIT,
            "--batch-tokens", "128", "--json", "-q"]


def manifest(store: Path, key: str) -> dict:
    return json.loads((store / "objects" / key[:2] / key[2:] / "manifest.json").read_text())


def kinds(store: Path) -> list[str]:
    return sorted(json.loads(p.read_text())["kind"] for p in (store / "objects").glob("*/*/manifest.json"))


def verify_clean(store: Path) -> None:
    r = run_cli("--store", str(store), "store", "verify", "--json")
    assert r.code == 0, r.stderr


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_dir, tqa_dir):
    """The single-process reference run (in-process, real CLI)."""
    store = tmp_path_factory.mktemp("single") / "store"
    r = run_cli(*_extract_args(store, tiny_dir, tqa_dir))
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["world_size"] == 1
    return store, doc["key"], manifest(store, doc["key"])["files"]


def test_torchrun_extract_matches_single_process_and_reruns_cached(torchrun, tmp_path, tiny_dir, tqa_dir, single):
    s_store, s_key, s_files = single
    store = tmp_path / "dp"
    p = torchrun(_extract_args(store, tiny_dir, tqa_dir))
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, p.stdout  # rank 0 alone prints
    doc = json.loads(lines[0])
    assert doc["key"] == s_key and doc["world_size"] == 2 and doc["cached"] is False
    m = manifest(store, s_key)
    assert m["files"] == s_files  # identical payload digests and sizes
    assert m["meta"]["world_size"] == 2 and sum(m["meta"]["rank_prompts"]) == int(LIMIT)
    assert all(n > 0 for n in m["meta"]["rank_prompts"])  # both ranks computed a share
    assert kinds(store) == ["activations", "dataset", "model"]
    assert list((store / "tmp").iterdir()) == []  # the per-rank work folders are gone after the commit
    verify_clean(store)

    again = torchrun(_extract_args(store, tiny_dir, tqa_dir))
    assert again.returncode == 0, again.stderr[-3000:]
    lines = again.stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["cached"] is True and json.loads(lines[0])["key"] == s_key


def test_ranks_that_disagree_on_the_key_fail_cleanly(torchrun, tmp_path, tiny_dir, tqa_dir):
    store = tmp_path / "dp"
    p = torchrun(_extract_args(store, tiny_dir, tqa_dir), runner=True,
                 env={"DIST_TEST_FAIL_RANK": "1", "DIST_TEST_FAIL_MODE": "args", "DIST_TEST_EXTRA_ARGS": "--limit 12"})
    assert p.returncode != 0
    errors = [l for l in p.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 2 and all("ranks disagree on the activations key" in e for e in errors), p.stderr[-3000:]
    assert p.stdout == ""
    assert "activations" not in kinds(store)
    assert not any((store / "tmp").glob("*.work"))  # nothing was computed
    verify_clean(store)


def test_failing_rank_fails_the_run_and_a_rerun_resumes_to_the_same_payload(torchrun, tmp_path, tiny_dir, tqa_dir,
                                                                             single):
    _, s_key, s_files = single
    store = tmp_path / "dp"
    p = torchrun(_extract_args(store, tiny_dir, tqa_dir), runner=True,
                 env={"DIST_TEST_CHUNK": "4", "DIST_TEST_FAIL_RANK": "1", "DIST_TEST_FAIL_MODE": "raise"})
    assert p.returncode != 0 and p.stdout == ""
    errors = [l for l in p.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 2, p.stderr[-3000:]
    assert any("rank 1 of 2 failed during extracting: internal error: RuntimeError: injected failure" in e for e in errors)
    assert "activations" not in kinds(store)  # nothing half-written became visible
    work = store / "tmp" / f"{s_key}.work"
    assert list((work / "rank1").glob("chunk_*")) and list((work / "rank0").glob("chunk_*"))
    assert not [d for d in (store / "tmp").iterdir() if not d.name.endswith(".work")]  # no stray build dirs
    verify_clean(store)

    again = torchrun(_extract_args(store, tiny_dir, tqa_dir))
    assert again.returncode == 0, again.stderr[-3000:]
    doc = json.loads(again.stdout)
    m = manifest(store, doc["key"])
    assert doc["key"] == s_key and m["files"] == s_files
    assert m["meta"]["resumed_prompts"] >= 4 and m["meta"]["computed_prompts"] < int(LIMIT)
    verify_clean(store)


def test_sigkilled_rank_makes_torchrun_fail_without_a_half_written_object(torchrun, tmp_path, tiny_dir, tqa_dir):
    store = tmp_path / "dp"
    p = torchrun(_extract_args(store, tiny_dir, tqa_dir), runner=True,
                 env={"DIST_TEST_CHUNK": "4", "DIST_TEST_FAIL_RANK": "1", "DIST_TEST_FAIL_MODE": "kill"})
    assert p.returncode != 0 and p.stdout == ""
    assert "activations" not in kinds(store)
    verify_clean(store)


def test_torchrun_eval_chain_matches_single_process(torchrun, tmp_path, tiny_dir, tqa_dir, wikitext_path):
    """`torchrun … eval` (DP extract, probes/interventions under key locks, generation and CE/KL
    shared by rank) gives every object the single-process run gives, with identical payloads."""
    text = tmp_path / "text.txt"
    text.write_text(wikitext_path.read_text(encoding="utf-8")[:3000], encoding="utf-8")
    args = ["eval", "--model", str(tiny_dir), "--data", str(tqa_dir), "--limit-questions", "8", "--val-ratio", "0.5",
            "--heads", "2", "--alpha", "4", "--metrics", "mc,bleu,ce,kl", "--text", str(text), "--text-samples", "16",
            "--json", "-q"]
    one, dp = tmp_path / "one", tmp_path / "dp"
    r = run_cli("--store", str(one), *args)
    assert r.code == 0, r.stderr
    p = torchrun(["--store", str(dp), *args])
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout)
    assert doc["key"] == r.json()["key"] and doc["world_size"] == 2
    assert doc["settings"][0]["mean"] == r.json()["settings"][0]["mean"]

    def objects(store: Path) -> dict[str, dict]:
        out = {}
        for m in (store / "objects").glob("*/*/manifest.json"):
            d = json.loads(m.read_text())
            out[d["key"]] = {name: f["sha256"] for name, f in d["files"].items()}
        return out

    assert objects(dp) == objects(one)
    verify_clean(dp)
