"""`itictl push` with the real huggingface_hub client against a local fake Hub (tests/fake_hub.py):
repo creation, one commit with exactly the expected files, branches, auth failure, network failure,
--dry-run without network, and bad input that uploads nothing."""

from __future__ import annotations

import json
import socket

import pytest
import torch

from tests.fake_hub import FakeHub
from tests.helpers import tiny_llama
from tests.publish.test_export import fake_intervention, fake_model_art

TOKEN = "hf_good_token_123"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    with FakeHub(token=TOKEN) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "ITICTL_PUSH_REPO", "HF_OIDC_RESOURCE"):
            monkeypatch.delenv(name, raising=False)
        # no stored `hf auth login` either (tests write one here when they want it)
        monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
        monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf-home" / "stored_tokens"))
        yield h


@pytest.fixture
def populated(tmp_path):
    """A CLI store holding model -> intervention -> baked-model (tiny llama), plus an eval."""
    from itictl.publish.bake import bake_folder
    from itictl.store import Store

    store = Store(tmp_path / "cli-store")
    store.ensure()
    m = fake_model_art(store)
    g = torch.Generator().manual_seed(0)
    deltas = {1: torch.randn(32, generator=g)}
    inter = fake_intervention(store, m, deltas, [[1, 2]])

    def build(ctx):
        info = bake_folder(tiny_llama(), None, deltas, ctx.out / "model")
        (ctx.out / "README.md").write_text("old card")
        ctx.meta.update({"layers": info.layers, "enabled_flag": info.enabled_flag, "zero_params": len(info.zero_params)})

    baked = store.produce("baked-model", {"dtype": "float32"}, {"intervention": inter.key, "model": m.key}, build)[0]
    ev = store.produce("eval", {"folds": 2}, {"model": m.key, "intervention": inter.key},
                       lambda ctx: (ctx.out / "eval.json").write_text(json.dumps({"mean": {"MC1": 0.3125, "MC2": 0.5}})))[0]
    store.tag("last-eval", ev.key)
    return store, baked, inter


def one_error_line(stderr: str) -> str:
    """The single `error: …` line of a failed command (progress lines may precede it; no traceback)."""
    errors = [l for l in stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def expected_model_files(baked):
    root = baked.path / "model"
    return sorted([p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()] + ["README.md"])


def test_push_creates_repo_and_commits_expected_files(cli, hub, populated, monkeypatch):
    store, baked, inter = populated
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    r = cli("push", "--repo", "me/honest-tiny", "--json")  # default REF: baked model of last-eval
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["artifact"] == baked.key and doc["repo"] == "me/honest-tiny"
    repo = hub.repos["me/honest-tiny"]
    assert repo["private"] is False
    assert len(repo["commits"]) == 1  # one commit with everything
    tree = repo["branches"]["main"]
    assert sorted(tree) == expected_model_files(baked) == sorted(doc["files"])
    assert "config.json" in tree and "model.safetensors" in tree
    for name in tree:
        if name != "README.md":
            assert tree[name] == (baked.path / "model" / name).read_bytes(), name
    card = tree["README.md"].decode()
    assert card.startswith("---\n") and "base_model: \"test-org/tiny-llama\"" in card
    assert "| MC1 | 0.3125 |" in card and "prompt tokens included" in card
    assert 'from_pretrained("me/honest-tiny")' in card and "attention_bias: true" in card
    assert doc["commit"] == repo["commits"][0]["oid"]
    assert set(hub.auth_headers) == {f"Bearer {TOKEN}"}
    assert TOKEN not in r.stdout + r.stderr
    assert ("POST", "/api/repos/create") in hub.requests
    assert any(p.startswith("/api/models/me/honest-tiny/preupload/") for _, p in hub.requests)


def test_push_existing_repo_to_branch_private_and_intervention(cli, hub, populated):
    store, baked, inter = populated
    r = cli("push", baked.key[:10], "--repo", "me/x", "--private", "--token", TOKEN, "--json")
    assert r.code == 0, r.stderr
    assert hub.repos["me/x"]["private"] is True
    r = cli("push", baked.key[:10], "--repo", "me/x", "--revision", "iti-v2", "--token", TOKEN, "--json")
    assert r.code == 0, r.stderr  # the repo exists (409 is fine); the branch is created
    assert sorted(hub.repos["me/x"]["branches"]["iti-v2"]) == expected_model_files(baked)
    assert [c["rev"] for c in hub.repos["me/x"]["commits"]] == ["main", "iti-v2"]
    # an intervention is pushed as a small repo: δ vectors, their JSON and a card
    r = cli("push", inter.key[:10], "--repo", "me/iti-deltas", "--token", TOKEN, "--json")
    assert r.code == 0, r.stderr
    tree = hub.repos["me/iti-deltas"]["branches"]["main"]
    assert sorted(tree) == ["README.md", "intervention.json", "intervention.safetensors"]
    assert json.loads(tree["intervention.json"])["itictl_intervention_key"] == inter.key


def test_push_auth_failure_is_exit_7_and_uploads_nothing(cli, hub, populated):
    r = cli("push", "--repo", "me/honest", "--token", "hf_wrong_token_999")
    assert r.code == 7, r.stderr
    assert "401" in one_error_line(r.stderr) and "hf_wrong_token_999" not in r.stderr + r.stdout
    assert hub.repos == {}


def test_push_network_error_is_exit_6(cli, populated, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    r = cli("push", "--repo", "me/honest", "--token", TOKEN)
    assert r.code == 6, r.stderr
    assert "cannot reach the Hub" in one_error_line(r.stderr)


def test_push_dry_run_lists_files_and_card_without_network(cli, hub, populated):
    store, baked, _ = populated
    r = cli("push", "--repo", "me/honest", "--dry-run", "--json")  # no token needed
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["dry_run"] is True and doc["files"] == expected_model_files(baked)
    assert doc["card"].startswith("---\n") and "inference-time-intervention" in doc["card"]
    r = cli("push", "--repo", "me/honest", "--dry-run")
    assert r.code == 0 and "README.md" in r.stderr and "## Lineage" in r.stderr
    assert hub.requests == []


@pytest.mark.parametrize("args,code,text", [
    (["push"], 7, "no Hugging Face token"),  # no --repo: the account needs a token
    (["push", "--repo", "me/bad name!", "--token", TOKEN], 4, "invalid Hub repo name"),
    (["push", "--repo", "no-owner", "--token", TOKEN], 4, "invalid Hub repo name"),
    (["push", "--repo", "me/a--b", "--token", TOKEN], 4, "invalid Hub repo name"),
    (["push", "--repo", "me/honest"], 7, "no Hugging Face token"),
])
def test_push_bad_input_one_line_and_no_upload(cli, hub, populated, args, code, text):
    r = cli(*args)
    assert r.code == code, r.stderr
    assert text in r.stderr and r.stderr.count("\n") == 1
    assert hub.requests == []


def test_push_nothing_to_push(cli, hub, tmp_path):
    r = cli("push", "--repo", "me/x", "--token", TOKEN)
    assert r.code == 3 and "itictl bake" in r.stderr
    assert hub.requests == []
