"""`run_tune`: nested cross-validation of (K, α, direction) under a budget, and the `tune` artifact.

Per outer fold i (the eval's folds: equal options give eval's probe and intervention keys):
  1. the fold's probes are trained on its training questions (pipeline.fold_probes), which the
     probe step splits into train and validation (--val-ratio) — the test fold is not among them;
  2. every candidate setting builds its intervention from those probes and the training questions'
     tuning activations, and is scored on the fold's *validation* questions only (tune/trials.py);
  3. the rule of tune/select.py picks the fold's setting from those validation scores;
  4. only then is the test fold scored: the chosen setting, α = 0 and the paper's K=48 α=15.
The outer test scores, with paired CIs against α = 0 and against K=48 α=15 (tune/report.py), are
the honest estimate. The final setting (what `itictl bake` should bake on all questions) is chosen
with the same rule on validation scores averaged over the folds (worst fold's KL/CE for the budget);
each fold's choice is also scored on every other fold's validation questions first, so under TPE
the candidates include every fold's choice. Test folds never enter any choice.

Order of work: options, fold sizes, judges and the text file are checked first (nothing written);
then the model (K against its L·H heads), the dataset, the chain, the trials. Single process
(no torchrun). The artifact is tagged `last-tune`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from itictl.pipeline import Setting
from itictl.tune import select
from itictl.tune.options import PAPER, TuneOptions
from itictl.tune.space import BASELINE, Space, label, search
from itictl.tune.trials import Fold, Scorer, Trial, eval_params

TUNE_KIND = "tune"
TUNE_STEP_VERSION = 1


@dataclass
class _Plan:
    tqa: Any
    n: int
    space: Space
    judges: dict[str, Any]
    text_sha256: str | None


def _plan(store, opts: TuneOptions, spec) -> _Plan:
    """Question count vs folds and validation split, judges, the text digest: nothing written."""
    from itictl import pipeline

    tqa = pipeline.load_questions(spec)
    n = pipeline.questions_held(spec, tqa)
    pipeline.check_folds(n, spec.folds, spec.val_ratio)
    heads, alpha = opts.dims()
    judges = {}
    if opts.objective == "true*info":
        from itictl.judge import parse_judge

        e = opts.eval
        for which, s in (("truth", e.judge), ("info", e.info_judge)):
            judges[which] = parse_judge(s, role=which, base_url=e.openai_base_url, device=e.device, store=store)
    text = store.file_digest(Path(opts.eval.text)) if opts.eval.text else None
    return _Plan(tqa, n, Space(heads, alpha, tuple(opts.directions)), judges, text)


def run_tune(store, opts: TuneOptions, out=None) -> tuple[Any, bool, dict[str, Any]]:
    """Search, choose, score the test folds, write the `tune` artifact, tag `last-tune`.
    Returns (artifact, cached, tune document)."""
    from itictl import data as D
    from itictl import pipeline
    from itictl.models import model_info

    opts.validate()
    spec = opts.eval.chain_spec()
    spec.check()
    plan = _plan(store, opts, spec)
    model_art = pipeline.model_of(store, spec, out)
    info = model_info(model_art)
    plan.space.check(int(info["n_layers"]), int(info["n_heads"]))
    ds_art = D.ensure_dataset(store, pipeline.data_dir_of(spec))
    base = pipeline.prepare(store, spec, tqa=plan.tqa, model_art=model_art, out=out)
    folds = []
    for i in range(spec.folds):
        probes, _ = pipeline.fold_probes(store, spec, base.activations, i, out=out)
        folds.append(Fold(i, probes, probes.read_json("probes.json")["questions"]))
    questions = list(D.read_dataset(ds_art).questions)[:plan.n]
    scorer = Scorer(store, opts, model_art, ds_art.key, questions, plan.judges,
                    eval_params(opts, plan.judges, plan.text_sha256))
    tuner = _Tuner(store, spec, opts, plan, base, scorer, out, int(info["n_layers"]) * int(info["n_heads"]))
    tuner.search_all(folds)
    final = tuner.final(folds)
    tuner.outer(folds)
    from itictl.tune.report import build_doc, write_payload

    doc = build_doc(tuner, folds, final, spec=spec, model_key=model_art.key)
    params = _params(opts, plan, spec)
    parents = {"model": model_art.key, "dataset": ds_art.key, "activations": base.activations.key,
               "tuning": base.tuning.key, **{f"trial.{j}": t.key for j, t in enumerate(tuner.all_trials())}}
    art, cached = store.produce(TUNE_KIND, params, parents, lambda ctx: write_payload(ctx, doc),
                                step_version=TUNE_STEP_VERSION)
    store.tag("last-tune", art.key)
    doc = art.read_json("tune.json")
    trials = tuner.all_trials()
    doc["trials_run"] = {"total": len(trials), "cached": sum(t.cached for t in trials)}  # this run, not stored
    return art, cached, doc


def _params(opts: TuneOptions, plan: _Plan, spec) -> dict[str, Any]:
    return {"objective": opts.objective, "budget": list(opts.budget()) if opts.budget() else None,
            "search": opts.search, "trials": opts.n_trials() if opts.search == "tpe" else None,
            "space": plan.space.doc(), "folds": spec.folds, "val_ratio": spec.val_ratio, "split": spec.split,
            "limit_questions": spec.limit_questions, "n_questions": plan.n, **eval_params(opts, plan.judges, plan.text_sha256)}


@dataclass
class _Tuner:
    """The trials of one run, memoised by (fold, part, setting)."""

    store: Any
    spec: Any
    opts: TuneOptions
    plan: _Plan
    base: Any
    scorer: Scorer
    out: Any
    n_heads_total: int
    trials: dict[tuple[int, str, Setting], Trial] = field(default_factory=dict)
    searched: dict[int, list[Setting]] = field(default_factory=dict)  # fold -> settings its search evaluated
    chosen: dict[int, Setting] = field(default_factory=dict)  # fold -> its choice (validation only)

    def trial(self, fold: Fold, part: str, s: Setting) -> Trial:
        key = (fold.index, part, s)
        if key not in self.trials:
            iv = None
            if s != BASELINE:
                from itictl import pipeline

                iv, _ = pipeline.intervention(self.store, self.spec, fold.probes, self.base.tuning, s,
                                              model_key=self.scorer.model_art.key)
            self.trials[key] = self.scorer.trial(fold, part, s, intervention=iv)
        return self.trials[key]

    def all_trials(self) -> list[Trial]:
        return list(self.trials.values())

    def base_ce(self, fold: int, part: str) -> float | None:
        t = self.trials.get((fold, part, BASELINE))
        return None if t is None else t.metrics.get(select.CE)

    def entries(self, fold: int, part: str, settings) -> list[tuple[Setting, dict]]:
        return [(s, self.trials[(fold, part, s)].metrics) for s in settings]

    def search_all(self, folds: list[Fold]) -> None:
        """Each fold's search on its validation questions, one progress bar over all trials."""
        import contextlib

        o = self.opts
        per = len(self.plan.space.grid()) if o.search == "grid" else o.n_trials() + 1
        bar = self.out.progress("tune", per * len(folds), "trial") if self.out is not None \
            else contextlib.nullcontext(lambda n=1, description=None: None)
        with bar as advance:
            for f in folds:
                self.searched[f.index] = search(self.plan.space, self._score_fn(f, advance), kind=o.search,
                                                n_trials=o.n_trials(), seed=self.spec.seed)
                self.chosen[f.index] = self.choose(f.index, self.searched[f.index])

    def _score_fn(self, f: Fold, advance):
        metric, budget = self.opts.objective_metric(), self.opts.budget()

        def score(s: Setting):
            m = self.trial(f, "val", s).metrics
            done = list(dict.fromkeys(x for (i, p, x) in self.trials if i == f.index and p == "val"))
            best = self.choose(f.index, done)
            v = self.trials[(f.index, "val", best)].metrics.get(metric)
            vs = "-" if v is None else f"{v:.4f}"
            advance(1, description=f"tune fold {f.index} · best {metric} {vs} ({label(best)})")
            return m.get(metric), select.violation(m, budget, self.base_ce(f.index, "val"))

        return score

    def choose(self, fold: int, settings) -> Setting:
        return select.choose(self.entries(fold, "val", settings), self.opts.objective_metric(), self.opts.budget(),
                             self.base_ce(fold, "val"))

    def final(self, folds: list[Fold]) -> Setting:
        """The setting for the all-questions intervention: the rule on validation scores over folds."""
        for s in dict.fromkeys(self.chosen.values()):
            for f in folds:
                self.trial(f, "val", s)
        seen = dict.fromkeys(s for f in folds for s in self.searched[f.index])
        common = [s for s in seen if all((f.index, "val", s) in self.trials for f in folds)]
        return select.choose([(s, self.pooled(folds, s)) for s in common], self.opts.objective_metric(),
                             self.opts.budget(), self.base_ce(folds[0].index, "val"))

    def pooled(self, folds: list[Fold], s: Setting) -> dict[str, Any]:
        """Mean objective over the folds' validation scores; the worst fold's KL and CE."""
        ms = [self.trials[(f.index, "val", s)].metrics for f in folds]
        obj = self.opts.objective_metric()
        vals = [m.get(obj) for m in ms]
        out: dict[str, Any] = {obj: None if None in vals else sum(vals) / len(vals)}
        for k in (select.KL, select.CE):
            xs = [m.get(k) for m in ms if m.get(k) is not None]
            out[k] = max(xs) if xs else None
        return out

    def paper(self) -> Setting | None:
        k, a, d = PAPER
        return Setting(k, a, d) if k <= self.n_heads_total else None

    def outer(self, folds: list[Fold]) -> None:
        """The test fold of each outer fold: its choice, α = 0 and the paper's setting."""
        for f in folds:
            for s in (self.chosen[f.index], BASELINE, self.paper()):
                if s is not None:
                    self.trial(f, "test", s)


def spec_doc(spec) -> dict[str, Any]:
    """The ChainSpec as JSON (what bake needs to rebuild the chain on all questions)."""
    d = asdict(spec)
    d["data_dir"] = None if d["data_dir"] is None else str(d["data_dir"])
    return d
