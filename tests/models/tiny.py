"""Tiny model folders for the models tests: a random tiny Llama plus a word-level tokenizer that
has no pad token (so load_model must supply one), saved as a Hugging Face folder."""

from __future__ import annotations

from pathlib import Path

WORDS = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(125)]


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def tiny_folder(path: Path, seed: int = 0) -> Path:
    """Save tests.helpers.tiny_llama(seed) + the tiny tokenizer into `path` (vocab 128)."""
    from tests.helpers import tiny_llama

    path = Path(path)
    model = tiny_llama(seed=seed, vocab=len(WORDS))
    model.config.pad_token_id = None
    model.generation_config.pad_token_id = None
    model.save_pretrained(path, safe_serialization=True)
    tiny_tokenizer().save_pretrained(path)
    return path
