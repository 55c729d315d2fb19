"""ensure_model / load_model on tiny random models saved as folders (and as a cached Hub repo)."""

from __future__ import annotations

import shutil

import pytest
import torch

from itictl.errors import BadInputError
from itictl.models import clear_memo, ensure_model, load_model
from tests.models.tiny import tiny_folder

COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def _fresh_memo():
    clear_memo()
    yield
    clear_memo()


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits


def test_ensure_model_folder_artifact(tmp_path, store):
    folder = tiny_folder(tmp_path / "m")
    art = ensure_model(store, str(folder))
    assert art.kind == "model" and art.params["identity"]["source"] == "folder"
    info = art.read_json("model.json")
    assert (info["n_layers"], info["n_heads"], info["head_dim"]) == (2, 4, 8)
    assert info["hidden_size"] == 40 and info["model_type"] == "llama" and info["weights"] == "folder"
    assert not (art.path / "hf").exists()  # folder sources are not copied
    created = art.manifest.doc["created"]
    again = ensure_model(store, str(folder))
    assert again.key == art.key and again.manifest.doc["created"] == created
    assert len(store.ls(kind="model")) == 1


def test_load_model_memo_pad_and_logits(tmp_path, store):
    from transformers import AutoModelForCausalLM

    folder = tiny_folder(tmp_path / "m", seed=3)
    art = ensure_model(store, str(folder))
    lm = load_model(store, art, dtype="auto", device="cpu")
    assert lm.dtype == "float32" and lm.device == "cpu" and not lm.model.training
    assert (lm.layout.n_layers, lm.layout.n_heads, lm.layout.head_dim) == (2, 4, 8)
    assert lm.tokenizer.pad_token == "</s>" and lm.tokenizer.pad_token_id == 2
    assert lm.model.generation_config.pad_token_id == 2
    assert not any(p.requires_grad for p in lm.model.parameters())
    assert load_model(store, art, dtype="float32", device="cpu") is lm  # memo hit
    assert load_model(store, art, dtype="float32", device="cpu", fresh=True) is not lm
    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = lm.tokenizer("w1 w2 w3 w4")["input_ids"]
    assert torch.equal(_logits(lm.model, ids), _logits(ref, ids))
    bf = load_model(store, art, dtype="bfloat16", device="cpu")
    assert bf is not lm and next(bf.model.parameters()).dtype == torch.bfloat16


def test_changed_folder_is_refused_at_load(tmp_path, store):
    folder = tiny_folder(tmp_path / "m")
    art = ensure_model(store, str(folder))
    tiny_folder(folder, seed=1)  # new weights in the same place
    with pytest.raises(BadInputError, match="changed"):
        load_model(store, art, device="cpu")
    assert ensure_model(store, str(folder)).key != art.key


def test_bad_options_and_wrong_kind(tmp_path, store):
    art = ensure_model(store, str(tiny_folder(tmp_path / "m")))
    with pytest.raises(BadInputError, match="dtype"):
        load_model(store, art, dtype="float8", device="cpu")
    with pytest.raises(BadInputError, match="device"):
        load_model(store, art, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BadInputError, match="CUDA"):
            load_model(store, art, device="cuda:0")
    other, _ = store.produce("dataset", {"x": 1}, {}, lambda ctx: (ctx.out / "t.json").write_text("{}"))
    with pytest.raises(BadInputError, match="not a model"):
        load_model(store, other, device="cpu")


def test_hub_model_from_offline_cache(tmp_path, monkeypatch, store):
    """A Hub id resolved and loaded entirely from the HF cache with HF_HUB_OFFLINE=1."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo_dir = cache / "models--someorg--tiny"
    snap = repo_dir / "snapshots" / COMMIT
    src = tiny_folder(tmp_path / "src", seed=5)
    shutil.copytree(src, snap)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    art = ensure_model(store, "someorg/tiny")
    assert art.params["identity"] == {"source": "hub", "repo": "someorg/tiny", "commit": COMMIT}
    info = art.read_json("model.json")
    assert info["weights"] == "hub" and info["n_heads"] == 4
    lm = load_model(store, art, device="cpu")
    folder_lm = load_model(store, ensure_model(store, str(src)), device="cpu")
    ids = [1, 5, 9, 11]
    assert torch.equal(_logits(lm.model, ids), _logits(folder_lm.model, ids))
    # model parallel from the same offline cache: accelerate's 'auto' map and an explicit map
    # (checked against the cached config, offline) give the same logits
    auto = load_model(store, art, device="cpu", device_map="auto")
    whole = load_model(store, art, device="cpu", device_map={"model": "cpu", "lm_head": "cpu"})
    assert auto is not lm and whole is not auto and auto.device == "cpu"
    assert torch.equal(_logits(auto.model, ids), _logits(lm.model, ids))
    assert torch.equal(_logits(whole.model, ids), _logits(lm.model, ids))


def test_device_kind_is_torch_free_and_honours_hidden_gpus(monkeypatch):
    from itictl.errors import BadInputError
    from itictl.models.loading import device_kind

    assert device_kind("cpu") == "cpu" and device_kind("cuda") == device_kind("CUDA:3") == "cuda"
    gpu_box = dict(cuda_build=True, gpu_nodes=["nvidia3"])  # a CUDA torch on a box given only GPU 3
    assert device_kind("auto", **gpu_box, environ={}) == "cuda"
    assert device_kind("auto", cuda_build=True, gpu_nodes=[], environ={}) == "cpu"
    assert device_kind("auto", cuda_build=False, gpu_nodes=["nvidia0"], environ={}) == "cpu"
    assert device_kind("auto", **gpu_box, environ={"CUDA_VISIBLE_DEVICES": ""}) == "cpu"  # GPUs hidden: float32 keys
    assert device_kind(None, **gpu_box, environ={"CUDA_VISIBLE_DEVICES": "-1"}) == "cpu"
    assert device_kind("auto", **gpu_box, environ={"CUDA_VISIBLE_DEVICES": "3"}) == "cuda"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # without `environ`, the process environment counts
    assert device_kind("auto", **gpu_box) == "cpu"
    with pytest.raises(BadInputError, match="unknown device"):
        device_kind("tpu")


def test_device_kind_machine_facts(tmp_path):
    """The defaults device_kind reads: device nodes (only nvidiaN count) and the torch build."""
    import torch

    from itictl.models.devices import nvidia_device_nodes, torch_cuda_build

    for name in ("nvidia3", "nvidia10", "nvidiactl", "nvidia-uvm", "nvidia-caps", "null"):
        (tmp_path / name).touch()
    assert nvidia_device_nodes(tmp_path) == ["nvidia10", "nvidia3"]
    assert nvidia_device_nodes(tmp_path / "empty") == []
    assert torch_cuda_build() == (torch.version.cuda is not None)
