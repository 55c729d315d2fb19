"""Judge training data: TruthfulQA's judge fine-tuning files and the splits by whole questions.

Owns: reading finetune_truth.jsonl / finetune_info.jsonl (one record a line, {"prompt": "Q: …\\nA:
…\\nTrue:" (truth) or "…\\nHelpful:" (info), "completion": " yes" | " no"}; 22,114 labelled answers
to the 817 TruthfulQA questions in each file), the default file in the data directory, and
`split_examples`: a share of the QUESTIONS is held out entirely (the judge never sees them: how it
generalises), and the answers of the other questions are cut into train / validation / held-out
answers (how it is used in eval, whose questions are all in the judge data). Identical prompts
always fall on the same side, so no held-out answer is a verbatim copy of a training one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from itictl.errors import BadInputError, NotFoundError

KINDS = ("truth", "info")
TAILS = {"truth": "True:", "info": "Helpful:"}
LABELS = {" yes": 1, " no": 0}
UNSEEN_QUESTIONS = 0.1   # share of questions held out entirely
VAL_ANSWERS = 0.1        # of the other questions' distinct prompts: validation (layer and C)
SEEN_TEST_ANSWERS = 0.1  # … and held-out answers


@dataclass
class Example:
    """One labelled judge prompt: `prefix` ("Q: …\\nA:") is shared by all answers to a question."""

    prompt: str
    question: str
    label: int

    @property
    def prefix(self) -> str:
        return self.prompt[: self.prompt.index("\nA:") + 3]


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise BadInputError(f"unknown judge kind {kind!r}", "use --kind truth or --kind info")
    return kind


def default_data_file(kind: str, data: str | Path | None) -> Path:
    """--data FILE.jsonl, or finetune_<kind>.jsonl in --data DIR / $ITICTL_DATA."""
    from itictl.config import data_dir

    check_kind(kind)
    if data is not None and Path(data).expanduser().is_file():
        return Path(data).expanduser().resolve()
    d = data_dir(data)
    if d is None:
        raise NotFoundError("no judge training data given",
                            f"pass --data finetune_{kind}.jsonl (or the TruthfulQA directory), or set ITICTL_DATA")
    path = d / f"finetune_{kind}.jsonl" if d.is_dir() or not d.suffix else d
    if not path.is_file():
        raise NotFoundError(f"judge training data {path} not found",
                            f"pass --data finetune_{kind}.jsonl or a directory that holds it")
    return path


def parse_record(line: str, kind: str, where: str) -> Example:
    """One JSONL line -> Example; a record of the other kind or another shape is a BadInputError."""
    try:
        rec = json.loads(line)
        prompt, completion = rec["prompt"], rec["completion"]
    except (ValueError, KeyError, TypeError):
        raise BadInputError(f"{where}: not a {{\"prompt\", \"completion\"}} JSON record",
                            "use TruthfulQA's finetune_truth.jsonl / finetune_info.jsonl") from None
    tail = "\n" + TAILS[kind]
    if not isinstance(prompt, str) or not prompt.startswith("Q: ") or "\nA:" not in prompt or not prompt.endswith(tail):
        other = "info" if kind == "truth" else "truth"
        hint = (f"this looks like {other} data: pass --kind {other}" if isinstance(prompt, str)
                and prompt.endswith("\n" + TAILS[other]) else f"prompts must read 'Q: …\\nA: …\\n{TAILS[kind]}'")
        raise BadInputError(f"{where}: not a {kind} judge prompt", hint)
    if completion not in LABELS:
        raise BadInputError(f"{where}: completion {completion!r} is not ' yes' or ' no'", "fix the record")
    return Example(prompt, prompt[3: prompt.index("\nA:")].strip(), LABELS[completion])


def read_examples(path: Path, kind: str, limit: int | None = None) -> list[Example]:
    """The first `limit` records of `path` (the files are in no particular order), each checked."""
    out: list[Example] = []
    with Path(path).open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            out.append(parse_record(line, kind, f"{Path(path).name} line {i}"))
            if limit is not None and len(out) >= limit:
                break
    return out


def load_examples(path: Path, kind: str, limit: int | None = None) -> list[Example]:
    """read_examples, and enough of them with both labels to train a judge."""
    if limit is not None and limit < 1:
        raise BadInputError(f"--limit must be at least 1 (got {limit})", "omit --limit for the whole file")
    out = read_examples(path, kind, limit)
    if len(out) < 10 or len({e.label for e in out}) < 2:
        raise BadInputError(f"{path} has {len(out)} usable records" + ("" if len(out) < 10 else " of one label"),
                            "a judge needs at least 10 records with both ' yes' and ' no' answers")
    return out


def split_examples(examples: list[Example], seed: int) -> dict[str, np.ndarray]:
    """Indices {'train', 'val', 'seen_test', 'unseen_test'}: unseen_test = every answer of a seeded
    UNSEEN_QUESTIONS share of the questions; the other questions' distinct prompts are shuffled
    and cut into val / seen_test / train. Each part gets at least one question or prompt."""
    rng = np.random.default_rng(seed)
    questions = sorted({e.question for e in examples})
    if len(questions) < 2:
        raise BadInputError("the judge data has answers to fewer than 2 questions",
                            "raise --limit: held-out questions need at least one other question")
    n_unseen = min(len(questions) - 1, max(1, round(UNSEEN_QUESTIONS * len(questions))))
    unseen = {questions[i] for i in rng.permutation(len(questions))[:n_unseen]}
    prompts = sorted({e.prompt for e in examples if e.question not in unseen})
    order = [prompts[i] for i in rng.permutation(len(prompts))]
    n_val = max(1, round(VAL_ANSWERS * len(order)))
    n_test = max(1, round(SEEN_TEST_ANSWERS * len(order)))
    part = {p: "val" for p in order[:n_val]}
    part.update({p: "seen_test" for p in order[n_val:n_val + n_test]})
    out: dict[str, list[int]] = {"train": [], "val": [], "seen_test": [], "unseen_test": []}
    for i, e in enumerate(examples):
        out["unseen_test" if e.question in unseen else part.get(e.prompt, "train")].append(i)
    if not out["train"]:
        raise BadInputError(f"{len(examples)} records leave no training answers", "raise --limit")
    return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}
