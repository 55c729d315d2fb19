"""Tree packing: many prompts that share prefixes, run as a few dense rows with a custom mask.

Owns: `Unit` (a small tree of token segments: a root and children that continue it, e.g. a
question prefix and its answers), `pack_rows` (first-fit-decreasing packing of units into rows of
at most `row_tokens` tokens, optionally after a per-row shared prefix), `PackedBatch` (input ids,
position ids, the 4D attention mask and where every segment landed) and `supports_tree_masks`.

Every token sees exactly what it would see if its own prompt ran alone: the tokens of its
ancestor segments and the earlier tokens of its own segment. Position ids continue the parent
(a child starts at its parent's start + parent's length), so RoPE / learned positions are those of
the unpacked prompt. A shared prefix is therefore computed once per row instead of once per
prompt, with no KV-cache copies, and rows are nearly full, so almost no padding is computed.
Padding tokens form their own segment (they see only padding), so no attention row is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

# attention implementations that take a custom 4D mask as-is (transformers' masking_utils returns
# a 4D mask unchanged; sdpa wants bool, eager an additive float mask)
TREE_MASK_ATTN = ("sdpa", "eager")


@dataclass
class Unit:
    """A tree of segments placed contiguously in one row. parents[i] < i is segment i's parent
    inside the unit, or -1 for a root (which continues the row prefix, if the row has one)."""

    segs: list[list[int]]
    parents: list[int]

    @property
    def length(self) -> int:
        return sum(len(s) for s in self.segs)


@dataclass
class PackedBatch:
    """Tensors for one forward plus, for every (unit, segment), its row and first column."""

    input_ids: Any      # LongTensor [B, T]
    position_ids: Any   # LongTensor [B, T]
    attention_mask: Any  # [B, 1, T, T] bool (sdpa) or additive float (eager)
    where: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)  # (unit, seg) -> (row, col)


def _attn_impl(model: Any) -> str:
    return getattr(getattr(model, "config", None), "_attn_implementation", None) or "eager"


def supports_tree_masks(model: Any) -> bool:
    """sdpa/eager attention and an architecture that takes packed rows as given
    (models.arch.tree_masks_ok: table entries the architecture matrix checks; not ALiBi models)."""
    from itictl.models.arch import tree_masks_ok

    return _attn_impl(model) in TREE_MASK_ATTN and tree_masks_ok(model)


def split_unit(prefix: list[int], children: Sequence[list[int]], capacity: int) -> list[Unit]:
    """A prefix with child continuations as units of ≤ capacity tokens (the prefix is repeated in
    each piece when they do not fit together). Children longer than the capacity still get a unit."""
    units: list[Unit] = []
    cur: list[list[int]] = []
    used = len(prefix)
    for c in children:
        if cur and used + len(c) > capacity:
            units.append(Unit([prefix] + cur, [-1] + [0] * len(cur)))
            cur, used = [], len(prefix)
        cur.append(c)
        used += len(c)
    if cur or not units:
        units.append(Unit([prefix] + cur, [-1] + [0] * len(cur)))
    return units


def pack_rows(lengths: Sequence[int], row_tokens: int) -> list[list[int]]:
    """First-fit decreasing: unit indices per row, each row's total ≤ row_tokens (a longer unit
    gets a row of its own). Deterministic for given lengths."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    free: list[int] = []
    for i in order:
        n = lengths[i]
        for r, f in enumerate(free):
            if n <= f:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(max(0, row_tokens - n))
    return rows


def batch_rows(rows: Sequence[Sequence[int]], lengths: Sequence[int], batch_tokens: int,
               prefix_len: int = 0) -> list[list[int]]:
    """Group rows (sorted by fill, longest first) into forwards of ≤ batch_tokens padded tokens."""
    fill = [prefix_len + sum(lengths[u] for u in r) for r in rows]
    order = sorted(range(len(rows)), key=lambda r: (-fill[r], r))
    out: list[list[int]] = []
    cur: list[int] = []
    for r in order:
        T = fill[cur[0]] if cur else fill[r]
        if cur and (len(cur) + 1) * T > batch_tokens:
            out.append(cur)
            cur = []
        cur.append(r)
    if cur:
        out.append(cur)
    return out


