"""TruthfulQA: reading the two source files (local or Hub), joining them into one normalised
table in multiple-choice order, its content digest, and the `dataset` store artifact.

Sources (docs/data.md has the details):
- `generation` = TruthfulQA.csv (Type, Category, Question, Best Answer, Correct Answers,
  Incorrect Answers, Source); answers are split like the Hub builder does (split on ';', strip),
  rows without correct or incorrect answers are skipped like the Hub builder does, and empty
  pieces (from trailing ';') are dropped like TruthfulQA's `split_multi_answer` does.
- `multiple_choice` = mc_task.json ({question, mc1_targets {answer: 0|1}, mc2_targets}), whose
  order is the table's order (`index`) and whose question text is the table's question text.

The two files are joined per question: exact text, then normalised text (Unicode NFKC, straight
quotes, collapsed whitespace), then a fuzzy match that must be the unique best (difflib ratio) and
pass a check (the CSV's best answer, closed with '.', is the MC1 true answer, or the true answers
overlap). Every join that is not exact is recorded in `TruthfulQA.join`.

`digest` = sha256 of the canonical JSON of the normalised table (questions only), so the dataset
artifact's key depends on content, never on where the files were read from.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from itictl.errors import BadInputError, CorruptObjectError, NotFoundError

NAME = "truthfulqa"
SCHEMA = 1
CSV_FILE = "TruthfulQA.csv"
MC_FILE = "mc_task.json"
HUB_REPO = "truthfulqa/truthful_qa"
HUB_FILES = {"generation": "generation/validation-00000-of-00001.parquet",
             "multiple_choice": "multiple_choice/validation-00000-of-00001.parquet"}
CSV_COLUMNS = ("Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source")
NO_COMMENT = "I have no comment."
FUZZY_MIN_RATIO = 0.9
FUZZY_MIN_MARGIN = 0.05
FIX_HINT = "pass --data DIR with TruthfulQA.csv and mc_task.json from the same TruthfulQA release"

Target = tuple[str, int]


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


# ---- raw rows ------------------------------------------------------------------------------------
@dataclass
class _GenRow:
    type: str
    category: str
    question: str
    best_answer: str
    correct_answers: list[str]
    incorrect_answers: list[str]
    source: str


@dataclass
class _MCRow:
    question: str
    mc1_targets: list[Target]
    mc2_targets: list[Target]


def _hf_split(text: str) -> list[str]:
    """The Hub builder's `_split_csv_list`: strip, split on ';', strip each (keeps empties)."""
    return [p.strip() for p in text.strip().split(";")]


def _read_csv(path: Path) -> list[_GenRow]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise NotFoundError(f"{path.name} not found in {path.parent}", FIX_HINT) from None
    except UnicodeDecodeError as e:
        raise BadInputError(f"{path} is not UTF-8 text (byte {e.start})", "use the CSV from the TruthfulQA repository") from None
    except OSError as e:
        raise BadInputError(f"cannot read {path}: {e.strerror}", FIX_HINT) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    cols = reader.fieldnames or []
    missing = [c for c in CSV_COLUMNS if c not in cols]
    if missing:
        raise BadInputError(f"{path} lacks column(s) {', '.join(missing)} (has: {', '.join(cols) or 'nothing'})",
                            f"the header must be {','.join(CSV_COLUMNS)}")
    rows = []
    try:
        for rec in reader:
            if None in rec or any(rec.get(c) is None for c in CSV_COLUMNS):
                raise BadInputError(f"{path} line {reader.line_num}: wrong number of fields",
                                    "quote fields that contain commas")
            if not rec["Correct Answers"] or not rec["Incorrect Answers"]:
                continue  # the Hub builder skips rows without references
            rows.append(_GenRow(rec["Type"], rec["Category"], rec["Question"], rec["Best Answer"],
                                _hf_split(rec["Correct Answers"]), _hf_split(rec["Incorrect Answers"]), rec["Source"]))
    except csv.Error as e:
        raise BadInputError(f"{path} line {reader.line_num}: {e}", "fix the CSV quoting") from None
    if not rows:
        raise BadInputError(f"{path} has no questions", FIX_HINT)
    return rows


def _targets(obj: Any, where: str) -> list[Target]:
    """{answer: 0|1} (mc_task.json) or {choices: [...], labels: [...]} (Hub) -> [(text, label)]."""
    if isinstance(obj, dict) and set(obj) == {"choices", "labels"}:
        pairs = list(zip(_as_list(obj["choices"]), _as_list(obj["labels"])))
        if len(_as_list(obj["choices"])) != len(_as_list(obj["labels"])):
            raise BadInputError(f"{where}: choices and labels differ in length", FIX_HINT)
    elif isinstance(obj, dict):
        pairs = list(obj.items())
    else:
        raise BadInputError(f"{where} is not an object of answer: label", FIX_HINT)
    out = []
    for text, label in pairs:
        if not isinstance(text, str) or label not in (0, 1):
            raise BadInputError(f"{where}: bad entry {str(text)[:40]!r}: {label!r} (labels must be 0 or 1)", FIX_HINT)
        out.append((text, int(label)))
    if not out:
        raise BadInputError(f"{where} is empty", FIX_HINT)
    return out


def _as_list(x: Any) -> list:
    return x.tolist() if hasattr(x, "tolist") else list(x)


