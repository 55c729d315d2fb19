"""Tree packing: rows respect their capacity, every unit lands exactly once, and the mask lets a
token see exactly its ancestors' tokens and its own segment's earlier tokens."""

import random

import torch

from itictl.compute.packing import Unit, batch_rows, build_batch, pack_rows, split_unit


def _brute_mask(units, rows, prefix_len):
    """Visibility from first principles: (row, col) -> (segment chain, index in segment)."""
    out = []
    for r in rows:
        toks = []  # per token: (chain of segment ids from the root, index within its segment)
        if prefix_len:
            toks += [(("p",), i) for i in range(prefix_len)]
        for u in r:
            chains = {}
            for k, (seg, par) in enumerate(zip(units[u].segs, units[u].parents)):
                base = chains[par] if par >= 0 else (("p",) if prefix_len else ())
                chains[k] = base + ((u, k),)
                toks += [(chains[k], i) for i in range(len(seg))]
        out.append(toks)
    T = max(len(t) for t in out)
    m = torch.zeros(len(rows), T, T, dtype=torch.bool)
    for b, toks in enumerate(out):
        for i, (ci, ii) in enumerate(toks):
            for j, (cj, ij) in enumerate(toks):
                if cj == ci:
                    m[b, i, j] = ij <= ii
                else:
                    m[b, i, j] = ci[:len(cj)] == cj  # j's segment is an ancestor of i's
        for i in range(len(toks), T):  # padding sees padding (causally) only
            m[b, i, len(toks):i + 1] = True
    return m


def test_mask_positions_and_layout_match_first_principles():
    rnd = random.Random(0)
    units = []
    for _ in range(7):
        pre = [rnd.randrange(5, 50) for _ in range(rnd.randrange(1, 5))]
        kids = [[rnd.randrange(5, 50) for _ in range(rnd.randrange(1, 4))] for _ in range(rnd.randrange(0, 4))]
        units.extend(split_unit(pre, kids, 9))
    lengths = [u.length for u in units]
    rows = pack_rows(lengths, 12)
    assert sorted(u for r in rows for u in r) == list(range(len(units)))
    for r in rows:
        assert len(r) == 1 or sum(lengths[u] for u in r) <= 12
    for prefix in ([], [1, 2, 3]):
        pb = build_batch(units, rows, device="cpu", pad_id=0, prefix=prefix)
        assert torch.equal(pb.attention_mask[:, 0], _brute_mask(units, rows, len(prefix)))
        for (u, k), (b, c) in pb.where.items():  # tokens and positions of every segment
            seg = units[u].segs[k]
            assert pb.input_ids[b, c:c + len(seg)].tolist() == seg
            start = len(prefix)
            chain_len, kk = 0, k
            while units[u].parents[kk] >= 0:
                kk = units[u].parents[kk]
                chain_len += len(units[u].segs[kk])
            assert pb.position_ids[b, c].item() == start + chain_len


def test_split_unit_repeats_the_prefix_and_keeps_every_child():
    pre, kids = [1, 2], [[3] * 4, [4] * 4, [5] * 9, [6]]
    units = split_unit(pre, kids, 8)
    assert all(u.segs[0] == pre and u.parents == [-1] + [0] * (len(u.segs) - 1) for u in units)
    assert [s for u in units for s in u.segs[1:]] == kids
    assert all(u.length <= 8 or len(u.segs) == 2 for u in units)


def test_additive_mask_for_eager_and_batches_within_budget():
    units = [Unit([[7] * n], [-1]) for n in (5, 3, 8, 2, 6)]
    lengths = [u.length for u in units]
    rows = pack_rows(lengths, 8)
    fwd = batch_rows(rows, lengths, 16)
    assert sorted(r for f in fwd for r in f) == list(range(len(rows)))
    for f in fwd:
        fill = max(sum(lengths[u] for u in rows[r]) for r in f)
        assert len(f) == 1 or len(f) * fill <= 16
    pb_bool = build_batch(units, rows, device="cpu", pad_id=0)
    pb_add = build_batch(units, rows, device="cpu", pad_id=0, mask_dtype=torch.float32)
    assert torch.equal(pb_add.attention_mask == 0, pb_bool.attention_mask)
    assert pb_add.attention_mask.min() == torch.finfo(torch.float32).min
