"""Greedy answer generation for True/Info/BLEU/ROUGE, as honest_llama's tqa_run_answers does it.

Owns: `generate_answers` (greedy, ≤ 50 new tokens, intervention on the last prompt token and every
generated token), `clean_answer` (cut at the next "Q:", keep what follows "A:") and
`write_answers_csv`. Answers come from intervene.generation's engine: the prompts' shared prefix
(instruction + primer) computed once, prompts sorted by length into memory-sized batches, a static
KV cache and CUDA-graph decode steps on a single GPU; each answer equals what batch-1
model.generate gives (token-identical in float32). Models the engine does not serve fall back to
model.generate in left-padded batches of 16. Under torchrun (`dist` of world > 1) the
single-process batches are shared among ranks whole and gathered on every rank, so the answers
are the ones one process would generate.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from itictl.evaluate.presets import generation_prompt

MAX_NEW_TOKENS = 50


def clean_answer(text: str) -> str:
    """The reference's post-processing: drop everything from the next 'Q:', keep what follows 'A:'."""
    s = text.strip().split("Q:")[0].strip()
    if "A:" in s:
        s = s.split("A:")[1].strip()
    return s


def generate_answers(model, tok, questions: Sequence[str], *, instruction: str, preset: str,
                     many_shot_prefix: str | None = None, deltas: Mapping | None = None,
                     batch_size: int | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
                     progress: Callable[[int], None] | None = None, dist=None,
                     graphs: bool | None = None, stats: dict | None = None) -> list[str]:
    """Cleaned greedy answers, in question order. batch_size None: sized from free device memory
    (intervene.generation.rows_for); graphs None: CUDA graphs when the model sits on one GPU,
    False: never. `stats`, when given, is filled with how the answers were made (engine, rows,
    prefix_tokens, batches, cuda_graph, graph_error)."""
    stats = {} if stats is None else stats
    from itictl.compute import distributed as D
    from itictl.intervene.generation import fast_path_ok

    dist = dist or D.SINGLE
    prompts = [generation_prompt(q, instruction, preset, many_shot_prefix) for q in questions]
    if not prompts:
        return []
    seqs = [list(ids) for ids in tok(prompts, add_special_tokens=True)["input_ids"]]
    if not fast_path_ok(model, max(len(s) for s in seqs) + max_new_tokens):
        stats.update(engine="model.generate", rows=batch_size or 16)
        return _generate_with_hf(model, tok, prompts, deltas, batch_size or 16, max_new_tokens, progress, dist)
    return _generate_fast(model, tok, seqs, deltas, batch_size, max_new_tokens, progress, dist, graphs, stats)


def _gathered(dist, mine: Callable[[], dict[int, str]], n: int) -> list[str]:
    """Every rank's answers, in question order, on every rank (a failure on any rank fails all)."""
    from itictl.compute import distributed as D

    done: dict[int, str] = {}
    for part in D.run_phase("generating answers", mine, dist):
        done.update(part)
    return [done[j] for j in range(n)]


def _generate_fast(model, tok, seqs, deltas, batch_size, max_new_tokens, progress, dist, graphs,
                   stats: dict) -> list[str]:
    """Shared prefix once, memory-sized batches of similar length, static cache (+ CUDA graph)."""
    from itictl.compute import distributed as D
    from itictl.intervene.generation import (
        GreedyEngine,
        eos_ids,
        rows_for,
        shared_prefix_len,
    )

    P = shared_prefix_len(seqs)
    max_suffix = max(len(s) for s in seqs) - P
    rows = batch_size or rows_for(model, len(seqs), P + max_suffix + max_new_tokens, max_suffix)
    if dist.distributed:  # every rank cuts the same batches
        rows = min(D.all_gather_object(rows, dist))
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    batches = [order[i:i + rows] for i in range(0, len(order), rows)]
    owner = D.assign_balanced([len(b) * max(len(seqs[j]) - P for j in b) for b in batches], dist.world_size)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (eos_ids(model, tok) or [0])[0]
    stats.update(engine="greedy", rows=rows, prefix_tokens=P, batches=len(batches), cuda_graph=False, graph_error=None)

    def mine() -> dict[int, str]:  # this rank's batches; a failure on any rank fails every rank
        done: dict[int, str] = {}
        todo = [b for b, o in zip(batches, owner) if o == dist.rank]
        if not todo:
            return done
        with GreedyEngine(model, seqs[0][:P], max_suffix=max_suffix, max_new_tokens=max_new_tokens, rows=rows,
                          eos=eos_ids(model, tok), pad_id=pad, deltas=deltas or None, graphs=graphs) as eng:
            for idx in todo:
                outs = eng.run([seqs[j][P:] for j in idx])
                for j, text in zip(idx, tok.batch_decode(outs, skip_special_tokens=True)):
                    done[j] = clean_answer(text)
                if progress:
                    progress(len(idx))
            stats.update(cuda_graph=eng.graph is not None, graph_error=eng.graph_error)
        return done

    return _gathered(dist, mine, len(seqs))


def _generate_with_hf(model, tok, prompts, deltas, batch_size, max_new_tokens, progress, dist) -> list[str]:
    """model.generate in left-padded batches (models the fast engine does not serve)."""
    from itictl.compute import distributed as D
    from itictl.intervene.steering import steered_generate

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    owner = D.assign_balanced([len(b) * max(len(prompts[j]) for j in b) for b in batches], dist.world_size)

    def mine() -> dict[int, str]:
        done: dict[int, str] = {}
        for idx, o in zip(batches, owner):
            if o != dist.rank:
                continue
            texts = steered_generate(model, tok, [prompts[j] for j in idx], deltas or None,
                                     max_new_tokens=max_new_tokens, chat=False, positions="generated", fast=False)
            for j, t in zip(idx, texts):
                done[j] = clean_answer(t)
            if progress:
                progress(len(idx))
        return done

    return _gathered(dist, mine, len(prompts))


def write_answers_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("")
        return
    cols = list(rows[0].keys())
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow(r)
