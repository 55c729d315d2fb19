"""The options of one `itictl eval` run: `EvalOptions`, their checks (all of them cheap: no model,
no data, no network) and the (K, α) grid they describe.

`EvalOptions.validate()` runs before any work; the chain part of the options (model, revision,
data, folds, limits, dtype/device) becomes a pipeline.ChainSpec via `chain_spec()`, so eval builds
the same artifacts as `itictl intervene` with equal options.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from itictl.errors import AuthError, BadInputError, NotFoundError

ALL_METRICS = ("mc", "judge", "info", "bleu", "rouge", "ce", "kl")
EVAL_DATASETS = ("truthfulqa", "nq_open", "trivia_qa")
MC_STYLES = ("truthfulqa", "harness")


@dataclass
class EvalOptions:
    model: str | None = None
    heads: list[int] = field(default_factory=lambda: [48])
    alphas: list[float] = field(default_factory=lambda: [15.0])
    direction: str = "com"
    folds: int = 2
    seed: int = 42
    val_ratio: float = 0.2
    split: str | None = None  # None: the protocol's (random | contiguous)
    instruction: str = "default"
    preset: str = "qa"
    many_shot_prefix: str | None = None  # the text
    metrics: list[str] = field(default_factory=lambda: ["mc", "ce", "kl"])
    judge: str | None = None
    info_judge: str | None = None
    openai_base_url: str | None = None
    limit_questions: int | None = None
    text: str | None = None
    mc_style: str = "truthfulqa"
    eval_dataset: str = "truthfulqa"
    data_dir: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_tokens: int | None = None  # MC scoring forward size (None: 65,536 on GPU, 4,096 on CPU)
    text_samples: int = 100  # CE/KL samples (reference: 100 × 128 tokens)
    revision: str | None = None  # Hub revision of a Hub --model (in the key only when set)
    protocol: str = "itictl"  # itictl | reference: defaults of the switches below (itictl.protocol)
    val_draw: str | None = None  # seeded | stream
    backend: str | None = None  # probes: torch | sklearn
    sigma_from: str | None = None  # train | all
    tie_break: str | None = None  # lower | argsort
    mc_positions: str | None = None  # answer | reference

    def __post_init__(self) -> None:
        """Fill the switches left None from the protocol (an explicit switch wins)."""
        from itictl.protocol import as_dict, resolve

        for name, value in as_dict(resolve(self.protocol, check=False, **self.switches())).items():
            setattr(self, name, value)

    def switches(self) -> dict[str, str | None]:
        """The protocol's switches as set here (itictl.protocol.SWITCHES)."""
        from itictl.protocol import SWITCHES

        return {name: getattr(self, name) for name in SWITCHES}

    def validate(self) -> None:
        """Every option on its own (fold sizes need the question count: run_eval checks them next)."""
        from itictl.protocol import resolve

        resolve(self.protocol, **self.switches())  # one-line errors for the protocol and its switches
        self._check_grid()
        self._check_modes()
        self._check_judges()
        if self.text_samples < 1:
            raise BadInputError("--text-samples must be ≥ 1", "the reference uses 100")
        if self.limit_questions is not None and self.limit_questions < 1:
            raise BadInputError(f"--limit-questions must be at least 1 (got {self.limit_questions})",
                                "omit it for every question")
        if set(self.metrics) & {"ce", "kl"} and self.text and not Path(self.text).is_file():
            raise NotFoundError(f"text file {self.text} not found", "pass --text FILE with natural text")
        from itictl.evaluate.presets import check_instruction, check_preset

        check_preset(self.preset)
        check_instruction(self.instruction)

    def _check_grid(self) -> None:
        bad = [m for m in self.metrics if m not in ALL_METRICS]
        if bad:
            raise BadInputError(f"unknown metric(s) {', '.join(bad)}", f"use a comma list of {','.join(ALL_METRICS)}")
        if self.folds < 2:
            raise BadInputError("--folds must be at least 2", "heads are chosen on the other folds")
        if any(k < 1 for k in self.heads):
            raise BadInputError("--heads must be ≥ 1", "e.g. --heads 48 or --heads 8,16,32")
        if any(not math.isfinite(a) for a in self.alphas):
            raise BadInputError("--alpha must be finite", "e.g. --alpha 15 or --alpha 0,5,10")
        if self.direction not in ("com", "probe", "random"):
            raise BadInputError(f"unknown direction {self.direction!r}", "use com, probe or random")
        if not 0 < self.val_ratio < 1:
            raise BadInputError("--val-ratio must be in (0, 1)", "the reference uses 0.2")

    def _check_modes(self) -> None:
        if self.mc_style not in MC_STYLES:
            raise BadInputError(f"unknown --mc-style {self.mc_style!r}", "use truthfulqa or harness")
        if self.eval_dataset not in EVAL_DATASETS:
            raise BadInputError(f"unknown --eval-dataset {self.eval_dataset!r}", "use truthfulqa, nq_open or trivia_qa")
        gen = sorted(set(self.metrics) & {"judge", "info", "bleu", "rouge"})
        if self.eval_dataset != "truthfulqa" and gen:
            raise BadInputError(f"--eval-dataset {self.eval_dataset} scores MC only; {','.join(gen)} need TruthfulQA",
                                "use --metrics mc,ce,kl with a transfer set")
        if self.mc_style == "harness" and self.mc_positions != "answer":
            raise BadInputError("--mc-positions reference is TruthfulQA-code scoring, not lm-eval-harness's",
                                "pass --mc-positions answer with --mc-style harness")
        if self.mc_style == "harness" and self.preset != "qa":
            raise BadInputError("--mc-style harness uses lm-eval-harness's QA prompt", "drop --preset or use --preset qa")
        if self.mc_style == "harness" and self.eval_dataset == "truthfulqa":
            # lm-eval-harness's prompt is the QA primer + "Q: …\nA:" with no instruction: settled
            # here, before the key, so --instruction-prompt cannot split identical work over keys
            self.instruction = "none"

    def _check_judges(self) -> None:
        """Judge specs are well formed when given; an OpenAI judge that will run has its API key."""
        from itictl.judge import check_judge_spec

        for metric, spec in (("judge", self.judge), ("info", self.info_judge)):
            if spec is None:
                continue
            scheme, _ = check_judge_spec(spec)
            if scheme == "openai" and metric in self.metrics and not (
                    os.environ.get("OPENAI_API_KEY") or os.environ.get("ITICTL_OPENAI_API_KEY")):
                raise AuthError(f"OPENAI_API_KEY is not set (needed by the judge {spec})",
                                "export OPENAI_API_KEY=… (or use a local judge: --judge hf:…)")

    def chain_spec(self, device_map=None):
        """The chain part of the options (pipeline.ChainSpec): eval's folds are the probes' folds."""
        from itictl.pipeline import ChainSpec

        return ChainSpec(model=self.model, revision=self.revision, data_dir=self.data_dir,
                         limit_questions=self.limit_questions, folds=self.folds, val_ratio=self.val_ratio,
                         split=self.split, seed=self.seed, dtype=self.dtype, device=self.device,
                         device_map=device_map, protocol=self.protocol, val_draw=self.val_draw,
                         backend=self.backend, sigma_from=self.sigma_from, tie_break=self.tie_break)


def settings_of(opts: EvalOptions) -> list[tuple[int, float]]:
    """The (K, α) grid; α = 0 is the baseline (K irrelevant) and appears once."""
    out: list[tuple[int, float]] = []
    for a in opts.alphas:
        for k in opts.heads:
            s = (0, 0.0) if a == 0 else (k, float(a))
            if s not in out:
                out.append(s)
    return out


def read_prefix_file(path: str | None) -> str | None:
    """The text of --many-shot-prefix FILE (UTF-8), or None."""
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"many-shot prefix file {p} not found", "pass an existing text file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"many-shot prefix file {p} is not UTF-8 text", "save it as UTF-8") from None
