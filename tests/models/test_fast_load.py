"""models/fast_load.py: the weights it reads are the file's bytes, and the model it builds equals
from_pretrained(folder) (parameters, buffers, config, generation config, logits); it stands in for
from_pretrained only where it may."""

from __future__ import annotations

import json

import pytest

from itictl.models import fast_load as F
from tests.models.tiny import tiny_folder


def _assert_same_model(a, b) -> None:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    ba, bb = dict(a.named_buffers()), dict(b.named_buffers())
    assert ba.keys() == bb.keys() and all(torch.equal(ba[k], bb[k]) for k in ba)
    assert a.config.to_dict() == b.config.to_dict()
    assert a.generation_config.to_dict() == b.generation_config.to_dict()
    assert a.name_or_path == b.name_or_path
    assert a.training is False and b.training is False
    x = torch.randint(3, 100, (2, 9), generator=torch.Generator().manual_seed(0)).to(a.device)
    with torch.no_grad():
        assert torch.equal(a(x).logits, b(x).logits)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_model_equals_from_pretrained(tmp_path, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    folder = tiny_folder(tmp_path / "m")
    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    _assert_same_model(ref, F.Loading(folder, "cpu").model(dtype))


def test_sharded_and_tied_folder(tmp_path):
    """An index of several shards, and tied embeddings (the lm_head is not in the files)."""
    from transformers import AutoModelForCausalLM

    from tests.helpers import tiny_llama

    m = tiny_llama(seed=3)
    m.config.tie_word_embeddings = True
    m.tie_weights()
    folder = tmp_path / "tied"
    m.save_pretrained(folder, safe_serialization=True, max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").is_file() and len(F.weight_files(folder)) > 2
    ref = AutoModelForCausalLM.from_pretrained(folder)
    fast = F.Loading(folder, "cpu").model("float32")
    _assert_same_model(ref, fast)
    assert fast.lm_head.weight.data_ptr() == fast.model.embed_tokens.weight.data_ptr()


def test_read_safetensors_returns_the_files_tensors(tmp_path, monkeypatch):
    """Every dtype it reads, scalars and empty tensors, and tensors split over many pieces and threads."""
    import torch
    from safetensors.torch import load_file, save_file

    g = torch.Generator().manual_seed(1)
    tensors = {"f32": torch.randn(37, 11, generator=g), "f16": torch.randn(300, generator=g).half(),
               "bf16": torch.randn(5, 7, generator=g).bfloat16(), "i64": torch.arange(-5, 40),
               "i8": torch.arange(-7, 9, dtype=torch.int8), "bool": torch.rand(13, generator=g) > 0.5,
               "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 4)}
    save_file(tensors, tmp_path / "a.safetensors")
    save_file({"big": torch.randn(4000, generator=g)}, tmp_path / "b.safetensors")
    monkeypatch.setattr(F, "PIECE", 1000)  # 16 kB tensor -> 16 pieces over the threads
    got = F.read_safetensors([tmp_path / "a.safetensors", tmp_path / "b.safetensors"], "cpu", threads=4)
    want = {**load_file(tmp_path / "a.safetensors"), **load_file(tmp_path / "b.safetensors")}
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape and torch.equal(got[k], want[k]), k


def test_truncated_file_fails(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "t.safetensors"
    save_file({"w": torch.randn(1000)}, path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(OSError, match="unexpected end"):
        F.read_safetensors([path], "cpu")


def test_eligible_only_where_it_may(tmp_path, monkeypatch):
    folder = tiny_folder(tmp_path / "m")
    where = str(folder)
    assert F.eligible(where, {}, "cuda:0", None, False)
    assert not F.eligible(where, {}, "cpu", None, False)  # from_pretrained memory-maps: nothing to gain
    assert not F.eligible(where, {}, "cuda", None, False)  # several GPUs: sharded by transformers
    assert not F.eligible(where, {"revision": "x"}, "cuda:0", None, False)  # a Hub repo
    assert not F.eligible(where, {}, "cuda:0", {"": "cuda:0"}, False)  # a device map
    assert not F.eligible(where, {}, "cuda:0", None, True)  # remote code
    monkeypatch.setenv("ITICTL_FAST_LOAD", "0")
    assert not F.eligible(where, {}, "cuda:0", None, False)
    monkeypatch.delenv("ITICTL_FAST_LOAD")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "quantization_config": {"quant_method": "bitsandbytes"}}))
    assert not F.eligible(where, {}, "cuda:0", None, False)
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "adapter_config.json").write_text("{}")
    assert not F.eligible(where, {}, "cuda:0", None, False)
    (folder / "adapter_config.json").unlink()
    (folder / "model.safetensors").rename(folder / "other.safetensors")  # no weights from_pretrained would read
    assert F.weight_files(folder) is None and not F.eligible(where, {}, "cuda:0", None, False)


def test_floating_tensors_must_be_stored_in_the_load_dtype(tmp_path):
    """An fp32 folder loaded as fp16 takes from_pretrained's tensor-by-tensor conversion (no 1.5x peak)."""
    folder = tiny_folder(tmp_path / "m")  # saved in float32
    assert F.eligible(str(folder), {}, "cuda:0", None, False, "float32")
    assert not F.eligible(str(folder), {}, "cuda:0", None, False, "float16")
    assert F.eligible(str(folder), {}, "cuda:0", None, False)  # no dtype given: any


def test_unknown_dtype_is_not_eligible(tmp_path):
    import struct

    folder = tiny_folder(tmp_path / "m")
    path = folder / "model.safetensors"
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    head = json.loads(raw[8:8 + n])
    name = next(k for k in head if k != "__metadata__")
    head[name]["dtype"] = "F8_E4M3"
    text = json.dumps(head).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    assert not F.eligible(str(folder), {}, "cuda:0", None, False)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()")
def test_load_model_on_a_gpu_uses_it_and_equals_from_pretrained(tmp_path, store, monkeypatch):
    """On a GPU load_model's folder path goes through fast_load; the model equals transformers' load."""
    import torch
    from transformers import AutoModelForCausalLM

    from itictl.models import ensure_model, load_model

    made = []
    monkeypatch.setattr(F, "Loading", lambda *a, _real=F.Loading: made.append(a) or _real(*a))
    folder = tiny_folder(tmp_path / "m")
    lm = load_model(store, ensure_model(store, str(folder)), device="cuda:0", dtype="float32")
    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, device_map={"": "cuda:0"})
    assert len(made) == 1
    _assert_same_model(ref, lm.model)


def test_warm_kernels_runs_and_leaves_the_weights_alone(tmp_path):
    """The GPU warm-up (run on the CPU here) uses throwaway tensors only."""
    import torch

    folder = tiny_folder(tmp_path / "m")
    sd = F.read_safetensors(F.weight_files(folder), "cpu")
    before = {k: v.clone() for k, v in sd.items()}
    assert F.warm_kernels(sd, folder, "cpu", tokens=16) is True
    assert all(torch.equal(sd[k], before[k]) for k in sd)
