"""Progress of the GGUF conversion goes through the Output object: transformers' tqdm bars never
reach stderr (-q: nothing at all; --json: no bar, stdout one JSON document; human: one status line).

The conversion is the embedded model's code path (models.loading._build_from_gguf via ensure_model)
run on a tiny random llama GGUF written here (byte-level BPE vocabulary of ~260 tokens), so a fresh
store converts in about a second instead of the embedded model's ~25 s.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_cli_subprocess

TQDM = re.compile(r"\d+%\|")  # a tqdm bar: "100%|██████████| 20/20 [00:00<00:00, …it/s]"


def _byte_alphabet() -> list[str]:
    """GPT-2's byte-level alphabet: one printable character per byte."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return [chr(c) for c in cs]


def write_tiny_gguf(path: Path, layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 2,
                    ffn: int = 64, seed: int = 0) -> Path:
    """A random llama-architecture GGUF (F32 tensors) with a gpt2-style tokenizer transformers can load."""
    from gguf import GGUFWriter

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = ["Ġ t", "h e", "Ġ a", "i n", "Ġt he"]
    tokens = specials + _byte_alphabet() + [m.replace(" ", "") for m in merges]
    w = GGUFWriter(str(path), "llama")
    w.add_string("general.name", "tiny-test")
    w.add_block_count(layers)
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_rope_dimension_count(hidden // heads)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3] * len(specials) + [1] * (len(tokens) - len(specials)))
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    rng = np.random.default_rng(seed)

    def rand(name: str, *shape: int) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    hd = hidden // heads
    rand("token_embd.weight", len(tokens), hidden)
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    for layer in range(layers):
        w.add_tensor(f"blk.{layer}.attn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(f"blk.{layer}.ffn_norm.weight", np.ones(hidden, np.float32))
        rand(f"blk.{layer}.attn_q.weight", heads * hd, hidden)
        rand(f"blk.{layer}.attn_k.weight", kv_heads * hd, hidden)
        rand(f"blk.{layer}.attn_v.weight", kv_heads * hd, hidden)
        rand(f"blk.{layer}.attn_output.weight", hidden, heads * hd)
        rand(f"blk.{layer}.ffn_gate.weight", ffn, hidden)
        rand(f"blk.{layer}.ffn_up.weight", ffn, hidden)
        rand(f"blk.{layer}.ffn_down.weight", hidden, ffn)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def _model_objects(store: Path) -> list[Path]:
    return [m.parent for m in (store / "objects").rglob("model.json")]


@pytest.mark.parametrize("flags", [["--json"], ["-q"], []], ids=["json", "quiet", "human"])
def test_gguf_conversion_shows_no_tqdm_bar(tiny_gguf, tqa_dir, tmp_path, flags):
    store = tmp_path / "fresh"
    r = run_cli_subprocess("--store", str(store), *flags, "extract", "-m", str(tiny_gguf), "--data", str(tqa_dir),
                           "-n", "2", "--device", "cpu")
    assert r.code == 0, r.stderr[-2000:]
    models = _model_objects(store)
    assert len(models) == 1 and (models[0] / "hf" / "model.safetensors").is_file()  # it was converted here
    for bar in ("de-quantizing", "Writing model shards"):  # transformers' bars of the conversion itself
        assert bar not in r.stderr, r.stderr
    converting = [line for line in r.stderr.splitlines() if "converting tiny.gguf" in line]
    if flags == ["-q"]:
        assert r.stderr == "" and r.stdout == ""
    elif flags == ["--json"]:
        assert not TQDM.search(r.stderr), r.stderr  # no transformers bar at all (loading included)
        assert json.loads(r.stdout)["kind"] == "activations"
        assert len(converting) == 1
    else:
        assert len(converting) == 1, r.stderr  # one status line through the Output object
