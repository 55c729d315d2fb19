"""The options of one `itictl tune` run: `TuneOptions` (objective, budget, search space, search kind,
plus the eval options that score a candidate) and their checks — all cheap, before any model work.

A dimension of the space is a comma list (`8,16,32`: a grid axis, or categorical for TPE) or a
range `LO..HI` (integers for --heads, numbers for --alpha; TPE only). α = 0 is the baseline and is
always evaluated (one trial per fold), whatever the space says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from itictl.errors import BadInputError
from itictl.evaluate.options import EvalOptions

# --objective -> the eval metric it maximises
OBJECTIVES = {"mc2": "MC2", "mc1": "MC1", "true*info": "True*Info"}
SEARCHES = ("grid", "tpe")
TUNE_DIRECTIONS = ("com", "probe", "random")
PAPER = (48, 15.0, "com")  # Li et al.'s fixed setting, reported next to the tuned one
DEFAULT_TPE_TRIALS = 20


@dataclass(frozen=True)
class Range:
    """A closed interval LO..HI of a search dimension (TPE samples inside it)."""

    lo: float
    hi: float

    def doc(self) -> dict:
        return {"lo": self.lo, "hi": self.hi}


Dim = list | Range


def parse_dim(value: str, flag: str, *, integer: bool) -> Dim:
    """'8,16,32' -> [8, 16, 32]; '8..64' -> Range(8, 64). One-line errors for anything else."""
    cast = int if integer else float
    example = "8,16,32 or 8..64" if integer else "0,5,10 or 0..30"
    text = (value or "").strip()
    try:
        if ".." in text:
            lo_s, hi_s = text.split("..", 1)
            lo, hi = cast(lo_s.strip()), cast(hi_s.strip())
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
                raise BadInputError(f"{flag} range {text!r} is empty or not finite", f"use LO..HI with LO < HI, e.g. {example}")
            return Range(lo, hi)
        items = [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        kind = "integers" if integer else "numbers"
        raise BadInputError(f"{flag} takes a comma list or a range LO..HI of {kind}, got {value!r}",
                            f"e.g. {flag} {example}") from None
    if not items:
        raise BadInputError(f"{flag} is empty", f"e.g. {flag} {example}")
    if any(not math.isfinite(v) for v in items):
        raise BadInputError(f"{flag} values must be finite, got {value!r}", f"e.g. {flag} {example}")
    return sorted(set(items))


@dataclass
class TuneOptions:
    """`eval` scores every candidate (its heads/alphas are unused; its metrics are set here)."""

    eval: EvalOptions = field(default_factory=EvalOptions)
    objective: str = "mc2"
    max_kl: float | None = None
    max_ce_increase: float | None = None
    heads: str = "8,16,32,48,64"
    alpha: str = "0,5,10,15,20,25"
    directions: list[str] = field(default_factory=lambda: ["com"])
    trials: int | None = None
    search: str = "grid"

    def validate(self) -> None:
        """Every option, before any work (fold sizes and K against the model: run_tune, next)."""
        if self.objective not in OBJECTIVES:
            raise BadInputError(f"unknown --objective {self.objective!r}", f"use one of: {', '.join(OBJECTIVES)}")
        if self.search not in SEARCHES:
            raise BadInputError(f"unknown --search {self.search!r}", "use grid or tpe")
        self._check_budget()
        bad = [d for d in self.directions if d not in TUNE_DIRECTIONS]
        if bad or not self.directions:
            raise BadInputError(f"unknown --direction {','.join(bad) or '(empty)'}", "use a comma list of com,probe,random")
        heads, alpha = self.dims()
        if (isinstance(heads, Range) and heads.lo < 1) or (isinstance(heads, list) and min(heads) < 1):
            raise BadInputError("--heads must be ≥ 1", "e.g. --heads 8,16,32 or --heads 8..64")
        if self.search == "grid" and (isinstance(heads, Range) or isinstance(alpha, Range)):
            raise BadInputError("--search grid needs comma lists, not ranges", "list the values, or use --search tpe")
        if self.trials is not None and self.search == "grid":
            raise BadInputError("--trials is for --search tpe (a grid evaluates every point)", "drop --trials")
        if self.trials is not None and self.trials < 1:
            raise BadInputError(f"--trials must be at least 1 (got {self.trials})", f"e.g. --trials {DEFAULT_TPE_TRIALS}")
        if self.objective == "true*info" and not (self.eval.judge and self.eval.info_judge):
            raise BadInputError("--objective true*info needs a truth and an info judge",
                                "pass --judge and --info-judge (openai:MODEL, hf:PATH or local)")
        if getattr(self.eval, "sigma_from", "train") == "all":
            raise BadInputError("--sigma-from all (the reference protocol's σ) reads the test fold's tuning activations; "
                                "tune never lets the test fold in", "pass --sigma-from train (also with --protocol reference)")
        self.eval = replace(self.eval, metrics=self.metrics())
        self.eval.validate()

    def _check_budget(self) -> None:
        if self.max_kl is not None and self.max_ce_increase is not None:
            raise BadInputError("--max-kl and --max-ce-increase are exclusive", "pass one budget")
        for flag, v in (("--max-kl", self.max_kl), ("--max-ce-increase", self.max_ce_increase)):
            if v is not None and (not math.isfinite(v) or v < 0):
                raise BadInputError(f"{flag} must be a finite number ≥ 0 (got {v:g})", f"e.g. {flag} 0.5")
        if self.budget() is not None and not self.eval.text:
            raise BadInputError("a budget (--max-kl / --max-ce-increase) is measured on natural text: no --text FILE",
                                "pass --text FILE, e.g. wikitext-2-raw-test.txt")

    def dims(self) -> tuple[Dim, Dim]:
        return parse_dim(self.heads, "--heads", integer=True), parse_dim(self.alpha, "--alpha", integer=False)

    def metrics(self) -> list[str]:
        """The eval metrics a trial needs: the objective's, plus CE/KL when there is natural text."""
        m = ["mc"] if self.objective in ("mc1", "mc2") else ["judge", "info"]
        return m + (["ce", "kl"] if self.eval.text else [])

    def budget(self) -> tuple[str, float] | None:
        """(metric, limit): ('kl', X) or ('ce', X: the CE increase over α = 0), or None."""
        if self.max_kl is not None:
            return "kl", float(self.max_kl)
        if self.max_ce_increase is not None:
            return "ce", float(self.max_ce_increase)
        return None

    def objective_metric(self) -> str:
        return OBJECTIVES[self.objective]

    def n_trials(self) -> int:
        return self.trials if self.trials is not None else DEFAULT_TPE_TRIALS
