"""What a report is made from (`ReportSource`) and how a ref becomes one.

The seam between artifact kinds and the report: `load_source(store, ref, setting)` resolves the ref
and hands the artifact to the reader registered for its kind in `READERS` (`eval`:
report/eval_source.py; `tune`: report/tune_source.py), which fills one `ReportSource`.
Everything is read and checked here, before anything is drawn or written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from itictl.errors import BadInputError

DEFAULT_REF = "last-eval"


@dataclass
class ReportSource:
    """The numbers behind one report, read from the store (no model work). Settings are named
    (`name`); per-question rows carry the name of their setting in `setting`."""

    key: str
    kind: str
    ref: str
    params: dict[str, Any]
    settings: list[dict[str, Any]]  # name, heads, alpha, mean, ci95, delta_vs_alpha0 (the summary table)
    curves: list[dict[str, Any]] = field(default_factory=list)  # heads, alpha, mean (ci95): the plots against α
    per_question: list[dict[str, Any]] = field(default_factory=list)  # per-question rows, typed, with `setting`
    questions: dict[int, str] = field(default_factory=dict)  # question_index -> question text
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it was not computed
    judges: dict[str, str] = field(default_factory=dict)
    uncertainty: dict[str, Any] = field(default_factory=dict)
    base: str | None = None  # name of the α = 0 setting
    focus: str | None = None  # name of the steered setting the per-question sections show
    probes_key: str | None = None  # fold 0's probes of the focus setting (heatmap)
    intervention_key: str | None = None  # fold 0's intervention of the focus setting (marked heads)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (title, data URI) the artifact carries
    created: str = ""
    version: str = ""


Reader = Callable[[Any, Any, str, "tuple[int, float] | None"], ReportSource]


def _read_eval(store, art, ref: str, setting):
    from itictl.report.eval_source import read_eval

    return read_eval(store, art, ref, setting)


def _read_tune(store, art, ref: str, setting):
    from itictl.report.tune_source import read_tune

    return read_tune(store, art, ref, setting)


# kind -> reader(store, artifact, ref, setting)
READERS: dict[str, Reader] = {"eval": _read_eval, "tune": _read_tune}


def setting_name(heads: int, alpha: float) -> str:
    return "baseline (α = 0)" if alpha == 0 else f"K={heads}, α={alpha:g}"


def load_source(store, ref: str | None, setting: tuple[int, float] | None = None) -> ReportSource:
    """Resolve `ref` (default last-eval) and read its artifact; a kind without a reader is a
    one-line BadInputError (nothing is written)."""
    ref = ref or DEFAULT_REF
    art = store.open(ref)
    reader = READERS.get(art.kind)
    if reader is None:
        kinds = ", ".join(sorted(READERS))
        raise BadInputError(f"ref {ref!r} is a {art.kind} object; a report is made from: {kinds}",
                            "pass an eval or tune ref (e.g. last-tune), or omit REF for last-eval")
    return reader(store, art, ref, setting)


def parse_setting(text: str | None) -> tuple[int, float] | None:
    """'K,ALPHA' (e.g. '16,15') -> (16, 15.0); None stays None."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        k, a = int(parts[0]), float(parts[1])
        if len(parts) != 2 or k < 1 or a != a or a in (float("inf"), float("-inf")):
            raise ValueError
    except (ValueError, IndexError):
        raise BadInputError(f"invalid --setting {text!r}", "write K,ALPHA with K ≥ 1, e.g. --setting 16,15") from None
    return k, a
