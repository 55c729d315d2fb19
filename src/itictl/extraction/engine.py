"""The extraction engine: head-wise (and optional layer-wise) activations at the last prompt token,
computed in length-sorted, token-budgeted batches with exact padding and question-prefix sharing.

Owns: tokenising prompts exactly like `tokenizer(text)`, deciding which prompts can share their
question prefix's KV cache, packing work into batches, running only the decoder stack (no lm_head)
with hooks that gather each layer's o_proj input at each row's last real token, and yielding
finished chunks as CPU numpy arrays.

Exactness: batches are right-padded; position ids are explicit (arange for plain rows, prefix
length + arange for suffix rows); the attention mask hides padding; each row's activation is
gathered at its own last real token. Batched, shared and single-prompt results agree within dtype
tolerance (tests/test_extract.py proves it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np


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
    """Plain batch: rows run whole. Shared batch: the prefixes run once, then each split of the
    rows (sorted by suffix length) runs its suffixes against the prefix cache expanded to it."""

    rows: list[int]                 # prompt indices
    prefixes: list[list[int]] = field(default_factory=list)  # shared only: one per group
    row_group: list[int] = field(default_factory=list)       # shared only: group of each row
    splits: list[list[int]] = field(default_factory=list)    # shared only: positions into rows per suffix pass
    prefix_splits: list[list[int]] = field(default_factory=list)  # shared only: groups per prefix pass

    @property
    def shared(self) -> bool:
        return bool(self.prefixes)


def plan_batches(items: Sequence[Tokenized], todo: Sequence[int], batch_tokens: int,
                 cache_tokens: int | None = None) -> list[Batch]:
    """Pack prompts `todo` into batches whose padded token count stays within `batch_tokens`.

    Prompts whose prefix is shared by ≥ 2 prompts go into shared batches (grouped by prefix);
    the rest are sorted by length into plain batches. A shared batch holds questions sorted by
    prefix length whose padded prefix cache fits cache_tokens; its prefixes run in passes of
    ≤ batch_tokens padded tokens (each padded only to its own longest prefix; the caches are then
    zero-padded and masked to a common length, which costs no matmul work); its rows are sorted by
    suffix length and cut into suffix passes with rows x longest suffix ≤ batch_tokens and
    rows x (prefix + suffix) ≤ cache_tokens (the expanded cache). cache_tokens defaults to
    2 x batch_tokens."""
    cache_tokens = cache_tokens or 2 * batch_tokens
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in todo:
        t = items[i]
        if t.prefix_len:
            groups.setdefault(tuple(t.ids[: t.prefix_len]), []).append(i)
    plain = [i for i in todo if not items[i].prefix_len]
    shared_groups = []
    for pre, rows in groups.items():
        if len(rows) < 2:
            plain.extend(rows)
        else:
            shared_groups.append((pre, rows))

    batches: list[Batch] = []
    plain.sort(key=lambda i: (len(items[i].ids), i))
    batches.extend(Batch(rows) for rows in _pack(plain, lambda i: len(items[i].ids), batch_tokens))

    def slen(i: int) -> int:
        return len(items[i].ids) - items[i].prefix_len

    shared_groups.sort(key=lambda g: (len(g[0]), g[1][0]))
    pre_batches: list[list[tuple[tuple[int, ...], list[int]]]] = []
    cur_g: list = []
    for pre, rows in shared_groups:
        if cur_g and (len(cur_g) + 1) * len(pre) > cache_tokens:
            pre_batches.append(cur_g)
            cur_g = []
        cur_g.append((pre, rows))
    if cur_g:
        pre_batches.append(cur_g)

    for gs in pre_batches:
        b = Batch([])
        for g, (pre, rows) in enumerate(gs):
            b.prefixes.append(list(pre))
            b.rows.extend(rows)
            b.row_group.extend([g] * len(rows))
        P = max(len(p) for p in b.prefixes)
        b.prefix_splits = _pack(range(len(b.prefixes)), lambda g: len(b.prefixes[g]), batch_tokens)
        order = sorted(range(len(b.rows)), key=lambda r: (slen(b.rows[r]), r))
        b.splits = _pack(order, lambda r: slen(b.rows[r]), batch_tokens,
                         cap=lambda k, n: k * (P + n) > cache_tokens)
        batches.append(b)
    return batches


def _pack(order: Sequence[int], length: Callable[[int], int], budget: int,
          cap: Callable[[int, int], bool] | None = None, max_waste: float = 0.1) -> list[list[int]]:
    """Cut `order` (ascending lengths) into passes: k rows x longest ≤ budget (and not cap(k, longest));
    once a pass holds a quarter of the budget, also cut before padding would exceed max_waste."""
    out: list[list[int]] = []
    cur: list[int] = []
    real = 0
    for r in order:
        n = length(r)
        k = len(cur) + 1
        over = k * n > budget or (cap is not None and cap(k, n))
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
    """Real tokens the plan computes (prefixes once per shared group) and padded tokens."""
    real = padded = 0
    for b in batches:
        if b.shared:
            for ps in b.prefix_splits:
                p = [len(b.prefixes[g]) for g in ps]
                real += sum(p)
                padded += len(p) * max(p)
            for sp in b.splits:
                s = [len(items[b.rows[r]].ids) - items[b.rows[r]].prefix_len for r in sp]
                real += sum(s)
                padded += len(s) * max(s)
        else:
            n = [len(items[i].ids) for i in b.rows]
            real += sum(n)
            padded += len(n) * max(n)
    return {"real": real, "padded": padded, "unshared": sum(len(t.ids) for t in items)}


class _Collector:
    """Forward hooks that gather o_proj inputs (and layer inputs) at each row's last token."""

    def __init__(self, model: Any, layer_wise: bool):
        from itictl.models.arch import decoder_layers, o_proj_modules

        self.o_projs = o_proj_modules(model)
        self.layers = decoder_layers(model)
        self.layer_wise = layer_wise
        self.active = False
        self.rows = None   # LongTensor [B]
        self.pos = None    # LongTensor [B]
        self.head: list = []
        self.resid: list = []
        self.handles: list = []

    def __enter__(self) -> "_Collector":
        for i, m in enumerate(self.o_projs):
            self.handles.append(m.register_forward_pre_hook(self._head_hook(i)))
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
                self.head[i] = args[0][self.rows, self.pos]
        return hook

    def _resid_hook(self, i: int) -> Callable:
        def hook(mod, args, kwargs):
            if self.active:
                x = args[0] if args else kwargs["hidden_states"]
                self.resid[i] = x[self.rows, self.pos]
        return hook


