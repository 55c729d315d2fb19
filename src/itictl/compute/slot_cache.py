"""A transformers StaticCache written at caller-chosen columns: the KV cache of fast greedy decoding.

Owns `SlotCache`, `kv_bytes_per_token` and `cache_kwarg`. transformers' StaticCache appends each
call's keys at its running length; decoding a shared prompt prefix plus left-padded suffixes needs
every row's keys at fixed columns ("slots") instead: [0, P) the prefix (computed once, batch 1, and
copied into every row), then each batch's suffixes and generated tokens. The caller points
`cache.slots` at a LongTensor [T] naming the columns of the next call's T tokens (for CUDA graphs a
static buffer advanced in place). Each layer's [rows, kv_heads, max_len, head_dim] tensors are
allocated on its first write, on that layer's device and dtype (so accelerate device maps work).

Imports transformers at module level: import this module inside functions.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor
from transformers import StaticCache


class SlotCache(StaticCache):
    """Static KV storage for `rows` sequences of up to `max_len` tokens; writes go to `self.slots`."""

    def __init__(self, config, max_len: int, rows: int, prefix: SlotCache | None = None):
        super().__init__(config=config, max_cache_len=max_len)
        self.max_len = max_len
        self.rows = rows
        self.prefix = prefix  # a batch-1 SlotCache whose slots [0, prefix.max_len) every row starts with
        self.slots: Tensor | None = None  # [T] long: where the next call's T tokens go
        self.seen = 0  # tokens before the next call (reported by get_seq_length; informational)
        self._kv: dict[int, tuple[Tensor, Tensor]] = {}

    def _allocate(self, layer_idx: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        shape = (self.rows, k.shape[1], self.max_len)
        keys = torch.zeros(*shape, k.shape[-1], dtype=k.dtype, device=k.device)
        values = torch.zeros(*shape, v.shape[-1], dtype=v.dtype, device=v.device)
        if self.prefix is not None:  # every row starts with the shared prefix
            pk, pv = self.prefix.layer_kv(layer_idx)
            n = pk.shape[2]
            keys[:, :, :n] = pk.to(keys.device)
            values[:, :, :n] = pv.to(values.device)
        layer = self.layers[layer_idx] if layer_idx < len(self.layers) else None
        if layer is not None:  # keep transformers' own view of the layer consistent
            layer.keys, layer.values, layer.is_initialized = keys, values, True
        self._kv[layer_idx] = (keys, values)
        return keys, values

    def layer_kv(self, layer_idx: int) -> tuple[Tensor, Tensor]:
        """Layer `layer_idx`'s keys and values [rows, kv_heads, max_len, head_dim]."""
        return self._kv[layer_idx]

    def update(self, key_states: Tensor, value_states: Tensor, layer_idx: int, *args, **kwargs):
        if self.slots is None:
            raise RuntimeError("SlotCache.update before cache.slots was set")
        kv = self._kv.get(layer_idx)
        if kv is None:
            kv = self._allocate(layer_idx, key_states, value_states)
        keys, values = kv
        if key_states.shape[0] != self.rows:
            raise RuntimeError(f"SlotCache holds {self.rows} rows but the call has {key_states.shape[0]}")
        idx = self.slots if self.slots.device == keys.device else self.slots.to(keys.device)
        keys.index_copy_(2, idx, key_states)
        values.index_copy_(2, idx, value_states)
        return keys, values

    def get_seq_length(self, *args, **kwargs) -> int:
        return self.seen


def kv_bytes_per_token(config, element_bytes: int) -> int:
    """Bytes of keys and values one token takes in the cache (all layers)."""
    cfg = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    layers = int(cfg.num_hidden_layers)
    heads = int(cfg.num_attention_heads)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    return 2 * layers * kv_heads * head_dim * element_bytes


def cache_kwarg(model) -> str:
    """The forward() argument that takes the cache: 'cache' (transformers ≥ 5.2x) or 'past_key_values'."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
