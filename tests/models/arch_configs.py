"""Tiny configs for every causal-LM model_type of the installed transformers (the architecture
matrix): which types are in scope (decoder-only), how each is shrunk, and which cannot be built.

Sizes: 2 layers, hidden 32, 4 heads of 8 (2 KV heads), vocab 128 (the tiny word-level tokenizer of
tests/models/tiny.py). Only attributes the config class really has are set; FAMILY adds what a
family needs beyond that (rotary sizes, MLA ranks, expert counts, sub-configs).
"""

from __future__ import annotations

from typing import Any

VOCAB = 128

SIZES: dict[str, Any] = dict(
    vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=8, intermediate_size=64, max_position_embeddings=128,
    n_embd=32, d_model=32, n_layer=2, num_layers=2, n_layers=2, n_head=4, num_heads=4, n_heads=4,
    ffn_dim=64, n_inner=64, n_positions=128, n_ctx=128,
    moe_intermediate_size=32, shared_expert_intermediate_size=32,
    num_experts=4, num_local_experts=4, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
    n_group=1, topk_group=1, first_k_dense_replace=1,
    kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=6,  # MLA
    rotary_dim=4, dim_head=8, dim_ff=64,
    mamba_d_ssm=64, mamba_n_heads=4, mamba_d_head=16, mamba_d_state=8, mamba_chunk_size=16,  # hybrids
    pad_token_id=0, bos_token_id=1, eos_token_id=2,
)

# model_type -> extra or replaced kwargs (also applied to sub-configs of that model_type)
_HYBRID_4 = {"num_hidden_layers": 4}  # 3 linear-attention layers + 1 full attention layer
FAMILY: dict[str, dict[str, Any]] = {
    "gpt_neo": {"attention_types": [[["global", "local"], 1]]},
    "dbrx": {"attn_config": {"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8.0},
             "ffn_config": {"ffn_hidden_size": 64, "moe_num_experts": 4, "moe_top_k": 2}},
    "mamba2": {"head_dim": 16},
    "zamba": {"layers_block_type": ["mamba", "hybrid"]},
    "zamba2": {"layers_block_type": ["mamba", "hybrid"]},
    "zaya": {"num_experts_per_tok": 1},
    "blt": {"encoder_hash_byte_group_vocab": 64},  # 500k hash-embedding rows by default
    "gemma3n_text": {"num_kv_shared_layers": 0},
    "gemma4_assistant": {"hidden_size_per_layer_input": 0},
    "lfm2_moe": {"layer_types": ["conv", "full_attention"]},
    "cohere_compass_text": {"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}},
    "qwen3_5_text": _HYBRID_4, "qwen3_5_moe_text": _HYBRID_4, "qwen4_exp_text": _HYBRID_4,
}

# in-scope model types that cannot be built as tiny models offline on a CPU: type -> reason
SKIPS: dict[str, str] = {
    "gemma3n": "its vision tower needs the timm package, which is not installed (gemma3n_text is checked)",
    "gemma4_assistant": "a speculative-decoding assistant that drafts from its target model's states; no standalone LM",
    "gemma4_unified_assistant": "a speculative-decoding assistant that drafts from its target model's states;"
                                " no standalone LM",
    "dots3_note": "its default config pins per-layer settings to layers 25-41, so no 2-layer config validates"
                  " (dots3_note_text is checked)",
    "zamba": "transformers rejects the shared-transformer weight tying of a 2-layer config (tie_weights_keys)",
    "qwen4_exp": "its sparse-attention indexer needs token_budget/compress_ratio, which the config leaves unset",
    "qwen4_exp_text": "its sparse-attention indexer needs token_budget/compress_ratio, which the config leaves unset",
    "musicgen": "AutoModelForCausalLM gives the audio-codebook decoder, which cannot take the composite config",
    "musicgen_melody": "AutoModelForCausalLM gives the audio-codebook decoder, which cannot take the composite config",
}


def _known(cls: Any, default: Any) -> set[str]:
    return set(default.to_dict()) | set(getattr(cls, "attribute_map", {}) or {})


SUB_SIZES: dict[str, Any] = {"image_size": 32, "patch_size": 8, "num_channels": 3}  # vision/audio towers


def tiny_kwargs(cls: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Constructor kwargs that shrink config class `cls` (only attributes it has); sub-configs
    (text_config, vision_config, ...) are shrunk the same way and passed as instances."""
    default = cls()
    known = _known(cls, default)
    kw = {k: v for k, v in SIZES.items() if k in known}
    if "kv_lora_rank" in known and "num_key_value_heads" in kw:  # MLA: one latent K/V per query head
        kw["num_key_value_heads"] = kw.get("num_attention_heads", 4)
    if "qk_rope_head_dim" in kw and "head_dim" in kw:  # MLA configs mean the rotary part by head_dim
        kw["head_dim"] = kw["qk_rope_head_dim"]
    for name in getattr(cls, "sub_configs", None) or {}:
        sub_cls = type(getattr(default, name, None))  # the default's class (sub_configs may say AutoConfig)
        if hasattr(sub_cls, "to_dict") and name not in (extra or {}):
            sub_known = _known(sub_cls, sub_cls())
            sub_kw = {**tiny_kwargs(sub_cls), **{k: v for k, v in SUB_SIZES.items() if k in sub_known}}
            kw[name] = sub_cls(**sub_kw)
    kw.update(FAMILY.get(getattr(cls, "model_type", None), {}))
    kw.update(extra or {})
    return kw


def tiny_config(model_type: str) -> Any:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
    return cls(**tiny_kwargs(cls))


def build(model_type: str, seed: int = 0) -> Any:
    """A random tiny model as AutoModelForCausalLM builds it (a multimodal type may become its text
    model, e.g. llama4 -> Llama4ForCausalLM), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(model_type)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg).eval()
