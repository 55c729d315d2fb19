"""Small tensor helpers shared by the batched paths (extraction, MC/judge/CE-KL scoring):
`right_pad` and `to_device` (host -> device without a stream sync)."""

from __future__ import annotations

from typing import Any, Sequence


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


def to_device(a: Any, device: Any) -> Any:
    """numpy/CPU tensor -> device without a stream sync: a pageable host->GPU copy waits for the
    GPU to go idle, so the next batch could not be prepared while the last one computes."""
    import torch

    t = torch.as_tensor(a)
    if torch.device(device).type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)
