"""A judge's features: activations of judge prompts at their last token, through the extraction engine.

Owns `prompt_features`: tokenise with the question part ("Q: …\\nA:") as a shared prefix (so the
answers to one question pack as one tree and the question is computed once per row), plan packed
forwards, run only the decoder stack, and keep the requested layers of the requested features:
`resid` — the residual stream entering each decoder layer plus the final (normed) hidden state
[N, L+1, hidden]; `heads` — the concatenated attention-head outputs (o_proj inputs) [N, L, H·D].
Device -> host copies overlap the next forwards (extract.host.HostCopies).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

FEATURES = ("resid", "heads")


def prompt_prefix(prompt: str) -> str | None:
    """The shared question part of a judge prompt ("Q: …\\nA:"), or None."""
    at = prompt.find("\nA:")
    return prompt[: at + 3] if at >= 0 else None


def prompt_features(model: Any, tokenizer: Any, prompts: Sequence[str], *, features: str = "resid",
                    layers: Sequence[int] | None = None, device: Any = None, batch_tokens: int | None = None,
                    store_dtype: Any = np.float32, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """-> [N, len(layers), width] in prompt order (all layers when `layers` is None)."""
    from itictl.compute.packing import supports_tree_masks
    from itictl.extract.engine import (
        default_batch_tokens,
        pad_token_id,
        plan_batches,
        run_batches,
        tokenize_prompts,
    )
    from itictl.extract.host import HostCopies
    from itictl.models.devices import input_device

    device = device if device is not None else input_device(model)
    items = tokenize_prompts(tokenizer, list(prompts), [prompt_prefix(p) for p in prompts])
    budget = batch_tokens or default_batch_tokens(str(device), sum(len(t.ids) for t in items))
    batches = plan_batches(items, range(len(items)), budget, packed=supports_tree_masks(model))
    keep = None if layers is None else list(layers)
    out: dict[str, np.ndarray] = {}

    def sink(rows: list[int]):
        idx = np.asarray(rows, dtype=np.int64)

        def put(arrs: list) -> None:
            a = arrs[0]
            if "x" not in out:
                out["x"] = np.empty((len(items), *a.shape[1:]), dtype=store_dtype)
            out["x"][idx] = a
            if progress is not None:
                progress(len(rows))
        return put

    import torch

    sel = None if keep is None else torch.as_tensor(keep, dtype=torch.long)
    with HostCopies(device) as copies:
        for rows, head, resid in run_batches(model, items, batches, layer_wise=features == "resid", device=device,
                                             pad_id=pad_token_id(tokenizer)):
            x = resid if features == "resid" else head  # [B, L+1, hidden] | [B, L, H·D]
            if sel is not None:
                x = x.index_select(1, sel.to(x.device))
            copies.submit([x.float()], sink(rows))
    if "x" not in out:
        return np.zeros((0, 0 if keep is None else len(keep), 0), dtype=store_dtype)
    return out["x"]
