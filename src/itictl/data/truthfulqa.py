"""TruthfulQA: joining the rows of its two source files (read by data/tqa_files.py, local or
Hub) into one normalised table in multiple-choice order, its content digest, TruthfulQA's answer
conventions, and the `dataset` store artifact.

Table (docs/data.md has the details): the `generation` rows (TruthfulQA.csv) give category, type,
source and the answers, with empty pieces (from trailing ';') dropped like TruthfulQA's
`split_multi_answer` does; the `multiple_choice` rows (mc_task.json) give the targets, the
table's order (`index`) and the table's question text.

The two files are joined per question: exact text, then normalised text (Unicode NFKC, straight
quotes, collapsed whitespace), then a fuzzy match that must be the unique best (difflib ratio) and
pass a check (the CSV's best answer, closed with '.', is the MC1 true answer, or the true answers
overlap). Every join that is not exact is recorded in `TruthfulQA.join`.

`digest` = sha256 of the canonical JSON of the normalised table (questions only), so the dataset
artifact's key depends on content, never on where the files were read from.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from itictl.data.tqa_files import CSV_FILE, FIX_HINT, MC_FILE, GenRow, MCRow, Target, read_hub, read_local
from itictl.errors import BadInputError, CorruptObjectError

NAME = "truthfulqa"
SCHEMA = 1
NO_COMMENT = "I have no comment."
FUZZY_MIN_RATIO = 0.9
FUZZY_MIN_MARGIN = 0.05


# ---- TruthfulQA's own answer conventions ---------------------------------------------------------
def format_best(answer: str) -> str:
    """TruthfulQA's `format_best`: strip and end with a period."""
    a = answer.strip()
    return a if not a or a.endswith(".") else a + "."


def split_multi_answer(text: str, sep: str = ";", close: bool = True) -> list[str]:
    """TruthfulQA's `split_multi_answer`: split on ';', strip, drop empty pieces, and (close=True)
    end each answer with a period."""
    out = []
    for a in text.strip().split(sep):
        a = a.strip()
        if a:
            out.append(format_best(a) if close else a)
    return out


@dataclass(frozen=True)
class References:
    """Reference answers with TruthfulQA's conventions (closed with '.')."""

    best: str
    true: list[str]
    false: list[str]


@dataclass(frozen=True)
class Question:
    index: int  # position in the multiple_choice order
    question: str  # the multiple_choice text
    category: str
    type: str
    best_answer: str
    correct_answers: list[str]  # generation config split (';', stripped, no empties), not closed
    incorrect_answers: list[str]
    mc1_targets: list[Target]  # (text, label) in mc_task.json order
    mc2_targets: list[Target]
    source: str

    def references(self, generative: bool = False) -> References:
        """TruthfulQA's references: best = format_best(best_answer); true/false = the answers
        closed with '.'; `generative=True` appends "I have no comment." to the true answers when
        missing, as TruthfulQA does for its generation metrics (BLEU/ROUGE/BLEURT/judge), never for MC."""
        true = [format_best(a) for a in self.correct_answers]
        if generative and NO_COMMENT not in true:
            true.append(NO_COMMENT)
        return References(format_best(self.best_answer), true, [format_best(a) for a in self.incorrect_answers])

    def to_doc(self) -> dict[str, Any]:
        return {"index": self.index, "question": self.question, "category": self.category, "type": self.type,
                "best_answer": self.best_answer, "correct_answers": list(self.correct_answers),
                "incorrect_answers": list(self.incorrect_answers),
                "mc1_targets": [[t, int(l)] for t, l in self.mc1_targets],
                "mc2_targets": [[t, int(l)] for t, l in self.mc2_targets], "source": self.source}

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> "Question":
        return cls(index=int(d["index"]), question=d["question"], category=d["category"], type=d["type"],
                   best_answer=d["best_answer"], correct_answers=list(d["correct_answers"]),
                   incorrect_answers=list(d["incorrect_answers"]),
                   mc1_targets=[(t, int(l)) for t, l in d["mc1_targets"]],
                   mc2_targets=[(t, int(l)) for t, l in d["mc2_targets"]], source=d["source"])


@dataclass
class TruthfulQA:
    questions: list[Question]
    digest: str
    origin: str = ""  # where it was read from (not part of the digest)
    join: list[dict[str, Any]] = field(default_factory=list)  # non-exact joins

    def __len__(self) -> int:
        return len(self.questions)

    def table_doc(self) -> dict[str, Any]:
        return table_doc(self.questions)


