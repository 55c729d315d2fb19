"""Small tensor helpers shared by the scoring paths (judges, natural-text CE/KL)."""

from __future__ import annotations

from typing import Sequence


def right_pad(rows: Sequence[Sequence[int]], pad_id: int = 0):
    """Token id lists -> (ids [B, T] long, attention mask [B, T] long), right-padded with pad_id."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        mask[r, :len(row)] = 1
    return ids, mask
