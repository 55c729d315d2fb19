"""Transfer sets: the reference's modified NQ-open and TriviaQA validation sets.

Hub datasets OamPatel/iti_nq_open_val and OamPatel/iti_trivia_qa_val (validation split) with
columns `question`, `answer` and `false_answer` (honest_llama utils.py load_nq / load_triviaqa):
NQ's `answer` is a list of strings; TriviaQA's is a record whose `aliases` are the true answers.
A local file (.json list or {"validation": [...]}, .jsonl, .parquet, .csv) with the same columns
works too; in a CSV, `answer` may be a JSON list / record or a single string.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itictl.errors import BadInputError, NotFoundError

HUB_REPOS = {"nq_open": "OamPatel/iti_nq_open_val", "trivia_qa": "OamPatel/iti_trivia_qa_val"}
COLUMNS = ("question", "answer", "false_answer")
EXTS = (".parquet", ".jsonl", ".json", ".csv")


@dataclass(frozen=True)
class TransferItem:
    question: str
    answers: list[str]  # the true answers (TriviaQA: the aliases)
    false_answer: str


def _answers(x: Any, where: str) -> list[str]:
    if isinstance(x, dict):
        x = x.get("aliases")
        if x is None:
            raise BadInputError(f"{where}: answer record has no 'aliases'", "use the reference's transfer files")
    if isinstance(x, str):
        x = [x]
    if hasattr(x, "tolist"):
        x = x.tolist()
    if not isinstance(x, list) or not x or not all(isinstance(a, str) for a in x):
        raise BadInputError(f"{where}: answer must be a non-empty list of strings", "use the reference's transfer files")
    return list(x)


def _items(records: list[Any], name: str) -> list[TransferItem]:
    if not records:
        raise BadInputError(f"{name} has no rows", "use the reference's transfer files")
    out = []
    for i, r in enumerate(records):
        if not isinstance(r, dict) or any(c not in r for c in COLUMNS):
            have = ", ".join(map(str, r)) if isinstance(r, dict) else type(r).__name__
            missing = ", ".join(c for c in COLUMNS if not isinstance(r, dict) or c not in r)
            raise BadInputError(f"{name} row {i} lacks column(s) {missing} "
                                f"(has: {have})", "the columns must be question, answer, false_answer")
        if not isinstance(r["question"], str) or not isinstance(r["false_answer"], str):
            raise BadInputError(f"{name} row {i}: question and false_answer must be strings", "fix the file")
        out.append(TransferItem(r["question"], _answers(r["answer"], f"{name} row {i}"), r["false_answer"]))
    return out


def _csv_answer(cell: str) -> Any:
    s = cell.strip()
    if s[:1] in "[{":
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            pass
    return s


def read_transfer_file(path: Path) -> list[TransferItem]:
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"transfer file {path} not found", "pass a .json, .jsonl, .parquet or .csv file")
    ext = "".join(path.suffixes[-1:]).lower()
    name = path.name
    try:
        if ext == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise BadInputError(f"reading {name} needs pyarrow", "pip install pyarrow, or convert it to .jsonl") from None
            try:
                records = pq.read_table(path).to_pylist()
            except Exception as e:  # noqa: BLE001
                raise BadInputError(f"{name} is not a readable parquet file ({type(e).__name__})",
                                    "fix or re-download it") from None
        elif ext == ".jsonl":
            records = []
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise BadInputError(f"{name} line {n} is not JSON ({e.msg})", "one JSON object per line") from None
        elif ext == ".json":
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise BadInputError(f"{name} is not valid JSON (line {e.lineno}: {e.msg})", "fix the file") from None
            records = doc.get("validation", doc.get("data")) if isinstance(doc, dict) else doc
            if not isinstance(records, list):
                raise BadInputError(f"{name} must hold a list of rows (or {{\"validation\": [...]}})", "fix the file")
        elif ext == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as f:
                records = [{**r, "answer": _csv_answer(r["answer"]) if r.get("answer") is not None else None}
                           for r in csv.DictReader(f)]
        else:
            raise BadInputError(f"unsupported transfer file type {name}", f"use one of: {', '.join(EXTS)}")
    except UnicodeDecodeError:
        raise BadInputError(f"{name} is not UTF-8 text", "fix the file") from None
    except csv.Error as e:
        raise BadInputError(f"{name}: {e}", "fix the CSV quoting") from None
    return _items(records, name)


def _pick_hub_file(files: list[str], repo: str) -> str:
    data = [f for f in files if f.lower().endswith(EXTS) and not f.startswith(".")]
    val = [f for f in data if "validation" in f.lower()] or data
    if not val:
        raise NotFoundError(f"Hub dataset {repo} has no data file ({', '.join(EXTS)})", "pass a local file instead")
    # prefer parquet, then jsonl/json/csv; then the first by name
    return sorted(val, key=lambda f: (EXTS.index(next(e for e in EXTS if f.lower().endswith(e))), f))[0]


def load_transfer(name: str, path: Path | str | None = None) -> list[TransferItem]:
    """A transfer set from `path` or, when None, from the Hub (validation split)."""
    if name not in HUB_REPOS:
        raise BadInputError(f"unknown transfer set {name!r}", f"use one of: {', '.join(HUB_REPOS)}")
    if path is not None:
        return read_transfer_file(Path(path).expanduser())
    from itictl.data.hub import hub_download, hub_list

    repo = HUB_REPOS[name]
    hint = "pass a local copy of the set (.json/.jsonl/.parquet/.csv)"
    return read_transfer_file(hub_download(repo, _pick_hub_file(hub_list(repo, hint=hint), repo), hint=hint))
