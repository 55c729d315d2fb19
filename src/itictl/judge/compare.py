"""`itictl judge compare`: two judges on the same answers — agreement, Cohen's κ, confusion counts.

Owns reading the answers to judge (an eval artifact's answers.csv, default `last-eval`, or any CSV
with `question` and `answer` columns), choosing the judged property (truth or info: --kind, else
the kind of the local judges given, else truth), and scoring both judges in one batch each.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from itictl.errors import BadInputError, NotFoundError
from itictl.judge.data import check_kind


def read_answers(store, answers: str | None = None, eval_ref: str | None = None) -> tuple[list[tuple[str, str]], str]:
    """(question, answer) pairs and where they came from."""
    if answers and eval_ref:
        raise BadInputError("--answers and --eval are exclusive", "give one source of answers")
    if answers:
        path = Path(answers).expanduser()
        if not path.is_file():
            raise NotFoundError(f"answers file {path} not found", "pass a CSV with question and answer columns")
        source = str(path)
    else:
        try:
            art = store.open(eval_ref or "last-eval", kind="eval")
        except NotFoundError:
            if eval_ref:
                raise
            raise NotFoundError("no answers to compare on: the store has no `last-eval`",
                                "run `itictl eval --metrics judge,…` first, or pass --answers CSV / --eval REF") from None
        path, source = art.file("answers.csv"), f"eval {art.key[:12]}"
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"question", "answer"} <= set(reader.fieldnames or []):
            raise BadInputError(f"{source} has no question/answer columns",
                                "use an eval's answers.csv or a CSV with question,answer headers")
        pairs = [(r["question"], r["answer"]) for r in reader]
    if not pairs:
        raise BadInputError(f"{source} has no answers", "run `itictl eval --metrics judge,…` first")
    return pairs, source


def _local_kind(store, spec: str) -> str | None:
    from itictl.judge.local import open_judge
    from itictl.judge.spec import check_judge_spec

    scheme, rest = check_judge_spec(spec)
    return open_judge(store, rest).params.get("kind") if scheme == "local" and rest else None


def judged_kind(store, specs: list[str], kind: str | None) -> str:
    """--kind, else the one kind of the given local:REF judges, else truth."""
    if kind is not None:
        return check_kind(kind)
    kinds = {k for k in (_local_kind(store, s) for s in specs) if k}
    if len(kinds) > 1:
        raise BadInputError("the two local judges judge different things (truth and info)",
                            "compare judges of one kind, or pass --kind")
    return kinds.pop() if kinds else "truth"


def run_compare(store, spec_a: str, spec_b: str, *, answers: str | None = None, eval_ref: str | None = None,
                kind: str | None = None, base_url: str | None = None, device: str = "auto", out=None) -> dict[str, Any]:
    """Score the answers with both judges -> {a, b, kind, source, n, agreement, kappa, confusion, …}."""
    import contextlib

    from itictl.judge.metrics import agreement
    from itictl.judge.spec import check_judge_spec, parse_judge

    for s in (spec_a, spec_b):
        check_judge_spec(s)  # syntax first: a bad spec fails before any work
    kind = judged_kind(store, [spec_a, spec_b], kind)
    judges = [parse_judge(s, role=kind, base_url=base_url, device=device, store=store) for s in (spec_a, spec_b)]
    pairs, source = read_answers(store, answers, eval_ref)
    scores = []
    for j in judges:
        with out.status(f"judging {len(pairs)} answers with {j.spec}") if out else contextlib.nullcontext():
            scores.append(j.score(pairs, info=kind == "info"))
    return {"a": judges[0].spec, "b": judges[1].spec, "kind": kind, "source": source, **agreement(*scores)}
