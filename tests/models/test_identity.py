"""Model identities: folder digests, GGUF checks, and the Hub path against closed ports, an
offline cache, and a local HTTP fake of the Hub API (the real huggingface_hub code runs)."""

from __future__ import annotations

import socket
import time

import pytest

from itictl.errors import BadInputError, NotFoundError, RemoteError
from itictl.models import resolve_model
from itictl.models.embedded import read_gguf_header
from tests.fake_hub import FakeHub
from tests.models.tiny import tiny_folder

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_folder_identity_changes_with_a_weight_file(tmp_path, store):
    folder = tiny_folder(tmp_path / "m", seed=0)
    a = resolve_model(str(folder), store).identity
    assert resolve_model(str(folder), store).identity == a  # stable
    assert set(a["digests"]) >= {"config.json", "model.safetensors", "tokenizer.json"}
    tiny_folder(tmp_path / "m2", seed=0)
    assert resolve_model(str(tmp_path / "m2"), store).identity == a  # content, not path
    w = folder / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0x01
    w.write_bytes(bytes(data))
    b = resolve_model(str(folder), store).identity
    assert b["digests"]["model.safetensors"] != a["digests"]["model.safetensors"]
    assert b["digests"]["config.json"] == a["digests"]["config.json"]


def _control_vector(path):
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "controlvector")
    w.add_string("controlvector.model_hint", "llama")
    w.add_uint32("controlvector.layer_count", 1)
    w.add_tensor("direction.1", np.ones(8, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_that_is_not_a_model(tmp_path, store):
    cv = _control_vector(tmp_path / "cv.gguf")
    h = read_gguf_header(cv)
    assert h.architecture == "controlvector" and h.tensor_count == 1 and not h.has_tokenizer
    with pytest.raises(BadInputError) as ei:
        resolve_model(str(cv), store)
    assert "not a language model" in ei.value.message and "controlvector" in ei.value.message
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(BadInputError, match="not a valid GGUF"):
        resolve_model(str(junk), store)
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(cv.read_bytes()[:40])
    with pytest.raises(BadInputError, match="not a valid GGUF"):
        resolve_model(str(trunc), store)


def test_embedded_header_is_a_llama_model():
    from itictl.models.embedded import check_gguf_model, embedded_gguf_path

    h = check_gguf_model(embedded_gguf_path())
    assert h.architecture == "llama" and h.has_tokenizer and h.tensor_count > 100


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def test_hub_unreachable_fails_fast(hub_env, monkeypatch, store):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    t0 = time.monotonic()
    with pytest.raises(RemoteError) as ei:
        resolve_model("llama2_chat_7B", store)
    assert time.monotonic() - t0 < 5
    line = ei.value.one_line()
    assert "cannot reach" in line and "meta-llama/Llama-2-7b-chat-hf" in line and "local model folder" in line
    assert "\n" not in line


def test_hub_offline_mode(hub_env, monkeypatch, store):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(RemoteError, match="HF_HUB_OFFLINE"):
        resolve_model("someorg/somemodel", store)
    repo_dir = hub_env / "models--someorg--somemodel"
    (repo_dir / "snapshots" / COMMIT).mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    ref = resolve_model("someorg/somemodel", store)
    assert ref.source == "hub" and ref.identity == {"source": "hub", "repo": "someorg/somemodel", "commit": COMMIT}
    assert resolve_model("someorg/somemodel", store, revision=COMMIT).identity["commit"] == COMMIT
    with pytest.raises(RemoteError):
        resolve_model("someorg/somemodel", store, revision="v2")


def test_hub_commit_from_fake_hub_api(hub_env, monkeypatch, store):
    repo = "meta-llama/Llama-2-7b-chat-hf"
    with FakeHub(models={repo: {"revisions": {"main": {}, "v1": {}}, "commits": {"main": COMMIT, "v1": "f" * 40}}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        ref = resolve_model("llama2_chat_7B", store)
        assert ref.identity == {"source": "hub", "repo": repo, "commit": COMMIT}
        assert resolve_model(repo, store, revision="v1").identity["commit"] == "f" * 40
        with pytest.raises(NotFoundError, match="revision"):
            resolve_model(repo, store, revision="nope")
        with pytest.raises(NotFoundError, match="not found on the Hub"):
            resolve_model("nobody/nothing", store)
        assert any(p.startswith(f"/api/models/{repo}") for _, p in hub.requests)
