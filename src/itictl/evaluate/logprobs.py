"""Summed log-probs from final hidden states: the LM head runs only on the positions that predict
scored tokens (MC scoring, evaluate/mc.py), 4,096 positions at a time, in float32 with the sums in
float64 (Gemma-2's final-logit soft-capping applied).
"""

from __future__ import annotations

import numpy as np


def logits_from_hidden(model, h):
    """The LM head on final hidden states [N, hidden] -> [N, V] float32 (Gemma-2 soft-capping too)."""
    import torch

    logits = model.get_output_embeddings()(h).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def summed_logprobs(model, hs, targets, n_slots: int) -> list[float]:
    """Per answer slot, the summed log-prob of its tokens: the LM head on the predicting positions
    of hs [B, T, hidden] only, 4,096 positions at a time."""
    import torch

    from itictl.compute.batching import to_device

    pr_t, pc_t, tgt_t, which_t = (to_device(np.asarray(v, dtype=np.int64), hs.device) for v in targets)
    tot = torch.zeros(n_slots, dtype=torch.float64, device=hs.device)
    step = 4096
    for s0 in range(0, len(pr_t), step):
        h = hs[pr_t[s0:s0 + step], pc_t[s0:s0 + step]]
        logp = logits_from_hidden(model, h).log_softmax(-1)
        lp = logp.gather(-1, tgt_t[s0:s0 + step, None].to(logp.device))[:, 0]
        tot.index_add_(0, which_t[s0:s0 + step], lp.to(tot.device, torch.float64))
        del h, logp
    return tot.tolist()