def _forward_kwargs(stack: Any) -> str:
    import inspect

    params = inspect.signature(stack.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def run_batches(model: Any, items: Sequence[Tokenized], batches: Sequence[Batch], *, layer_wise: bool,
                device: Any, pad_id: int, out_dtype: Any = None) -> Iterator[tuple[list[int], Any, Any]]:
    """Yield (prompt indices, head [B, L, H·D], resid [B, L+1, hidden] | None) per batch, on device."""
    import torch
    import torch.nn.functional as F

    from itictl.models.arch import decoder_stack

    stack = decoder_stack(model)
    cache_kw = _forward_kwargs(stack)

    def pad(seqs: list[list[int]]) -> tuple[Any, Any, Any]:
        T = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, : len(s)] = 1
        lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        return ids.to(device), mask.to(device), lens.to(device)

    def finish(rows: list[int], res: Any) -> tuple[list[int], Any, Any]:
        col.active = False
        head = torch.stack(col.head, dim=1)
        resid = None
        if layer_wise:
            col.resid[-1] = res.last_hidden_state[col.rows, col.pos]
            resid = torch.stack(col.resid, dim=1)
        if out_dtype is not None:
            head = head.to(out_dtype)
            resid = resid.to(out_dtype) if resid is not None else None
        return rows, head, resid

    col = _Collector(model, layer_wise)
    with col, torch.inference_mode():
        for b in batches:
            if not b.shared:
                ids, mask, lens = pad([items[i].ids for i in b.rows])
                B, T = ids.shape
                pos = torch.arange(T, device=device).unsqueeze(0).expand(B, T)
                col.start(torch.arange(B, device=device), lens - 1)
                res = stack(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
            else:
                from transformers import DynamicCache

                _, pmask, plens = pad(b.prefixes)
                P = pmask.shape[1]
                col.active = False
                parts: list[list[tuple[Any, Any]]] = []
                for ps in b.prefix_splits:  # consecutive groups, each pass padded to its own longest
                    pids, pm, _ = pad([b.prefixes[g] for g in ps])
                    G, Pi = pids.shape
                    base = DynamicCache(config=model.config)
                    stack(input_ids=pids, attention_mask=pm,
                          position_ids=torch.arange(Pi, device=device).unsqueeze(0).expand(G, Pi),
                          use_cache=True, **{cache_kw: base})
                    parts.append([(F.pad(layer.keys, (0, 0, 0, P - Pi)), F.pad(layer.values, (0, 0, 0, P - Pi)))
                                  for layer in base.layers])
                    del base
                kv = [(torch.cat([p[li][0] for p in parts]), torch.cat([p[li][1] for p in parts]))
                      for li in range(len(parts[0]))]
                del parts
                all_groups = torch.tensor(b.row_group, dtype=torch.long)
                for sp in b.splits:
                    rows = [b.rows[r] for r in sp]
                    grp = all_groups[sp].to(device)
                    # the prefix cache expanded over this pass's rows (one copy per row)
                    cache = DynamicCache([(k[grp], v[grp]) for k, v in kv], config=model.config)
                    sids, smask, slens = pad([items[i].ids[items[i].prefix_len:] for i in rows])
                    R, S = sids.shape
                    pos = plens[grp].unsqueeze(1) + torch.arange(S, device=device).unsqueeze(0)
                    mask = torch.cat([pmask[grp], smask], dim=1)
                    col.start(torch.arange(R, device=device), slens - 1)
                    res = stack(input_ids=sids, attention_mask=mask, position_ids=pos, use_cache=True,
                                **{cache_kw: cache})
                    del cache
                    yield finish(rows, res)
                continue
            yield finish(list(b.rows), res)



def extract_arrays(model: Any, tokenizer: Any, texts: Sequence[str], prefixes: Sequence[str | None] | None = None,
                   *, layer_wise: bool = False, batch_tokens: int = 2048, share: bool = True,
                   device: Any = None, out_dtype: Any = None) -> dict[str, np.ndarray]:
    """In-memory convenience (tests, benchmarks): arrays in prompt order."""
    items = tokenize_prompts(tokenizer, texts, prefixes, share=share)
    return extract_items(model, items, layer_wise=layer_wise, batch_tokens=batch_tokens, device=device,
                         pad_id=pad_token_id(tokenizer), out_dtype=out_dtype)


def pad_token_id(tokenizer: Any) -> int:
    for v in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(v, int):
            return v
    return 0


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of KV cache one token takes over all layers (for sizing shared batches)."""
    cfg = model.config
    from itictl.models.arch import head_layout

    lay = head_layout(model)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or lay.n_heads)
    itemsize = next(model.parameters()).element_size()
    return 2 * lay.n_layers * kv_heads * lay.head_dim * itemsize


def cache_token_budget(model: Any, device: Any, batch_tokens: int) -> int:
    """How many (row x position) KV entries a shared batch may expand to: 1 GiB on CPU, 15% of
    the free accelerator memory. A shared batch holds up to ~4 such buffers at its peak (the
    prefix passes, their concatenation, the expanded copy and the copy the suffix pass appends
    to), so 15% keeps the peak near 60% of free memory (a 7B fp16 model OOMed at 30%)."""
    import torch

    dev = torch.device(device)
    budget = 1 << 30
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        budget = int(0.15 * free)
    return max(1024, budget // max(1, kv_bytes_per_token(model)))


def extract_items(model: Any, items: Sequence[Tokenized], *, layer_wise: bool = False, batch_tokens: int = 2048,
                  device: Any = None, pad_id: int = 0, out_dtype: Any = None) -> dict[str, np.ndarray]:
    import torch

    device = device if device is not None else next(model.parameters()).device
    batches = plan_batches(items, range(len(items)), batch_tokens)
    heads: list = [None] * len(items)
    resids: list = [None] * len(items)
    for rows, head, resid in run_batches(model, items, batches, layer_wise=layer_wise, device=device,
                                         pad_id=pad_id, out_dtype=out_dtype):
        h = head.float().cpu() if head.dtype == torch.bfloat16 else head.cpu()
        for r, i in enumerate(rows):
            heads[i] = h[r]
            if resid is not None:
                resids[i] = resid[r].float().cpu() if resid.dtype == torch.bfloat16 else resid[r].cpu()
    out = {"head_wise": torch.stack(heads).numpy()}
    if layer_wise:
        out["layer_wise"] = torch.stack(resids).numpy()
    return out
