"""Greedy answer generation for True/Info/BLEU/ROUGE, as honest_llama's tqa_run_answers does it.

Owns: `generate_answers` (batched, left padding, ≤ 50 new tokens, intervention on the last prompt
token and every generated token via steering's 'generated' positions), `clean_answer` (cut at the
next "Q:", keep what follows "A:") and `write_answers_csv`. Under torchrun (`dist` of world > 1)
the single-process batches are shared among ranks whole and gathered on every rank, so the answers
are the ones one process would generate.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Mapping, Sequence

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
                     batch_size: int = 16, max_new_tokens: int = MAX_NEW_TOKENS,
                     progress: Callable[[int], None] | None = None, dist=None) -> list[str]:
    from itictl.compute import distributed as D
    from itictl.intervene.steering import steered_generate

    dist = dist or D.SINGLE
    prompts = [generation_prompt(q, instruction, preset, many_shot_prefix) for q in questions]
    # sort by length so batches pad little; restore order at the end
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    owner = D.assign_balanced([len(b) * max(len(prompts[j]) for j in b) for b in batches], dist.world_size)

    def mine() -> dict[int, str]:  # this rank's batches; a failure on any rank fails every rank
        done: dict[int, str] = {}
        for idx, o in zip(batches, owner):
            if o != dist.rank:
                continue
            texts = steered_generate(model, tok, [prompts[j] for j in idx], deltas or None,
                                     max_new_tokens=max_new_tokens, chat=False, positions="generated")
            for j, t in zip(idx, texts):
                done[j] = clean_answer(t)
            if progress:
                progress(len(idx))
        return done

    done: dict[int, str] = {}
    for part in D.run_phase("generating answers", mine, dist):
        done.update(part)
    return [done[j] for j in range(len(prompts))]


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
