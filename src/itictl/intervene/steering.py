"""Live interventions: add δ_l to the input of layer l's output projection at chosen positions.

Owns `intervened(model, deltas, positions)` (a context manager installing forward hooks),
`AnswerPositions` (scoring: only answer tokens change) and `steered_generate` (greedy, batched:
intervene.generation's engine where it serves the model, else model.generate with left padding).

How positions are resolved. A forward pre-hook on the decoder stack sees every call's
`input_ids`/`inputs_embeds` [B, T], `attention_mask` [B, past+T] and cache. From them it derives the
absolute position of each token in the call (past_len + t) and builds one bool mask [B, T] that the
o_proj pre-hooks read:
  - 'all': every token.
  - 'generated': the last real prompt token of each row and every token after it. The first call
    (empty cache) is the prompt pass; its last attended token per row is recorded (works with left
    and right padding). Later calls with a cache are continuations; later calls without a cache
    (use_cache=False generation re-feeds the whole sequence) are recognised as continuations when
    they start with the recorded prompt ids, otherwise they start a new prompt.
  - AnswerPositions(start[B], end[B] | None): tokens with start ≤ pos < end.
  - TokenMask(mask[B, T]): exactly the marked tokens of the call.
Model parallel (accelerate device maps): each δ_l is moved once, when the hooks are installed, to
the device and dtype of layer l's o_proj (its execution device when accelerate manages it), and
re-cast if an activation arrives elsewhere; masks are copied once per device per call; inputs of
steered_generate go to the input embeddings' device.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from itictl.errors import BadInputError
from itictl.models.devices import module_device


@dataclass
class AnswerPositions:
    """Absolute token positions to edit per row: start[b] ≤ pos < end[b] (end None = to the end)."""

    start: Tensor  # [B] long
    end: Tensor | None = None  # [B] long


@dataclass
class TokenMask:
    """Exactly the tokens to edit in the next call(s): mask[b, t] for the call's [B, T] tokens
    (packed MC scoring: the answer tokens of every packed row)."""

    mask: Tensor  # [B, T] bool


Positions = Union[str, AnswerPositions, TokenMask]


def o_proj_list(model: nn.Module) -> list[nn.Module]:
    """The output projection of every layer (its input is the head-wise activation [.., H·D])."""
    from itictl.models.arch import o_proj_modules

    return list(o_proj_modules(model))


def decoder_module(model: nn.Module) -> nn.Module:
    """The module that runs the decoder layers (sees input ids, mask and cache of every call)."""
    from itictl.models.arch import decoder_stack

    return decoder_stack(model)


class _PositionState:
    """Per-call bookkeeping shared by the decoder pre-hook and the o_proj pre-hooks."""

    def __init__(self, positions: Positions):
        if isinstance(positions, str) and positions not in ("all", "generated"):
            raise BadInputError(f"unknown positions {positions!r}", "use 'all', 'generated' or AnswerPositions")
        self.positions = positions
        self.mask: Tensor | None = None  # [B, T] bool for the current call; None = every token
        self.prompt_ids: Tensor | None = None  # [B, T0] of the recorded prompt pass
        self.last_prompt: Tensor | None = None  # [B] index of each row's last real prompt token
        self._mask_on: dict[torch.device, Tensor] = {}

    def begin_call(self, args: tuple, kwargs: dict) -> None:
        self._mask_on = {}
        if self.positions == "all":
            self.mask = None
            return
        if isinstance(self.positions, TokenMask):
            self.mask = self.positions.mask.bool()
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        ref = ids if ids is not None else embeds
        if ref is None:
            raise BadInputError("intervened(): the decoder was called without input_ids or inputs_embeds")
        bsz, seq = int(ref.shape[0]), int(ref.shape[1])
        device = ref.device
        attn = kwargs.get("attention_mask")
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if isinstance(attn, Tensor) and attn.dim() == 2:
            past = int(attn.shape[1]) - seq
        elif cache is not None and hasattr(cache, "get_seq_length"):
            past = int(cache.get_seq_length())
        else:
            past = 0
        pos = torch.arange(seq, device=device) + past  # [T] absolute positions of this call's tokens
        if isinstance(self.positions, AnswerPositions):
            start = self.positions.start.to(device).view(-1, 1)
            m = pos.view(1, -1) >= start
            if self.positions.end is not None:
                m = m & (pos.view(1, -1) < self.positions.end.to(device).view(-1, 1))
            if m.shape[0] != bsz:
                raise BadInputError(f"AnswerPositions has {m.shape[0]} rows but the batch has {bsz}")
            self.mask = m
            return
        # 'generated'
        if past == 0 and not self._continues(ids):
            if isinstance(attn, Tensor) and attn.dim() == 2:
                real = attn[:, :seq].to(device) > 0  # [B, T0]
                idx = torch.arange(seq, device=device).expand(bsz, seq)
                last = torch.where(real, idx, torch.full_like(idx, -1)).max(dim=1).values
            else:
                last = torch.full((bsz,), seq - 1, device=device, dtype=torch.long)
            self.last_prompt = last
            self.prompt_ids = ids.detach().clone() if ids is not None else None
        if self.last_prompt is None:  # a continuation we never saw the prompt of: edit every new token
            self.mask = torch.ones(bsz, seq, dtype=torch.bool, device=device)
            return
        self.mask = pos.view(1, -1) >= self.last_prompt.to(device).view(-1, 1)

    def _continues(self, ids: Tensor | None) -> bool:
        """True when a no-cache call re-feeds the recorded prompt (plus generated tokens)."""
        p = self.prompt_ids
        if p is None or ids is None or ids.shape[0] != p.shape[0] or ids.shape[1] <= p.shape[1]:
            return False
        return bool(torch.equal(ids[:, : p.shape[1]].to(p.device), p))

    def mask_on(self, device: torch.device) -> Tensor | None:
        if self.mask is None:
            return None
        m = self._mask_on.get(device)
        if m is None:
            m = self._mask_on[device] = self.mask.to(device)
        return m



def _check_deltas(deltas: Mapping[int, Tensor], mods: Sequence[nn.Module]) -> None:
    from itictl.intervene.build import check_deltas_fit
    from itictl.models.arch import out_proj_matrix

    check_deltas_fit(deltas, len(mods), out_proj_matrix(mods[0]).shape[1] if mods else None)


@contextlib.contextmanager
def intervened(model: nn.Module, deltas: Mapping[int, Tensor], positions: Positions = "all") -> Iterator[None]:
    """Within the block, layer l's o_proj input x[b, t] becomes x[b, t] + δ_l at the chosen positions.

    deltas: {layer: Tensor[H·D]}; positions: 'all' | 'generated' | AnswerPositions.
    """
    mods = o_proj_list(model)
    _check_deltas(deltas, mods)
    st = _PositionState(positions)
    handles = []
    base = {int(k): v.detach().reshape(-1) for k, v in deltas.items()}

    def make_hook(delta: Tensor, mod: nn.Module):
        cast: dict[tuple, Tensor] = {}
        dev, dtype = module_device(mod)
        if dev is not None and dtype is not None:  # place δ_l on layer l's device up front
            cast[(dtype, dev)] = delta.to(device=dev, dtype=dtype)

        def hook(_mod, args):
            x = args[0]  # [B, T, H·D]
            key = (x.dtype, x.device)
            d = cast.get(key)
            if d is None:
                d = cast[key] = delta.to(device=x.device, dtype=x.dtype)
            m = st.mask_on(x.device)
            if m is None:
                y = x + d
            else:
                if m.shape != x.shape[:2]:
                    raise RuntimeError(f"position mask {tuple(m.shape)} does not match activation {tuple(x.shape)}")
                y = x + m.unsqueeze(-1).to(x.dtype) * d
            return (y, *args[1:])

        return hook

    try:
        handles.append(decoder_module(model).register_forward_pre_hook(
            lambda _m, a, kw: st.begin_call(a, kw), with_kwargs=True))
        for layer, d in base.items():
            handles.append(mods[layer].register_forward_pre_hook(make_hook(d, mods[layer])))
        yield
    finally:
        for h in handles:
            h.remove()


def format_prompts(tokenizer, prompts: Sequence[str], chat: bool) -> list[str]:
    """Apply the tokenizer's chat template (one user turn + generation prompt) when chat is on."""
    if not chat:
        return list(prompts)
    if getattr(tokenizer, "chat_template", None) is None:
        raise BadInputError("this model's tokenizer has no chat template", "pass --no-chat")
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                          add_generation_prompt=True) for p in prompts]


