"""Which tokens of a multiple-choice answer are scored and edited: itictl's answer tokens, or the
reference's literal positions (the `mc_positions` switch, itictl.protocol).

An answer's *segment* is the tokens of tokenize(context + continuation) after tokenize(context).

- `answer` (itictl): the context ends with "\\nA:" (qa), the continuation is " " + answer; every
  segment token is scored and the intervention edits every segment token. Where the two
  tokenizations disagree, the segment is found by character offsets.
- `reference`: honest_llama's tqa_run_probs (legacy/llama_utils.py) literally. input_prompt =
  instruction + "\\n\\n" + many-shot prefix + the preset's prompt without an answer (qa: primer +
  "\\n\\nQ: " + question); prompt = the same with the answer (qa: input_prompt + "\\nA: " + answer; the
  other presets: input_prompt + " " + answer). The segment starts at len(tokens(input_prompt)) by
  index, even where tokens(prompt) does not start with tokens(input_prompt); `log_probs[3:]` of it
  are summed (the reference assumes "\\nA:" is 3 tokens) and the intervention edits positions
  ≥ len(tokens(input_prompt)) + 4. With a BPE tokenizer this is not exactly "the answer tokens":
  SmolLM2 and Llama-2 do split "\\nA:" into 3 tokens, so the answer is scored in full, but the edit
  starts one token later than itictl's (the first answer token is not edited, so the answer's second
  token is predicted unedited); with the null/chat/long/harm presets the first 3 answer tokens are
  dropped from the score. Reproduced, not fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

POSITIONS = ("answer", "reference")


@dataclass(frozen=True)
class Scoring:
    """skip: leading segment tokens not scored; edit_from: first segment token the intervention
    edits; literal: the segment starts at len(tokens(context)) even where the tokenizations disagree."""

    skip: int = 0
    edit_from: int = 0
    literal: bool = False


ANSWER = Scoring()
REFERENCE = Scoring(skip=3, edit_from=4, literal=True)  # log_probs[3:]; start_edit_location = len + 4


def scoring_of(positions: str) -> Scoring:
    from itictl.errors import BadInputError

    if positions not in POSITIONS:
        raise BadInputError(f"unknown --mc-positions {positions!r}", f"use one of: {', '.join(POSITIONS)}")
    return REFERENCE if positions == "reference" else ANSWER


def reference_context(question: str, instruction: str, preset: str, many_shot_prefix: str | None = None) -> str:
    """tqa_run_probs' input_prompt: instruction + "\\n\\n" + many-shot prefix + format_prompt(preset)."""
    from itictl.evaluate.presets import mc_context

    ctx = mc_context(question, instruction, preset, many_shot_prefix)
    return ctx[:-len("\nA:")] if preset == "qa" else ctx  # qa's format_prompt has no "\nA:"


def reference_join(preset: str) -> str:
    """What format_prompt_with_answer_strings puts between input_prompt and the answer."""
    return "\nA: " if preset == "qa" else " "
