"""One candidate evaluation = one `tune-trial` artifact: a setting scored on one part ('val' or
'test') of one outer fold.

Owns `Scorer` (the loaded model, made only when a trial is not in the store, and one
evaluate.evaluator.Evaluator per (fold, part) over exactly that part's questions) and
`Scorer.trial(fold, part, setting) -> Trial`. A trial's key is the sha256 of its kind, params (part,
fold, K, α, direction and everything of eval that changes a score: instruction, preset, prefix,
MC style, metrics, judge identities, natural text digest and sample count, seed, dtype) and parents
(model, dataset, the fold's probes — whose probes.json names the fold's val/test questions — and
the intervention for α ≠ 0), so repeated, extended or interrupted tunes reuse every finished trial.
The Evaluator of a part holds only that part's questions: scoring validation questions never
touches a test question, not even in the α = 0 pass.

Payload: trial.json {part, fold, setting, questions, metrics (mean over the part's questions; CE/KL
over the text samples), rows (per question, evaluate's per_question columns), samples (CE/KL per
text sample)}.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itictl.pipeline import Setting
from itictl.tune.space import BASELINE

TRIAL_KIND = "tune-trial"
TRIAL_STEP_VERSION = 1
PARTS = ("val", "test")


@dataclass
class Fold:
    """One outer fold: its probes (trained on the fold's training questions) and question ids."""

    index: int
    probes: Any
    ids: dict[str, list[int]]  # 'train', 'val', 'test' (probes.json "questions")


@dataclass
class Trial:
    fold: int
    part: str
    setting: Setting
    key: str
    cached: bool
    doc: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.doc["metrics"]


def eval_params(opts, judges: dict, text_sha256: str | None) -> dict[str, Any]:
    """The eval options that change a trial's scores (no paths, devices or secrets)."""
    e = opts.eval
    prefix = hashlib.sha256(e.many_shot_prefix.encode()).hexdigest() if e.many_shot_prefix else None
    return {"instruction": e.instruction, "preset": e.preset, "many_shot_prefix_sha256": prefix,
            "mc_style": e.mc_style, "metrics": sorted(set(e.metrics)), "seed": e.seed, "dtype": e.dtype,
            "judge": judges["truth"].identity if "truth" in judges else None,
            "info_judge": judges["info"].identity if "info" in judges else None,
            "text_sha256": text_sha256, "text_samples": e.text_samples if text_sha256 else None,
            **({"mc_positions": e.mc_positions} if getattr(e, "mc_positions", "answer") not in (None, "answer") else {})}


@dataclass
class Scorer:
    """Builds or reuses trial artifacts; loads the model on the first trial that needs it."""

    store: Any
    opts: Any  # TuneOptions
    model_art: Any
    dataset_key: str
    questions: list  # the dataset's questions (index == position)
    judges: dict[str, Any]
    params: dict[str, Any]  # eval_params(...)
    _lm: Any = None
    _samples: Any = None
    _ev: tuple[tuple[int, str], Any] | None = None

    def trial(self, fold: Fold, part: str, setting: Setting, *, intervention=None) -> Trial:
        """The trial of `setting` on `part` of `fold` (built now, or read from the store)."""
        params = {"part": part, "fold": fold.index, "heads": setting.heads, "alpha": setting.alpha,
                  "direction": setting.direction, **self.params}
        parents = {"model": self.model_art.key, "dataset": self.dataset_key, "probes": fold.probes.key}
        if setting != BASELINE:
            parents["intervention"] = intervention.key

        def build(ctx) -> None:
            doc = self._score(fold, part, setting, intervention)
            (ctx.out / "trial.json").write_text(json.dumps(doc, indent=1, default=float), encoding="utf-8")
            ctx.meta.update({"part": part, "fold": fold.index})

        art, cached = self.store.produce(TRIAL_KIND, params, parents, build, step_version=TRIAL_STEP_VERSION)
        return Trial(fold.index, part, setting, art.key, cached, art.read_json("trial.json"))

    def _load(self):
        if self._lm is None:
            from itictl.models import load_model

            e = self.opts.eval
            self._lm = load_model(self.store, self.model_art, dtype=e.dtype, device=e.device)
            if e.text:
                from itictl.evaluate.natural_text import load_samples

                self._samples = load_samples(self._lm.tokenizer, Path(e.text), n=e.text_samples, seed=e.seed)
        return self._lm

    def _evaluator(self, fold: Fold, part: str):
        """One Evaluator at a time, over exactly the part's questions (its α = 0 pass is cached)."""
        if self._ev is None or self._ev[0] != (fold.index, part):
            from itictl.evaluate.evaluator import Evaluator

            self._ev = None  # free the previous one's baseline (CE/KL log-probs) first
            lm = self._load()
            subset = [self.questions[i] for i in fold.ids[part]]
            ev = Evaluator(lm.model, lm.tokenizer, subset, self.opts.eval, judges=self.judges, skipped={},
                           text_samples=self._samples, out=None)
            self._ev = ((fold.index, part), ev)
        return self._ev[1]

    def _score(self, fold: Fold, part: str, setting: Setting, intervention) -> dict[str, Any]:
        import torch

        from itictl.intervene.build import load_deltas

        ev = self._evaluator(fold, part)
        deltas = {} if setting == BASELINE else {
            int(l): d.to(torch.float32) for l, d in load_deltas(intervention).items()}
        n0 = len(ev.per_question)
        metrics = ev.evaluate(list(range(len(ev.questions))), deltas, setting=f"K={setting.heads},alpha={setting.alpha:g}",
                              fold=fold.index, heads=setting.heads, alpha=setting.alpha)
        rows = ev.per_question[n0:]
        samples = ev.per_sample.get((setting.heads, setting.alpha), {}).get(fold.index, {})
        return {"part": part, "fold": fold.index, "questions": list(fold.ids[part]),
                "setting": {"heads": setting.heads, "alpha": setting.alpha, "direction": setting.direction},
                "metrics": metrics, "rows": rows, "samples": {k: list(v) for k, v in samples.items()}}
