"""Per-architecture maps on tiny random configs: layout, o_proj input width, W_o reproduces output."""

from __future__ import annotations

import pytest
import torch

from itictl.errors import UnsupportedError
from itictl.models.arch import SUPPORTED, decoder_stack, get_arch, head_layout, hidden_size, o_proj_modules, out_proj_matrix


def _config(mt: str):
    import transformers as t

    common = dict(vocab_size=64, max_position_embeddings=64)
    llama_like = dict(hidden_size=40, intermediate_size=32, num_hidden_layers=3, **common)
    if mt == "llama":
        return t.LlamaConfig(num_attention_heads=4, num_key_value_heads=2, head_dim=8, **llama_like), (3, 4, 8)
    if mt == "mistral":
        return t.MistralConfig(num_attention_heads=4, num_key_value_heads=1, head_dim=6, **llama_like), (3, 4, 6)
    if mt == "qwen2":
        cfg = t.Qwen2Config(num_attention_heads=5, num_key_value_heads=1, **llama_like)
        return cfg, (3, 5, 8)  # hidden 40 / 5 heads
    if mt == "qwen3":
        return t.Qwen3Config(num_attention_heads=4, num_key_value_heads=2, head_dim=16, **llama_like), (3, 4, 16)
    if mt == "gemma":
        return t.GemmaConfig(num_attention_heads=2, num_key_value_heads=1, head_dim=12, **llama_like), (3, 2, 12)
    if mt == "gemma2":
        return t.Gemma2Config(num_attention_heads=4, num_key_value_heads=2, head_dim=12, sliding_window=16,
                              **llama_like), (3, 4, 12)
    if mt == "phi3":
        return t.Phi3Config(num_attention_heads=4, num_key_value_heads=4, pad_token_id=0, **llama_like), (3, 4, 10)
    if mt == "gpt2":
        return t.GPT2Config(n_embd=24, n_head=3, n_layer=2, vocab_size=64, n_positions=64), (2, 3, 8)
    if mt == "gpt_neox":
        return t.GPTNeoXConfig(hidden_size=32, num_attention_heads=2, num_hidden_layers=2, intermediate_size=32,
                               **common), (2, 2, 16)
    if mt == "opt":
        return t.OPTConfig(hidden_size=24, num_attention_heads=6, num_hidden_layers=2, ffn_dim=32,
                           word_embed_proj_dim=24, pad_token_id=1, **common), (2, 6, 4)
    raise AssertionError(mt)


# hand-written configs for the original ten; every other type is covered by test_arch_matrix.py
ORIGINAL = ("gemma", "gemma2", "gpt2", "gpt_neox", "llama", "mistral", "opt", "phi3", "qwen2", "qwen3")


@pytest.mark.parametrize("mt", ORIGINAL)
def test_arch_map(mt):
    from transformers import AutoModelForCausalLM

    cfg, (L, H, D) = _config(mt)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    assert get_arch(model).model_type == mt and mt in SUPPORTED
    lay = head_layout(model)
    assert (lay.n_layers, lay.n_heads, lay.head_dim) == (L, H, D)
    assert head_layout(cfg) == lay
    mods = o_proj_modules(model)
    assert len(mods) == L
    stack = decoder_stack(model)
    assert hasattr(model, "lm_head") and not hasattr(stack, "lm_head")

    seen: dict[int, tuple] = {}

    def hook(i):
        def fn(mod, args, output):
            seen[i] = (args[0].detach(), output.detach())
        return fn

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(mods)]
    try:
        ids = torch.randint(3, 60, (2, 7))
        with torch.no_grad():
            stack(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    assert sorted(seen) == list(range(L))
    assert hidden_size(model) == hidden_size(cfg) == seen[0][1].shape[-1]  # o_proj writes the residual width
    for i, (x, y) in seen.items():
        assert x.shape == (2, 7, H * D)
        W = out_proj_matrix(mods[i])
        assert W.shape == (cfg.hidden_size if mt != "gpt2" else cfg.n_embd, H * D)
        ref = x @ W.T
        if mods[i].bias is not None:
            ref = ref + mods[i].bias
        torch.testing.assert_close(ref, y, rtol=1e-5, atol=1e-5)


def test_unsupported_lists_supported():
    from transformers import BertConfig

    with pytest.raises(UnsupportedError) as e:
        get_arch(BertConfig())
    assert "bert" in e.value.message and "llama" in e.value.hint and "gpt_neox" in e.value.hint


def test_head_dim_never_hidden_over_heads_when_config_says_otherwise():
    cfg, _ = _config("qwen3")
    lay = head_layout(cfg)
    assert lay.head_dim == 16 and lay.head_dim != cfg.hidden_size // cfg.num_attention_heads
