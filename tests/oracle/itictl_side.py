"""The itictl side of the oracle comparisons: the public entry points, called as `itictl eval` does.

- `steer_for(model, deltas)`: the steer(positions) callback the evaluator passes to MC scoring and
  CE/KL (positions: a TokenMask, 'all', or per-row answer starts for the fallback loop).
- `mc_scores(...)`: mc_items / groups_for / score_groups / mc_metrics.
- `text_ce_kl(...)`: natural_text.baseline + ce_kl.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np


def steer_for(model, deltas):
    import torch

    from itictl.intervene.steering import AnswerPositions, intervened

    tensors = {int(l): torch.as_tensor(np.asarray(v, dtype=np.float32)) for l, v in deltas.items()}

    def steer(pos):
        if isinstance(pos, list):
            return intervened(model, tensors, AnswerPositions(torch.tensor(pos)))
        return intervened(model, tensors, pos)

    return steer


def probes_like(val_acc: np.ndarray, com: np.ndarray, weight: np.ndarray | None = None) -> Any:
    """The fields build_deltas reads from a probes object (layout, val_acc, com, weight)."""
    L, H, D = com.shape
    return SimpleNamespace(layout=(L, H, D), val_acc=val_acc, com=com.astype(np.float32),
                           weight=(com if weight is None else weight).astype(np.float32))


def mc_scores(model, tok, questions: Sequence[Any], deltas=None, instruction: str = "default",
              positions: str = "answer", **packing) -> tuple[list, list[list[float]], list[dict[str, float]]]:
    """(items, per-question answer scores [true…, false…], per-question MC1/MC2/MC3); positions:
    'answer' (itictl) or 'reference' (the reference's literal MC positions)."""
    from itictl.evaluate.mc import groups_for, mc_items, mc_metrics, score_groups
    from itictl.evaluate.mc_positions import scoring_of

    items = mc_items(questions)
    prefix, groups = groups_for(items, instruction, "qa", None, positions=positions)
    steer = steer_for(model, deltas) if deltas else None
    scores = score_groups(model, tok, prefix, groups, steer=steer, scoring=scoring_of(positions), **packing)
    return items, scores, [mc_metrics(it, s) for it, s in zip(items, scores)]


def text_ce_kl(model, samples, deltas=None, batch_size: int | None = None) -> tuple[dict, dict[str, float]]:
    """(baseline, {'ce', 'kl'}) as the evaluator computes them (its device's batch size by default)."""
    from itictl.evaluate.natural_text import baseline, batch_size_for, ce_kl

    bs = batch_size or batch_size_for(model)
    base = baseline(model, samples, batch_size=bs)
    return base, ce_kl(model, samples, base, steer=steer_for(model, deltas) if deltas else None, batch_size=bs)
