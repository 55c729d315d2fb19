"""Judges of generated answers (True / Info): the interface evaluate uses, and judges trained in the store.

Modules: base (the `Judge` interface, TruthfulQA's judge prompt), spec (`parse_judge`,
`check_judge_spec`), remote (OpenAI-compatible judges and OpenAI fine-tuning), hf (Hugging Face
causal-LM judges), data (the judge fine-tuning files and splits by question), features (judge
prompts -> activations through the extraction engine), fit (layer and C search), train (`itictl
judge train` -> a `judge` artifact), local (a `judge` artifact as a Judge), metrics, compare.

Layering: evaluate -> judge -> probe / extract -> compute / models / data -> store. Importing this
package is cheap (no torch).
"""

from itictl.judge.base import THRESHOLD, Judge, judge_prompt
from itictl.judge.spec import check_judge_spec, parse_judge

__all__ = ["THRESHOLD", "Judge", "check_judge_spec", "judge_prompt", "parse_judge"]
