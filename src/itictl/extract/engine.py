"""The extraction engine: head-wise (and optional layer-wise) activations at the last prompt token.

Owns: tokenising prompts exactly like `tokenizer(text)`, deciding which prompts share their
question prefix, planning forwards (tree-packed rows, see compute/packing.py), running only the
decoder stack (no lm_head) with hooks that gather each layer's o_proj input at each prompt's last
token, and yielding finished chunks on the device.

Exactness: in a packed row every token sees exactly its own prompt's earlier tokens (tree mask),
with the position ids of the unpacked prompt; plain batches are right-padded with a padding mask
and explicit position ids. Batched, packed, shared and single-prompt results agree within dtype
tolerance (tests/test_extract.py and tests/compute/test_packing.py prove it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from itictl.compute.packing import Unit, batch_rows, pack_rows, split_unit


def default_batch_tokens(device: str, total_tokens: int | None = None) -> int:
    """--batch-tokens when not given: 4096 on CPU. On an accelerator 65536, but given the prompts' total
    (unshared) token count, about 1/32 of it as a power of two within [8192, 65536] (tqa_mc2:
    161,687 tokens -> 8192; prefix sharing halves the tokens, so that plan has 10 forwards). Below
    8192-token forwards a 7B model's matmuls lose efficiency (H100: 4096 is ~2 % slower end to end);
    a plan of 2 huge batches (all of tqa_mc2 at 65536) leaves the device->host copies nothing to
    hide behind and cannot be shared among data-parallel ranks; and the plan must not depend on
    the world size (so that the payload is bit-identical to one process's): with many ranks pass a
    smaller --batch-tokens (extract warns when there are fewer than 2 batches per rank)."""
    if str(device).startswith("cpu"):
        return 4096
    if not total_tokens:
        return 65536
    per = -(-int(total_tokens) // 32)
    return int(min(65536, max(8192, 1 << (per - 1).bit_length())))


@dataclass
class Tokenized:
    """One prompt as token ids; `prefix_len` > 0 when its first tokens equal its prefix's tokens."""

    ids: list[int]
    prefix_len: int = 0


def tokenize_prompts(tokenizer: Any, texts: Sequence[str], prefixes: Sequence[str | None] | None = None,
                     share: bool = True) -> list[Tokenized]:
    """Token ids exactly as `tokenizer(text).input_ids`; a prefix is shared only when the full
    prompt's ids start with the prefix's ids (BPE merges across the boundary disable sharing)."""
    full = tokenizer(list(texts)).input_ids
    out = [Tokenized(list(ids)) for ids in full]
    if not share or prefixes is None:
        return out
    uniq = sorted({p for p in prefixes if p})
    if not uniq:
        return out
    pre_ids = dict(zip(uniq, tokenizer(uniq).input_ids))
    for t, text, p in zip(out, texts, prefixes):
        if not p or not text.startswith(p):
            continue
        pids = pre_ids[p]
        if 0 < len(pids) < len(t.ids) and t.ids[: len(pids)] == list(pids):
            t.prefix_len = len(pids)
    return out


@dataclass
class Batch:
    """One forward. `rows` are the prompt indices it computes. Packed batches (the default) carry
    tree units (a shared question prefix with its answers, or a lone prompt), their layout in
    rows, and for each prompt in `rows` the (unit, segment) whose last token is its activation.
    Without units the prompts run one per row, right-padded (models that cannot take a tree mask)."""

    rows: list[int]                 # prompt indices
    units: list[Unit] = field(default_factory=list)
    layout: list[list[int]] = field(default_factory=list)   # rows of the forward -> unit indices
    outs: list[tuple[int, int]] = field(default_factory=list)  # per prompt in `rows`: (unit, segment)
    row_tokens: int = 0             # packed: rows are padded to at least this (one shape per forward)

    @property
    def packed(self) -> bool:
        return bool(self.units)


DEFAULT_ROW_TOKENS = 256


def plan_batches(items: Sequence[Tokenized], todo: Sequence[int], batch_tokens: int, *,
                 row_tokens: int | None = None, packed: bool = True) -> list[Batch]:
    """Pack prompts `todo` into forwards of ≤ batch_tokens padded tokens.

    Packed (default): prompts whose question prefix is shared by ≥ 2 prompts form a unit (the
    prefix once, then each answer continuing it; split when longer than a row); every other prompt
    is a unit alone. Units are packed first-fit-decreasing into rows of `row_tokens` (default 256,
    at most batch_tokens, at least the longest prompt) and rows into forwards. The plan depends
    only on the token ids and the two budgets, so every process (and a resumed run) computes the same batches.
    Not packed: length-sorted plain batches, one prompt per row."""
    if not packed:
        plain = sorted(todo, key=lambda i: (len(items[i].ids), i))
        return [Batch(rows) for rows in _pack(plain, lambda i: len(items[i].ids), batch_tokens)]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in todo:
        t = items[i]
        if t.prefix_len:
            groups.setdefault(tuple(t.ids[: t.prefix_len]), []).append(i)
    shared = {pre: rows for pre, rows in groups.items() if len(rows) >= 2}
    in_shared = {i for rows in shared.values() for i in rows}
    R = max(min(row_tokens or DEFAULT_ROW_TOKENS, batch_tokens), max((len(items[i].ids) for i in todo), default=1))
    units: list[Unit] = []
    outs: list[list[tuple[int, int]]] = []  # per unit: (prompt, segment)
    for pre, rows in sorted(shared.items(), key=lambda g: g[1][0]):
        sufs = [items[i].ids[items[i].prefix_len:] for i in rows]
        k = 0
        for u in split_unit(list(pre), sufs, R):
            units.append(u)
            n = len(u.segs) - 1
            outs.append([(rows[k + j], 1 + j) for j in range(n)])
            k += n
    for i in todo:
        if i not in in_shared:
            units.append(Unit([list(items[i].ids)], [-1]))
            outs.append([(i, 0)])
    lengths = [u.length for u in units]
    rows = pack_rows(lengths, R)
    batches = []
    for fwd in batch_rows(rows, lengths, batch_tokens):
        b_units: list[Unit] = []
        layout: list[list[int]] = []
        b = Batch([])
        for r in fwd:
            layout.append([])
            for u in rows[r]:
                layout[-1].append(len(b_units))
                for prompt, seg in outs[u]:
                    b.rows.append(prompt)
                    b.outs.append((len(b_units), seg))
                b_units.append(units[u])
        b.units, b.layout, b.row_tokens = b_units, layout, R
        batches.append(b)
    return batches


def _pack(order: Sequence[int], length: Callable[[int], int], budget: int,
          max_waste: float = 0.1) -> list[list[int]]:
    """Cut `order` (ascending lengths) into passes: k rows x longest ≤ budget; once a pass holds a
    quarter of the budget, also cut before padding would exceed max_waste."""
    out: list[list[int]] = []
    cur: list[int] = []
    real = 0
    for r in order:
        n = length(r)
        k = len(cur) + 1
        over = k * n > budget
        wasteful = real >= budget // 4 and (k * n - real - n) > max_waste * k * n
        if cur and (over or wasteful):
            out.append(cur)
            cur, real = [], 0
        cur.append(r)
        real += n
    if cur:
        out.append(cur)
    return out


def count_tokens(items: Sequence[Tokenized], batches: Sequence[Batch]) -> dict[str, int]:
    """Real tokens the plan computes (a shared prefix once per unit), padded tokens (rows x
    longest row per forward) and the tokens of the prompts run one by one."""
    real = padded = 0
    seen: set[int] = set()
    for b in batches:
        seen.update(b.rows)
        if b.packed:
            fills = [sum(b.units[u].length for u in row) for row in b.layout]
            real += sum(fills)
            padded += len(fills) * max(max(fills), b.row_tokens)
        else:
            n = [len(items[i].ids) for i in b.rows]
            real += sum(n)
            padded += len(n) * max(n)
    return {"real": real, "padded": padded, "unshared": sum(len(items[i].ids) for i in seen)}


class _Collector:
    """Forward hooks that gather o_proj inputs (and layer inputs) at each row's last token."""

    def __init__(self, model: Any, layer_wise: bool, compiled: bool = False):
        from itictl.models.arch import decoder_layers, o_proj_modules

        self.o_projs = o_proj_modules(model)
        self.layers = decoder_layers(model)
        self.layer_wise = layer_wise
        self.compiled = compiled  # layers may run compiled: o_proj hooks run eagerly (compute.fuse)
        self.active = False
        self.rows = None   # LongTensor [B]
        self.pos = None    # LongTensor [B]
        self.head: list = []
        self.resid: list = []
        self.handles: list = []

    def __enter__(self) -> "_Collector":
        from itictl.compute.fuse import eager_hook

        for i, m in enumerate(self.o_projs):
            hook = self._head_hook(i)
            self.handles.append(m.register_forward_pre_hook(eager_hook(hook) if self.compiled else hook))
        if self.layer_wise:
            for i, m in enumerate(self.layers):
                self.handles.append(m.register_forward_pre_hook(self._resid_hook(i), with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def start(self, rows, pos) -> None:
        self.active, self.rows, self.pos = True, rows, pos
        self.head = [None] * len(self.o_projs)
        self.resid = [None] * (len(self.layers) + 1)

    def _head_hook(self, i: int) -> Callable:
        def hook(mod, args):
            if self.active:
                x = args[0]
                self.head[i] = x[self.rows.to(x.device), self.pos.to(x.device)]
        return hook

    def _resid_hook(self, i: int) -> Callable:
        def hook(mod, args, kwargs):
            if self.active:
                x = args[0] if args else kwargs["hidden_states"]
                self.resid[i] = x[self.rows.to(x.device), self.pos.to(x.device)]
        return hook


def run_batches(model: Any, items: Sequence[Tokenized], batches: Sequence[Batch], *, layer_wise: bool,
                device: Any, pad_id: int, out_dtype: Any = None, fuse: Any = None) -> Iterator[tuple[list[int], Any, Any]]:
    """Yield (prompt indices, head [B, L, H·D], resid [B, L+1, hidden] | None) per batch, on the
    input device. Packed batches run as tree-masked rows; plan them only for a model whose attention
    takes a custom 4D mask (packing.supports_tree_masks: sdpa, eager). Given to any other model, a
    packed batch's prompts run one per row, right-padded, which can exceed its token budget, so
    callers plan such models with packed=False (length-sorted plain batches). `fuse`: a
    compute.fuse.Fuser (entered by the caller) that runs the forwards with compiled layers."""
    import torch

    from itictl.compute.batching import right_pad, to_device
    from itictl.compute.packing import build_batch, mask_dtype_for, supports_tree_masks
    from itictl.models.arch import decoder_stack

    stack = decoder_stack(model)
    tree = supports_tree_masks(model)
    mdt = mask_dtype_for(model) if tree else None

    def pad(seqs: list[list[int]]) -> tuple[Any, Any, Any]:
        ids, mask = right_pad(seqs, pad_id)
        lens = mask.sum(1)
        return to_device(ids, device), to_device(mask, device), to_device(lens, device)

    def gathered(parts: list, dev: Any) -> Any:
        return torch.stack([p.to(dev) for p in parts], dim=1)

    col = _Collector(model, layer_wise, compiled=fuse is not None and fuse.mode != "off")
    run = fuse.run if fuse is not None else (lambda f: f())
    with col, torch.inference_mode():
        for b in batches:
            if b.packed and tree:
                pb = build_batch(b.units, b.layout, device=device, pad_id=pad_id, mask_dtype=mdt, pad_to=b.row_tokens)
                at = [pb.where[(u, s)] for u, s in b.outs]
                rows_t = to_device(np.array([r for r, _ in at], dtype=np.int64), device)
                last_t = to_device(np.array([c + len(b.units[u].segs[s]) - 1 for (u, s), (_, c) in zip(b.outs, at)],
                                            dtype=np.int64), device)
                col.start(rows_t, last_t)
                kw = dict(input_ids=pb.input_ids, attention_mask=pb.attention_mask, position_ids=pb.position_ids)
            else:
                ids, mask, lens = pad([items[i].ids for i in b.rows])
                B, T = ids.shape
                pos = torch.arange(T, device=device).unsqueeze(0).expand(B, T)
                col.start(torch.arange(B, device=device), lens - 1)
                kw = dict(input_ids=ids, attention_mask=mask, position_ids=pos)
            res = run(partial(stack, **kw, use_cache=False))
            col.active = False
            head = gathered(col.head, device)
            resid = None
            if layer_wise:
                last = res.last_hidden_state
                col.resid[-1] = last[col.rows.to(last.device), col.pos.to(last.device)]
                resid = gathered(col.resid, device)
            if out_dtype is not None:
                head = head.to(out_dtype)
                resid = resid.to(out_dtype) if resid is not None else None
            yield list(b.rows), head, resid


def extract_arrays(model: Any, tokenizer: Any, texts: Sequence[str], prefixes: Sequence[str | None] | None = None,
                   *, layer_wise: bool = False, batch_tokens: int = 2048, share: bool = True,
                   device: Any = None, out_dtype: Any = None, fuse: str = "off") -> dict[str, np.ndarray]:
    """In-memory convenience (tests, benchmarks): arrays in prompt order."""
    items = tokenize_prompts(tokenizer, texts, prefixes, share=share)
    return extract_items(model, items, layer_wise=layer_wise, batch_tokens=batch_tokens, device=device,
                         pad_id=pad_token_id(tokenizer), out_dtype=out_dtype, fuse=fuse)


def pad_token_id(tokenizer: Any) -> int:
    for v in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(v, int):
            return v
    return 0


def extract_items(model: Any, items: Sequence[Tokenized], *, layer_wise: bool = False, batch_tokens: int = 2048,
                  device: Any = None, pad_id: int = 0, out_dtype: Any = None, fuse: str = "off") -> dict[str, np.ndarray]:
    """In-memory extraction of `items` (tests, benchmarks): arrays in prompt order; `fuse`: a
    --fuse mode (compute.fuse), off unless asked."""
    if device is None:
        from itictl.models.devices import input_device

        device = input_device(model)
    from itictl.compute.packing import supports_tree_masks

    batches = plan_batches(items, range(len(items)), batch_tokens, packed=supports_tree_masks(model))
    from itictl.extract.host import collect_to_host

    return collect_to_host(model, items, batches, layer_wise=layer_wise, device=device, pad_id=pad_id,
                           out_dtype=out_dtype, fuse=fuse)