def _read_mc(path: Path) -> list[_MCRow]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"{path.name} not found in {path.parent}", FIX_HINT) from None
    except UnicodeDecodeError:
        raise BadInputError(f"{path} is not UTF-8 text", FIX_HINT) from None
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path} is not valid JSON (line {e.lineno}: {e.msg})", FIX_HINT) from None
    except OSError as e:
        raise BadInputError(f"cannot read {path}: {e.strerror}", FIX_HINT) from None
    return _mc_rows(doc, path.name)


def _mc_rows(doc: Any, name: str) -> list[_MCRow]:
    if not isinstance(doc, list) or not doc:
        raise BadInputError(f"{name} must be a non-empty JSON list of questions", FIX_HINT)
    rows = []
    for i, rec in enumerate(doc):
        if not isinstance(rec, dict) or not isinstance(rec.get("question"), str) \
                or "mc1_targets" not in rec or "mc2_targets" not in rec:
            raise BadInputError(f"{name} item {i} lacks question / mc1_targets / mc2_targets", FIX_HINT)
        rows.append(_MCRow(rec["question"], _targets(rec["mc1_targets"], f"{name} item {i} mc1_targets"),
                           _targets(rec["mc2_targets"], f"{name} item {i} mc2_targets")))
    return rows


# ---- joining -------------------------------------------------------------------------------------
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00a0": " "})


def normalise_text(s: str) -> str:
    """Join key: NFKC, straight quotes, collapsed whitespace, stripped."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", s).translate(_QUOTES)).strip()


def _join_check(mc: _MCRow, gen: _GenRow) -> bool:
    """A non-exact join must agree on answers: MC1's true answer is the CSV's best answer, or the
    MC2 true answers share one with the CSV's correct answers (both closed with '.')."""
    mc1_true = {normalise_text(t) for t, l in mc.mc1_targets if l == 1}
    if normalise_text(format_best(gen.best_answer)) in mc1_true:
        return True
    mc2_true = {normalise_text(t) for t, l in mc.mc2_targets if l == 1}
    return bool(mc2_true & {normalise_text(format_best(a)) for a in gen.correct_answers if a})


def join_rows(gen: Sequence[_GenRow], mc: Sequence[_MCRow]) -> tuple[list[int], list[dict[str, Any]]]:
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


def build_table(gen: Sequence[_GenRow], mc: Sequence[_MCRow], origin: str) -> TruthfulQA:
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
def load_truthfulqa(data_dir: Path | str | None) -> TruthfulQA:
    """The normalised table from `data_dir` (TruthfulQA.csv + mc_task.json), or from the Hub
    dataset truthfulqa/truthful_qa (configs generation + multiple_choice) when data_dir is None."""
    if data_dir is None:
        return _load_hub()
    d = Path(data_dir).expanduser()
    if not d.exists():
        raise NotFoundError(f"data directory {d} does not exist", FIX_HINT)
    if not d.is_dir():
        raise BadInputError(f"--data {d} is a file, not a directory", FIX_HINT)
    for name in (CSV_FILE, MC_FILE):
        if not (d / name).is_file():
            raise NotFoundError(f"{name} not found in {d}", FIX_HINT)
    return build_table(_read_csv(d / CSV_FILE), _read_mc(d / MC_FILE), origin=f"local:{d.resolve()}")


def _read_parquet(path: Path, what: str) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BadInputError(f"reading {what} from the Hub needs pyarrow",
                            "pip install pyarrow, or pass --data DIR") from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # noqa: BLE001 - any parse failure is bad input
        raise BadInputError(f"cannot read {what} ({path.name}): {type(e).__name__}",
                            "delete it from the Hugging Face cache and retry, or pass --data DIR") from None


def _hub_config_file(config: str) -> Path:
    """The config's validation parquet: the usual file name, else whatever the repo lists."""
    from itictl.data.hub import hub_download, hub_list

    try:
        return hub_download(HUB_REPO, HUB_FILES[config])
    except NotFoundError:
        found = [f for f in hub_list(HUB_REPO) if f.startswith(config + "/") and f.endswith(".parquet")]
        found = [f for f in found if "validation" in f] or found
        if not found:
            raise NotFoundError(f"Hub dataset {HUB_REPO} has no {config} parquet file", FIX_HINT) from None
        return hub_download(HUB_REPO, sorted(found)[0])


def _load_hub() -> TruthfulQA:
    gen_path, mc_path = _hub_config_file("generation"), _hub_config_file("multiple_choice")
    gen_rows = []
    for i, r in enumerate(_read_parquet(gen_path, "the generation config")):
        try:
            gen_rows.append(_GenRow(r["type"], r["category"], r["question"], r["best_answer"],
                                    list(r["correct_answers"]), list(r["incorrect_answers"]), r["source"]))
        except (KeyError, TypeError):
            raise BadInputError(f"Hub generation config row {i} lacks a column", "pass --data DIR") from None
    mc_rows = _mc_rows(_read_parquet(mc_path, "the multiple_choice config"), "multiple_choice config")
    return build_table(gen_rows, mc_rows, origin=f"hub:{HUB_REPO}")


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


def read_dataset(art) -> TruthfulQA:
    """The table of a `dataset` artifact, digest-checked."""
    if art.kind != "dataset":
        raise BadInputError(f"{art.key[:12]} is a {art.kind} object, not a dataset", "pass a dataset ref")
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
