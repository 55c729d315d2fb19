"""CE loss on natural text and KL(original ‖ intervened) of next-token distributions.

Owns: `load_samples` (100 windows of exactly 128 tokens, seeded, cut from the concatenated,
tokenised paragraphs of a text file — the reference's stas/openwebtext-10k is a loading-script
dataset, so eval skips CE/KL without --text), `baseline` (the α = 0 pass, computed once and
reused; its log-probs are kept in float32) and
`ce_kl` (CE of the intervened model and its KL to the baseline). Semantics of the reference's
run_ce_loss / run_kl_wrt_orig: CE = mean over samples of the mean next-token loss; KL = mean over
samples of Σ_t KL(p_orig,t ‖ p_int,t) / T with probabilities clamped at 1e-10. The intervention
applies at every position. Under torchrun (`dist` of world > 1) the batches of 8 samples are
shared among ranks (batch b on rank b mod world, the same in the baseline and intervened passes,
so each rank keeps only its own baseline log-probs) and the per-sample values are gathered in
batch order: the means equal a single process's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from itictl.errors import NotFoundError

N_SAMPLES = 100
N_TOKENS = 128
EPS = 1e-10


def _text_chunks(path: Path) -> list[str]:
    """Paragraphs of a text file (blank-line separated; wikitext's ' = Heading = ' lines dropped)."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    paras, cur = [], []
    for line in raw.splitlines():
        s = line.strip()
        if not s or (s.startswith("=") and s.endswith("=")):
            if cur:
                paras.append(" ".join(cur))
                cur = []
            continue
        cur.append(s)
    if cur:
        paras.append(" ".join(cur))
    return paras


def leading_specials(tok) -> list[int]:
    """The ids the tokenizer puts before any text (BOS for Llama tokenizers; often none)."""
    with_sp = list(tok("a")["input_ids"])
    plain = list(tok("a", add_special_tokens=False)["input_ids"])
    for i in range(len(with_sp) - len(plain) + 1):
        if with_sp[i:i + len(plain)] == plain:
            return with_sp[:i]
    return []


def token_stream(tok, text_path: Path) -> list[int]:
    """The file's paragraphs, each followed by a blank line, tokenised without special tokens and
    concatenated (one batched tokenizer call; per paragraph, so no input exceeds the model length)."""
    texts = [t + "\n\n" for t in _text_chunks(Path(text_path))]
    return [i for ids in (tok(texts, add_special_tokens=False)["input_ids"] if texts else []) for i in ids]


def load_samples(tok, text_path: Path, *, n: int = N_SAMPLES, n_tokens: int = N_TOKENS, seed: int = 42) -> list[list[int]]:
    """`n` windows of exactly n_tokens: the tokenizer's leading specials (BOS) + consecutive,
    non-overlapping stretches of `token_stream`, chosen by a seeded permutation of the windows (the
    reference takes the first 128 tokens, BOS included, of long documents)."""
    if not Path(text_path).is_file():
        raise NotFoundError(f"text file {text_path} not found", "pass --text FILE with natural text")
    lead = leading_specials(tok)
    width = n_tokens - len(lead)
    stream = token_stream(tok, Path(text_path))
    n_windows = len(stream) // width if width > 0 else 0
    if n_windows == 0:
        raise NotFoundError(f"{text_path} has fewer than {n_tokens} tokens", "pass a larger natural text file")
    order = np.random.default_rng(seed).permutation(n_windows)[:n]
    return [lead + stream[int(i) * width:(int(i) + 1) * width] for i in order]


# samples per forward: 8 on a CPU; 32 on a GPU, where a 7B model's 8-sample forwards (1,024 tokens)
# are launch- and logits-bound (3 passes × 13 forwards took 2.9 s on an H200). Every sample has
# exactly n_tokens, so rows are never padded and the batch size changes no value beyond float rounding.
BATCH_SIZE = {"cuda": 32, "cpu": 8}


def batch_size_for(model) -> int:
    from itictl.models.devices import input_device

    return BATCH_SIZE["cuda" if str(input_device(model)).startswith("cuda") else "cpu"]


def _batches(samples: list[list[int]], bs: int):
    for i in range(0, len(samples), bs):
        yield samples[i:i + bs]


def _logprobs(model, chunk: list[list[int]]):
    import torch

    from itictl.models.devices import input_device

    dev = input_device(model)
    from itictl.compute.batching import right_pad

    ids, mask = right_pad(chunk, 0)
    with torch.no_grad():
        lp = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float().log_softmax(-1)
    return lp, ids.to(lp.device), mask.to(lp.device)


def _ce(lp, ids, mask) -> list[float]:
    tgt = ids[:, 1:]
    nll = -lp[:, :-1].gather(-1, tgt[..., None])[..., 0]  # [B, T-1]
    m = mask[:, 1:].float()
    return ((nll * m).sum(1) / m.sum(1)).tolist()


def _mine(n_batches: int, dist) -> list[int]:
    return [b for b in range(n_batches) if dist is None or b % dist.world_size == dist.rank]


def _shared(name: str, mine: Callable[[], dict[int, list]], dist) -> list:
    """Run this rank's batches (`mine` -> {batch: per-sample values}) as a distributed phase (a
    failure on any rank fails every rank) and return every rank's values in batch order."""
    from itictl.compute import distributed as D
    per_batch: dict[int, list] = {}
    for part in D.run_phase(name, mine, dist or D.SINGLE):
        per_batch.update(part)
    return [x for b in sorted(per_batch) for x in per_batch[b]]


def baseline(model, samples: list[list[int]], batch_size: int = 8, dist=None) -> dict[str, Any]:
    """The un-intervened pass: CE per sample and the log-probs kept for KL (float32 on the device
    that computed them, whatever the model's dtype; with world > 1 only this rank's batches)."""
    chunks = list(_batches(samples, batch_size))
    lps: dict[int, Any] = {}

    def mine() -> dict[int, list[float]]:
        ce: dict[int, list[float]] = {}
        for b in _mine(len(chunks), dist):
            lp, ids, mask = _logprobs(model, chunks[b])
            ce[b] = _ce(lp, ids, mask)
            lps[b] = lp  # float32 [B, T, V]
        return ce

    return {"ce": _shared("CE/KL (original model)", mine, dist), "logprobs": lps}


def ce_kl(model, samples: list[list[int]], base: dict[str, Any], steer=None, batch_size: int = 8,
          dist=None) -> dict[str, float]:
    """CE of the (intervened) model and KL(original ‖ intervened), reference semantics."""
    if steer is None:  # per-sample values too (evaluate/stats.py: CIs over samples)
        return {"ce": float(np.mean(base["ce"])), "kl": 0.0, "ce_samples": list(base["ce"]),
                "kl_samples": [0.0] * len(base["ce"])}
    chunks = list(_batches(samples, batch_size))

    def mine() -> dict[int, list[tuple[float, float]]]:
        out: dict[int, list[tuple[float, float]]] = {}
        for b in _mine(len(chunks), dist):
            with steer("all"):
                lp, ids, mask = _logprobs(model, chunks[b])
            p0 = base["logprobs"][b].exp().clamp(min=EPS)
            p1 = lp.exp().clamp(min=EPS)
            per_tok = (p0 * (p0.log() - p1.log())).sum(-1)  # [B, T]
            m = mask.float()
            out[b] = list(zip(_ce(lp, ids, mask), ((per_tok * m).sum(1) / m.sum(1)).tolist()))
        return out

    pairs = _shared("CE/KL (intervened model)", mine, dist)
    return {"ce": float(np.mean([c for c, _ in pairs])), "kl": float(np.mean([k for _, k in pairs])),
            "ce_samples": [c for c, _ in pairs], "kl_samples": [k for _, k in pairs]}