@torch.no_grad()
def steered_generate(model, tokenizer, prompts: Sequence[str], deltas: Mapping[int, Tensor] | None,
                     max_new_tokens: int = 64, chat: bool = False, positions: Positions = "generated",
                     use_cache: bool = True, fast: bool = True) -> list[str]:
    """Greedy continuations of a batch of prompts, with deltas applied (None: none).

    fast (default): intervene.generation's engine (shared prefix once, static KV cache, CUDA graph
    on one GPU) for the models and positions it serves ('generated'); otherwise model.generate on
    the left-padded batch. Both equal batch-1 greedy decoding."""
    texts = format_prompts(tokenizer, prompts, chat)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if fast and use_cache and (positions == "generated" or not deltas) and texts:
        from itictl.intervene.generation import eos_ids, fast_path_ok, greedy_generate

        seqs = [list(ids) for ids in tokenizer(texts, add_special_tokens=not chat)["input_ids"]]
        if fast_path_ok(model, max(len(s) for s in seqs) + max_new_tokens):
            outs = greedy_generate(model, seqs, max_new_tokens=max_new_tokens, eos=eos_ids(model, tokenizer),
                                   pad_id=tokenizer.pad_token_id, deltas=deltas or None)
            return [t.strip() for t in tokenizer.batch_decode(outs, skip_special_tokens=True)]
    return _hf_generate(model, tokenizer, texts, deltas, max_new_tokens, chat, positions, use_cache)


def _hf_generate(model, tokenizer, texts: list[str], deltas, max_new_tokens: int, chat: bool,
                 positions: Positions, use_cache: bool) -> list[str]:
    """model.generate on the left-padded batch, with the hooks of `intervened`."""
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)
    finally:
        tokenizer.padding_side = old_side
    from itictl.models.devices import input_device

    dev = input_device(model)
    enc = {k: v.to(dev) for k, v in enc.items()}
    ctx = intervened(model, deltas, positions) if deltas else contextlib.nullcontext()
    with ctx:
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, use_cache=use_cache,
                             pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
    new = out[:, enc["input_ids"].shape[1]:]  # [B, new]
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]