def table_doc(questions: Sequence[Question]) -> dict[str, Any]:
    return {"name": NAME, "schema": SCHEMA, "questions": [q.to_doc() for q in questions]}


def table_digest(questions: Sequence[Question]) -> str:
    from itictl.store.keys import canonical_json

    return hashlib.sha256(canonical_json(table_doc(questions)).encode("utf-8")).hexdigest()


# ---- joining -------------------------------------------------------------------------------------
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00a0": " "})


def normalise_text(s: str) -> str:
    """Join key: NFKC, straight quotes, collapsed whitespace, stripped."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", s).translate(_QUOTES)).strip()


def _join_check(mc: MCRow, gen: GenRow) -> bool:
    """A non-exact join must agree on answers: MC1's true answer is the CSV's best answer, or the
    MC2 true answers share one with the CSV's correct answers (both closed with '.')."""
    mc1_true = {normalise_text(t) for t, l in mc.mc1_targets if l == 1}
    if normalise_text(format_best(gen.best_answer)) in mc1_true:
        return True
    mc2_true = {normalise_text(t) for t, l in mc.mc2_targets if l == 1}
    return bool(mc2_true & {normalise_text(format_best(a)) for a in gen.correct_answers if a})


def join_rows(gen: Sequence[GenRow], mc: Sequence[MCRow]) -> tuple[list[int], list[dict[str, Any]]]:
    """For each MC row, the index of its generation row; plus a report of the non-exact joins."""
    match: list[int | None] = [None] * len(mc)
    used: set[int] = set()
    by_text: dict[str, list[int]] = {}
    for j, g in enumerate(gen):
        by_text.setdefault(g.question, []).append(j)
    for i, m in enumerate(mc):  # pass 1: exact
        for j in by_text.get(m.question, []):
            if j not in used:
                match[i] = j
                used.add(j)
                break
    report: list[dict[str, Any]] = []
    by_norm: dict[str, list[int]] = {}
    for j, g in enumerate(gen):
        if j not in used:
            by_norm.setdefault(normalise_text(g.question), []).append(j)
    for i, m in enumerate(mc):  # pass 2: normalised text, unique among the unused rows
        if match[i] is not None:
            continue
        cands = [j for j in by_norm.get(normalise_text(m.question), []) if j not in used]
        if len(cands) == 1 and _join_check(m, gen[cands[0]]):
            match[i] = cands[0]
            used.add(cands[0])
            report.append({"index": i, "how": "normalised", "mc_question": m.question,
                           "csv_question": gen[cands[0]].question, "ratio": 1.0})
    for i, m in enumerate(mc):  # pass 3: fuzzy, unique best with a margin, answers must agree
        if match[i] is not None:
            continue
        key = normalise_text(m.question)
        scored = sorted(((difflib.SequenceMatcher(None, key, normalise_text(gen[j].question)).ratio(), j)
                         for j in range(len(gen)) if j not in used), reverse=True)
        if not scored:
            break
        best, j = scored[0]
        second = scored[1][0] if len(scored) > 1 else 0.0
        if best >= FUZZY_MIN_RATIO and best - second >= FUZZY_MIN_MARGIN and _join_check(m, gen[j]):
            match[i] = j
            used.add(j)
            report.append({"index": i, "how": "fuzzy", "mc_question": m.question,
                           "csv_question": gen[j].question, "ratio": round(best, 4)})
    missing = [i for i, j in enumerate(match) if j is None]
    if missing:
        i = missing[0]
        raise BadInputError(f"{len(missing)} question(s) of {MC_FILE} have no match in {CSV_FILE}, "
                            f"first: #{i} {mc[i].question[:60]!r}", FIX_HINT)
    extra = [j for j in range(len(gen)) if j not in used]
    if extra:
        raise BadInputError(f"{len(extra)} question(s) of {CSV_FILE} are not in {MC_FILE}, "
                            f"first: {gen[extra[0]].question[:60]!r}", FIX_HINT)
    return [int(j) for j in match], report  # type: ignore[arg-type]


