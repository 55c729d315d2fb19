"""`itictl push` without --repo: the repo is $ITICTL_PUSH_REPO, else ACCOUNT/<model>-iti with the
account from `whoami` (the real huggingface_hub client against tests/fake_hub.py) and the token from
HF_TOKEN or the stored `hf auth login`; no token is one line and exit 7 before any request. The
must-show: `itictl bake && itictl push` run by bash with only HF_TOKEN set pushes and prints the URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from itictl.publish.push import hub_safe_name
from tests.publish.test_push import TOKEN, expected_model_files, hub, one_error_line, populated  # noqa: F401


def test_no_repo_uses_account_and_base_model_name(cli, hub, populated, monkeypatch):  # noqa: F811
    store, baked, _ = populated
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    r = cli("push")
    assert r.code == 0, r.stderr
    url = f"{hub.url}/fake-user/tiny-llama-iti"  # base model test-org/tiny-llama, a baked model
    assert f"pushed {len(expected_model_files(baked))} files to {url} (commit" in r.stderr
    assert sorted(hub.repos["fake-user/tiny-llama-iti"]["branches"]["main"]) == expected_model_files(baked)
    assert hub.requests.index(("GET", "/api/whoami-v2")) < hub.requests.index(("POST", "/api/repos/create"))
    assert TOKEN not in r.stdout + r.stderr
    r = cli("push", "--json")  # again: the repo exists, a second commit; the URL is in the document
    doc = r.json()
    assert doc["url"] == url and doc["repo"] == "fake-user/tiny-llama-iti" and doc["repo_from"] == "account"
    assert len(hub.repos["fake-user/tiny-llama-iti"]["commits"]) == 2


def test_stored_login_is_used_when_no_env_token(cli, hub, populated, tmp_path):  # noqa: F811
    import huggingface_hub.constants as hf_constants

    os.makedirs(os.path.dirname(hf_constants.HF_TOKEN_PATH), exist_ok=True)
    with open(hf_constants.HF_TOKEN_PATH, "w") as f:
        f.write(TOKEN)
    r = cli("push", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["repo"] == "fake-user/tiny-llama-iti" and "fake-user/tiny-llama-iti" in hub.repos
    assert TOKEN not in r.stdout + r.stderr


def test_env_repo_and_intervention_suffix(cli, hub, populated, monkeypatch):  # noqa: F811
    store, baked, inter = populated
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("ITICTL_PUSH_REPO", "team/from-env")
    doc = cli("push", "--json").json()
    assert doc["repo"] == "team/from-env" and doc["repo_from"] == "ITICTL_PUSH_REPO"
    assert ("GET", "/api/whoami-v2") not in hub.requests  # a named repo needs no whoami
    assert cli("push", "--repo", "me/flag", "--json").json()["repo_from"] == "--repo"  # the flag wins
    monkeypatch.delenv("ITICTL_PUSH_REPO")
    doc = cli("push", inter.key[:10], "--json").json()
    assert doc["repo"] == "fake-user/tiny-llama-iti-vectors"  # an intervention: the δ vectors
    assert sorted(hub.repos) == ["fake-user/tiny-llama-iti-vectors", "me/flag", "team/from-env"]


def test_no_token_is_exit_7_before_any_request(cli, hub, populated):  # noqa: F811
    r = cli("push")
    assert r.code == 7, r.stderr
    line = one_error_line(r.stderr)
    assert "no Hugging Face token" in line and "HF_TOKEN" in line and "hf auth login" in line
    assert r.stderr.count("\n") == 1 and hub.requests == []


def test_rejected_token_is_exit_7_and_creates_nothing(cli, hub, populated, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_999")
    r = cli("push")
    assert r.code == 7, r.stderr
    assert "401" in one_error_line(r.stderr) and "hf_wrong_token_999" not in r.stdout + r.stderr
    assert hub.repos == {} and hub.requests == [("GET", "/api/whoami-v2")]


def test_dry_run_without_repo_is_offline(cli, hub, populated):  # noqa: F811
    r = cli("push", "--dry-run", "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["repo"] == "USER/tiny-llama-iti" and 'from_pretrained("USER/tiny-llama-iti")' in doc["card"]
    r = cli("push", "--dry-run")
    assert "USER/tiny-llama-iti (USER: your Hub account)" in " ".join(r.stderr.split())  # wrapped at 80
    assert hub.requests == []


@pytest.mark.parametrize("name,short", [
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct"),
    ("meta-llama/Llama-2-7b-chat-hf", "Llama-2-7b-chat-hf"),
    ("/models/my model (v2)/", "my-model-v2"),
    ("a--b..c", "a-b-c"),
    ("///", "model"),
    ("x" * 200, "x" * 80),
])
def test_hub_safe_name(name, short):
    assert hub_safe_name(name) == short


def test_eval_then_bake_and_push_in_bash_with_only_hf_token(cli, hub, tmp_path, tqa_dir):  # noqa: F811
    """The usage line `itictl bake && itictl push`, run by bash after an eval (a tiny Llama folder, 8
    questions), with HF_TOKEN as the only Hub setting: pushes to ACCOUNT/<model>-iti, prints the URL."""
    from tests.helpers import tiny_llama
    from tests.publish.test_bake import tiny_tokenizer

    folder = tmp_path / "tiny-chat"
    tiny_llama(layers=2).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    store_dir = tmp_path / "cli-store"  # the cli fixture's store
    r = cli("eval", "--model", str(folder), "--data", str(tqa_dir), "--limit-questions", "8", "--heads", "2",
            "--alpha", "5", "--metrics", "mc", "--device", "cpu", "-q")
    assert r.code == 0, r.stderr
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING_FACE", "ITICTL_PUSH", "ITICTL_DEBUG"))}
    env.update(HF_TOKEN=TOKEN, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), ITICTL_HOME=str(store_dir),
               ITICTL_DATA=str(tqa_dir), OMP_NUM_THREADS="1")
    script = f'itictl() {{ "{sys.executable}" -m itictl "$@"; }}\nitictl bake --device cpu && itictl push\n'
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr
    url = f"{hub.url}/fake-user/tiny-chat-iti"  # the model folder's name, -iti
    assert f"to {url} (commit" in " ".join(p.stderr.split()), p.stderr
    from itictl.store import Store

    baked = Store(store_dir).open("last-bake")
    tree = hub.repos["fake-user/tiny-chat-iti"]["branches"]["main"]
    assert sorted(tree) == expected_model_files(baked)
    assert tree["model.safetensors"] == (baked.path / "model" / "model.safetensors").read_bytes()
    assert TOKEN not in p.stdout + p.stderr + json.dumps(baked.manifest.doc)