def build_batch(units: Sequence[Unit], rows: Sequence[Sequence[int]], *, device: Any, pad_id: int,
                mask_dtype: Any = None, prefix: Sequence[int] = (), pad_to: int = 0) -> PackedBatch:
    """Materialise rows (lists of indices into `units`) as one padded batch. `prefix` (optional)
    starts every row and is the parent of every unit root. mask_dtype None -> bool mask (sdpa),
    a float dtype -> additive mask (0 / dtype min) for eager attention. pad_to: pad rows to at
    least this length, so that nearly every forward has one shape (attention kernels such as
    cuDNN's build a plan per shape; rows are nearly full, so this costs ~1-2 % tokens)."""
    from itictl.compute.batching import to_device

    ids, pos, seg, anc, where = _layout(units, rows, pad_id, prefix, pad_to)
    ids_t, pos_t, seg_t, anc_t = (to_device(a, device) for a in (ids, pos, seg, anc))
    return PackedBatch(ids_t, pos_t, _tree_mask(seg_t, anc_t, device, mask_dtype), where)


def _layout(units: Sequence[Unit], rows: Sequence[Sequence[int]], pad_id: int, prefix: Sequence[int],
            pad_to: int):
    """Numpy arrays for the rows: token ids, position ids and segment ids [B, T], the ancestor
    relation between segments anc [B, S, S] (segment S-1 is padding), and where every (unit,
    segment) starts."""
    import numpy as np

    P = len(prefix)
    fills = [P + sum(units[u].length for u in r) for r in rows]
    B, T = len(rows), max(max(fills), pad_to)
    ids = np.full((B, T), pad_id, dtype=np.int64)
    pos = np.zeros((B, T), dtype=np.int64)
    seg = np.zeros((B, T), dtype=np.int64)
    n_seg = [1 + int(P > 0) + sum(len(units[u].segs) for u in r) for r in rows]  # + padding segment
    S = max(n_seg)
    anc = np.zeros((B, S, S), dtype=bool)
    where: dict[tuple[int, int], tuple[int, int]] = {}
    for b, r in enumerate(rows):
        col, s = 0, 0
        root_parent, root_start = -1, 0
        if P:
            ids[b, :P] = prefix
            pos[b, :P] = np.arange(P)
            seg[b, :P] = 0
            anc[b, 0, 0] = True
            root_parent, root_start, col, s = 0, P, P, 1
        for u in r:
            unit = units[u]
            first = s
            starts: list[int] = []
            for k, (toks, par) in enumerate(zip(unit.segs, unit.parents)):
                n = len(toks)
                if par < 0:
                    p_abs, start = root_parent, root_start
                else:
                    p_abs, start = first + par, starts[par] + len(unit.segs[par])
                starts.append(start)
                ids[b, col:col + n] = toks
                pos[b, col:col + n] = np.arange(start, start + n)
                seg[b, col:col + n] = s
                anc[b, s, s] = True
                if p_abs >= 0:
                    anc[b, s] |= anc[b, p_abs]
                where[(u, k)] = (b, col)
                col += n
                s += 1
        seg[b, col:] = S - 1  # padding: position 0 (valid for learned position tables of any size)
    anc[:, S - 1, S - 1] = True
    return ids, pos, seg, anc, where


def _tree_mask(seg_t: Any, anc_t: Any, device: Any, mask_dtype: Any) -> Any:
    """[B, 1, T, T] mask from segment ids [B, T] and segment ancestry [B, S, S]: a token sees the
    tokens of its ancestor segments and the earlier tokens of its own segment."""
    import torch

    B, T = seg_t.shape
    bi = torch.arange(B, device=device)[:, None, None]
    m = anc_t[bi, seg_t[:, :, None], seg_t[:, None, :]]                      # [B, T, T]
    same = seg_t[:, :, None] == seg_t[:, None, :]
    causal = torch.ones(T, T, dtype=torch.bool, device=device).tril_()
    m = (m & ~same) | (same & causal)
    m = m[:, None]                                                           # [B, 1, T, T]
    if mask_dtype is not None and mask_dtype != torch.bool:
        m = torch.zeros(m.shape, dtype=mask_dtype, device=device).masked_fill_(~m, torch.finfo(mask_dtype).min)
    return m


def mask_dtype_for(model: Any) -> Any:
    """bool for sdpa, the model's float dtype (additive) for eager."""
    import torch

    if _attn_impl(model) == "sdpa":
        return torch.bool
    return next(model.parameters()).dtype
