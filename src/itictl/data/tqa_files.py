"""TruthfulQA's two source files, read into raw rows: locally (TruthfulQA.csv + mc_task.json in a
directory) or from the Hub dataset truthfulqa/truthful_qa (its generation and multiple_choice
parquet files). data/truthfulqa.py joins the rows into the normalised table.

Sources (docs/data.md has the details):
- `generation` = TruthfulQA.csv (Type, Category, Question, Best Answer, Correct Answers,
  Incorrect Answers, Source); answers are split like the Hub builder does (split on ';', strip),
  and rows without correct or incorrect answers are skipped like the Hub builder does.
- `multiple_choice` = mc_task.json ({question, mc1_targets {answer: 0|1}, mc2_targets}), or the
  Hub's {choices, labels} targets.

Every malformed input is a BadInputError naming the file and the fix (NotFoundError for a missing one).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itictl.errors import BadInputError, NotFoundError

CSV_FILE = "TruthfulQA.csv"
MC_FILE = "mc_task.json"
HUB_REPO = "truthfulqa/truthful_qa"
HUB_FILES = {"generation": "generation/validation-00000-of-00001.parquet",
             "multiple_choice": "multiple_choice/validation-00000-of-00001.parquet"}
CSV_COLUMNS = ("Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source")
FIX_HINT = "pass --data DIR with TruthfulQA.csv and mc_task.json from the same TruthfulQA release"

Target = tuple[str, int]  # (answer text, label 0|1)


@dataclass
class GenRow:
    """A row of the generation split (answers split, not closed)."""

    type: str
    category: str
    question: str
    best_answer: str
    correct_answers: list[str]
    incorrect_answers: list[str]
    source: str


@dataclass
class MCRow:
    """A question of the multiple_choice split."""

    question: str
    mc1_targets: list[Target]
    mc2_targets: list[Target]


def read_local(data_dir: Path | str) -> tuple[list[GenRow], list[MCRow], str]:
    """The rows of `data_dir`'s TruthfulQA.csv and mc_task.json, and the origin ('local:DIR')."""
    d = Path(data_dir).expanduser()
    if not d.exists():
        raise NotFoundError(f"data directory {d} does not exist", FIX_HINT)
    if not d.is_dir():
        raise BadInputError(f"--data {d} is a file, not a directory", FIX_HINT)
    for name in (CSV_FILE, MC_FILE):
        if not (d / name).is_file():
            raise NotFoundError(f"{name} not found in {d}", FIX_HINT)
    return _read_csv(d / CSV_FILE), _read_mc(d / MC_FILE), f"local:{d.resolve()}"


def read_hub() -> tuple[list[GenRow], list[MCRow], str]:
    """The rows of the Hub dataset's generation and multiple_choice configs, and the origin."""
    gen_path, mc_path = _hub_config_file("generation"), _hub_config_file("multiple_choice")
    gen_rows = []
    for i, r in enumerate(_read_parquet(gen_path, "the generation config")):
        try:
            gen_rows.append(GenRow(r["type"], r["category"], r["question"], r["best_answer"],
                                   list(r["correct_answers"]), list(r["incorrect_answers"]), r["source"]))
        except (KeyError, TypeError):
            raise BadInputError(f"Hub generation config row {i} lacks a column", "pass --data DIR") from None
    mc_rows = _mc_rows(_read_parquet(mc_path, "the multiple_choice config"), "multiple_choice config")
    return gen_rows, mc_rows, f"hub:{HUB_REPO}"


# ---- local files ---------------------------------------------------------------------------------
def _hf_split(text: str) -> list[str]:
    """The Hub builder's `_split_csv_list`: strip, split on ';', strip each (keeps empties)."""
    return [p.strip() for p in text.strip().split(";")]


def _read_csv(path: Path) -> list[GenRow]:
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
            rows.append(GenRow(rec["Type"], rec["Category"], rec["Question"], rec["Best Answer"],
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


def _read_mc(path: Path) -> list[MCRow]:
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


def _mc_rows(doc: Any, name: str) -> list[MCRow]:
    if not isinstance(doc, list) or not doc:
        raise BadInputError(f"{name} must be a non-empty JSON list of questions", FIX_HINT)
    rows = []
    for i, rec in enumerate(doc):
        if not isinstance(rec, dict) or not isinstance(rec.get("question"), str) \
                or "mc1_targets" not in rec or "mc2_targets" not in rec:
            raise BadInputError(f"{name} item {i} lacks question / mc1_targets / mc2_targets", FIX_HINT)
        rows.append(MCRow(rec["question"], _targets(rec["mc1_targets"], f"{name} item {i} mc1_targets"),
                          _targets(rec["mc2_targets"], f"{name} item {i} mc2_targets")))
    return rows


# ---- Hub files -----------------------------------------------------------------------------------
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
