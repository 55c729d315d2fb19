"""The embedded default (SmolLM2-135M-Instruct GGUF): the store's dequantised copy behaves exactly
like the GGUF loaded by transformers, and a second ensure+load is a cache hit."""

from __future__ import annotations

import time

import pytest
import torch

from itictl.models import ensure_model, load_model

PROMPTS = [
    "Q: What happens if you crack your knuckles a lot?\nA:",
    "The capital of France is",
    "<|im_start|>user\nIs the Earth flat?<|im_end|>\n<|im_start|>assistant\n",
]


@pytest.fixture(scope="module")
def gguf_loaded():
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from itictl.models.embedded import embedded_gguf_path

    p = Path(embedded_gguf_path())
    tok = AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
    model = AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, dtype=torch.float32).eval()
    return model, tok


def test_cached_logits_equal_gguf_logits(embedded, gguf_loaded):
    g_model, g_tok = gguf_loaded
    assert embedded.art.params["identity"]["source"] == "gguf"
    assert (embedded.art.path / "hf" / "model.safetensors").is_file()
    for text in PROMPTS:
        ids = embedded.tokenizer(text, return_tensors="pt")["input_ids"]
        assert torch.equal(ids, g_tok(text, return_tensors="pt")["input_ids"])
        with torch.no_grad():
            a = embedded.model(input_ids=ids).logits
            b = g_model(input_ids=ids).logits
        assert a.shape == b.shape == (1, ids.shape[1], 49152)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_second_ensure_and_load_is_a_cache_hit(session_store, embedded):
    first = embedded.art
    t0 = time.monotonic()
    art = ensure_model(session_store, None)
    assert art.key == first.key and art.manifest.doc["created"] == first.manifest.doc["created"]
    assert ensure_model(session_store, "smollm2").key == art.key
    # memo: a second load returns the same object (other tests may clear the memo, so compare two loads
    # made here rather than against the session fixture)
    memo = load_model(session_store, art, dtype="float32", device="cpu")
    assert load_model(session_store, art, dtype="float32", device="cpu") is memo
    fresh = load_model(session_store, art, dtype="float32", device="cpu", fresh=True)  # from hf/, no GGUF
    elapsed = time.monotonic() - t0
    assert fresh.model is not embedded.model
    assert elapsed < 10, f"cached load took {elapsed:.1f}s"
    info = art.read_json("model.json")
    assert (info["n_layers"], info["n_heads"], info["head_dim"]) == (30, 9, 64)
    assert (fresh.layout.n_layers, fresh.layout.n_heads, fresh.layout.head_dim) == (30, 9, 64)
    assert fresh.tokenizer.pad_token is not None