def build_table(gen: Sequence[GenRow], mc: Sequence[MCRow], origin: str) -> TruthfulQA:
    match, report = join_rows(gen, mc)
    questions = []
    for i, (m, j) in enumerate(zip(mc, match)):
        g = gen[j]
        questions.append(Question(
            index=i, question=m.question, category=g.category.strip(), type=g.type.strip(),
            best_answer=g.best_answer.strip(),
            correct_answers=[a for a in (x.strip() for x in g.correct_answers) if a],
            incorrect_answers=[a for a in (x.strip() for x in g.incorrect_answers) if a],
            mc1_targets=list(m.mc1_targets), mc2_targets=list(m.mc2_targets), source=g.source.strip()))
    return TruthfulQA(questions, table_digest(questions), origin=origin, join=report)


# ---- loading -------------------------------------------------------------------------------------
_TABLES: dict[tuple, TruthfulQA] = {}  # local tables read by this process, by path and file (size, mtime, inode)


def _files_state(data_dir: Path | str) -> tuple | None:
    d = Path(data_dir).expanduser()
    try:
        return (str(d.resolve()),) + tuple((st.st_size, st.st_mtime_ns, st.st_ino)
                                           for st in ((d / n).stat() for n in (CSV_FILE, MC_FILE)))
    except OSError:
        return None  # read_local reports what is missing


def load_truthfulqa(data_dir: Path | str | None) -> TruthfulQA:
    """The normalised table from `data_dir` (TruthfulQA.csv + mc_task.json), or from the Hub
    dataset truthfulqa/truthful_qa (configs generation + multiple_choice) when data_dir is None.
    A local folder is parsed once per process while its two files are unchanged (an eval reads it
    from several steps); callers treat the table as read-only."""
    if data_dir is None:
        gen, mc, origin = read_hub()
        return build_table(gen, mc, origin=origin)
    state = _files_state(data_dir)
    if state is not None and state in _TABLES:
        return _TABLES[state]
    gen, mc, origin = read_local(data_dir)
    tqa = build_table(gen, mc, origin=origin)
    if state is not None and _files_state(data_dir) == state:  # unchanged while it was read
        _TABLES[state] = tqa
    return tqa


# ---- store artifact ------------------------------------------------------------------------------
TABLE_FILE = "table.json"


def ensure_dataset(store, data_dir: Path | str | None):
    """The `dataset` artifact of the normalised table (key from its digest, not its path)."""
    tqa = load_truthfulqa(data_dir)

    def build(ctx) -> None:
        (ctx.out / TABLE_FILE).write_text(json.dumps({**tqa.table_doc(), "digest": tqa.digest}, ensure_ascii=False),
                                          encoding="utf-8")
        ctx.meta.update({"origin": tqa.origin, "n_questions": len(tqa.questions),
                         "n_mc2_choices": sum(len(q.mc2_targets) for q in tqa.questions), "join": tqa.join})

    art, _cached = store.produce("dataset", {"name": NAME, "digest": tqa.digest}, {}, build, schema_version=SCHEMA)
    return art


_READ: dict[tuple, TruthfulQA] = {}  # (object folder, key, table.json's size/mtime/inode) -> digest-checked table


def read_dataset(art) -> TruthfulQA:
    """The table of a `dataset` artifact, digest-checked (once per process: objects are immutable;
    callers treat the table as read-only)."""
    if art.kind != "dataset":
        raise BadInputError(f"{art.key[:12]} is a {art.kind} object, not a dataset", "pass a dataset ref")
    try:
        st = (art.path / TABLE_FILE).stat()
    except OSError:
        return _read_table(art)  # reports the missing file
    memo = (str(art.path), art.key, st.st_size, st.st_mtime_ns, st.st_ino)
    if memo not in _READ:
        _READ[memo] = _read_table(art)
    return _READ[memo]


def _read_table(art) -> TruthfulQA:
    doc = art.read_json(TABLE_FILE)
    questions = [Question.from_doc(d) for d in doc["questions"]]
    digest = table_digest(questions)
    if digest != art.params.get("digest"):
        raise CorruptObjectError(f"dataset {art.key[:12]}: table digest mismatch",
                                 f"run `itictl store rm {art.key[:12]}` and rerun")
    return TruthfulQA(questions, digest, origin=art.meta.get("origin", ""), join=list(art.meta.get("join", [])))


def iter_answers(q: Question) -> Iterable[tuple[str, int]]:
    """The generation split's answers of a question: correct (label 1) then incorrect (label 0)."""
    for a in q.correct_answers:
        yield a, 1
    for a in q.incorrect_answers:
        yield a, 0
