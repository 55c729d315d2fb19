"""Tokenization and the packing plan of multiple-choice scoring (evaluate/mc.py's score_groups).

Owns: `GroupTokens` (one Group's context ids and context + answer ids), `tokenize_groups` (every
group's texts in two batched tokenizer calls) and `plan_groups` (per group: the question ids after
the shared prefix, each answer's ids, and the rows that do not split cleanly and fall back to the
reference loop). Tokenizing is split from planning so `itictl eval` tokenizes all questions once
and reuses the ids for the baseline and every intervened fold subset (evaluate/evaluator.py): the
fast tokenizer's batch ids equal one-by-one calls, so a subset's ids are the same as tokenizing it
alone and the plan is identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

# plan entry per group: (index, question ids after the prefix | None, [(answer row, answer ids)], fallback rows)
PlanEntry = tuple[int, list[int] | None, list[tuple[int, list[int]]], list[int]]


@dataclass(frozen=True)
class GroupTokens:
    """Token ids of one Group: its context, and context + each continuation (in order)."""

    context: list[int]
    fulls: list[list[int]]


def tokenize_groups(tok, groups: Sequence[Any]) -> list[GroupTokens]:
    """Per group its GroupTokens. Tokenises all contexts, then all context + answer texts, in two
    batched calls (the fast tokenizer encodes a batch in parallel; ids equal one-by-one calls)."""
    if not groups:
        return []
    ctx_ids = [list(x) for x in tok([g.context for g in groups])["input_ids"]]
    texts = [g.context + cont for g in groups for cont in g.continuations]
    full_ids = iter([list(x) for x in tok(texts)["input_ids"]] if texts else [])
    return [GroupTokens(c_ids, [next(full_ids) for _ in g.continuations]) for g, c_ids in zip(groups, ctx_ids)]


def check_tokens(groups: Sequence[Any], tokens: Sequence[GroupTokens]) -> None:
    """Raise ValueError unless `tokens` has one entry per group with one id list per continuation."""
    if len(tokens) != len(groups) or any(len(t.fulls) != len(g.continuations) for g, t in zip(groups, tokens)):
        raise ValueError("tokens do not match groups: pass the tokenize_groups entries of these groups, in order")


def plan_groups(p_ids: list[int], tokens: Sequence[GroupTokens]) -> list[PlanEntry]:
    """Per group: (index, question ids after the prefix | None, [(answer row, answer ids)], fallback rows).
    A group whose context does not start with the prefix ids falls back whole; an answer whose
    context + answer ids do not start with the context ids (or add none) falls back alone."""
    L0 = len(p_ids)
    plan: list[PlanEntry] = []
    for gi, t in enumerate(tokens):
        c_ids = t.context
        if c_ids[:L0] != p_ids or len(c_ids) <= L0:
            plan.append((gi, None, [], list(range(len(t.fulls)))))
            continue
        rows, fb = [], []
        for ri, full in enumerate(t.fulls):
            if full[:len(c_ids)] == c_ids and len(full) > len(c_ids):
                rows.append((ri, full[len(c_ids):]))
            else:
                fb.append(ri)
        plan.append((gi, c_ids[L0:], rows, fb))
    return plan
