"""The explicit architecture table: one ArchSpec per Hugging Face `model_type` whose layout is known
(checked against transformers 5.24's modeling code and by the architecture matrix, see
docs/architectures.md). The table overrides structural discovery; `--arch-map` overrides both.

Entries exist for the families people run and for those discovery would get wrong: multi-head
latent attention (DeepSeek-V2/V3, MiniCPM3, GLM-4-MoE-Lite: o_proj reads H·v_head_dim, while the
config's head_dim is the rotary part of the queries) and multimodal wrappers (the text model sits in
`model.language_model`, its attributes in `text_config`).
"""

from __future__ import annotations

from itictl.models.arch import ArchSpec

_LLAMA_LIKE = {"base": "model", "layers": "layers", "o_proj": "self_attn.o_proj"}
_DENSE = {"base": "model", "layers": "layers", "o_proj": "self_attn.dense"}  # phi, persimmon
_MLA = {**_LLAMA_LIKE, "head_dim": "v_head_dim"}
_GPT2_ATTRS = {"heads": "n_head", "layers_attr": "n_layer", "hidden": "n_embd", "head_dim": None}
_WRAPPED = {"base": "model.language_model", "layers": "layers", "o_proj": "self_attn.o_proj",
            "sub_config": "text_config"}

_LLAMA_FAMILY = (
    "llama", "mistral", "ministral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
    "gemma3_text", "phi3", "olmo", "olmo2", "olmo3", "olmoe", "granite", "granitemoe", "granitemoeshared", "cohere",
    "cohere2", "stablelm", "starcoder2", "smollm3", "llama4_text", "helium", "glm", "glm4", "exaone4",
)

# `--fuse auto` compiles the decoder layers of these on a GPU (tests/compute/test_fuse.py checks each)
_FUSE_OK = ("llama", "mistral", "qwen2", "qwen3")

ARCHS: dict[str, ArchSpec] = {mt: ArchSpec(mt, **_LLAMA_LIKE, fuse=mt in _FUSE_OK) for mt in _LLAMA_FAMILY}
ARCHS.update({
    "gpt2": ArchSpec("gpt2", base="transformer", layers="h", o_proj="attn.c_proj", conv1d=True, **_GPT2_ATTRS),
    "gpt_bigcode": ArchSpec("gpt_bigcode", base="transformer", layers="h", o_proj="attn.c_proj", **_GPT2_ATTRS),
    "gpt_neox": ArchSpec("gpt_neox", base="gpt_neox", layers="layers", o_proj="attention.dense", head_dim=None),
    "gpt_neo": ArchSpec("gpt_neo", base="transformer", layers="h", o_proj="attn.attention.out_proj", head_dim=None,
                        tree_masks=False),  # local attention layers build their own mask
    "gptj": ArchSpec("gptj", base="transformer", layers="h", o_proj="attn.out_proj", head_dim=None),
    "codegen": ArchSpec("codegen", base="transformer", layers="h", o_proj="attn.out_proj", head_dim=None),
    "opt": ArchSpec("opt", base="model", layers="decoder.layers", o_proj="self_attn.out_proj", head_dim=None),
    "phi": ArchSpec("phi", **_DENSE, head_dim=None),
    "persimmon": ArchSpec("persimmon", **_DENSE, head_dim=None),
    "falcon": ArchSpec("falcon", base="transformer", layers="h", o_proj="self_attention.dense", head_dim=None),
    "bloom": ArchSpec("bloom", base="transformer", layers="h", o_proj="self_attention.dense", head_dim=None,
                      tree_masks=False),  # ALiBi from a 2D mask
    "mpt": ArchSpec("mpt", base="transformer", layers="blocks", o_proj="attn.out_proj", head_dim=None,
                    tree_masks=False),  # ALiBi, mask rebuilt from 2D
    "deepseek_v2": ArchSpec("deepseek_v2", **_MLA),
    "deepseek_v3": ArchSpec("deepseek_v3", **_MLA),
    "minicpm3": ArchSpec("minicpm3", **_MLA),
    "glm4_moe_lite": ArchSpec("glm4_moe_lite", **_MLA),
    "gemma3": ArchSpec("gemma3", **_WRAPPED),
    "got_ocr2": ArchSpec("got_ocr2", **_WRAPPED),
    # discovery would also see the vision/audio towers' layer lists of the same length
    "phi4_multimodal": ArchSpec("phi4_multimodal", **_LLAMA_LIKE),
    "git": ArchSpec("git", base="git", layers="encoder.layer", o_proj="attention.output.dense", head_dim=None,
                    tree_masks=False),  # image-to-text decoder; builds its own causal mask
})

# model types itictl refuses even though a map exists: the architecture matrix showed wrong results
REFUSED: dict[str, str] = {
    "cpmant": "its forward ignores the padding in the attention mask, so batched extraction differs from one prompt"
              " at a time",
}
