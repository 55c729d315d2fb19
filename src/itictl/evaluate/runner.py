"""k-fold evaluation orchestration (validate_2fold.py semantics) and the `eval` artifact.

Owns `run_eval(store, opts, out)`. Per fold i, heads/directions/σ come from the other folds only
(the pipeline's chain: probes fold i → intervention), then the held-out questions are scored with
that intervention (evaluate/evaluator.py). Work shared across folds and settings is done once: the
prefix KV cache, the α = 0 baseline (MC scores, generations, judge calls, CE log-probs) and every
extract/probe/intervene artifact (through the store). Results: per-fold and mean metrics per (K, α)
setting with 95 % CIs and paired changes against α = 0 (evaluate/stats.py), the reference's summary
line, `eval.json` + `answers.csv` + `per_question.csv` (+ `sweep.png` for grids); the artifact is
tagged `last-eval`.

Order of work: options (EvalOptions.validate: metrics, judge specs and keys, files), then the
question count against folds and the validation split (read from the data, nothing written), then
the model, the dataset object, the chain, and the eval build.

Timings (evaluate/timings.py): every phase (plan, identity hash, model load, each extraction, probes
per fold, interventions, MC, generation, judges, CE/KL, write) in seconds, in the artifact's manifest
meta `timings` and the returned document's `timings` (this run's: small for a cached eval); never in
eval.json (payloads are reproducible: DP and single-process runs give identical files) nor the key.
The probe steps train on the eval's GPU when it has one (the device is not in the probe key).

Under torchrun (world > 1) every rank runs run_eval: extraction is data-parallel (extract.py),
probe/intervene objects are built once under their key locks, and in the eval build the ranks
share MC-scoring forwards, generation batches and CE/KL sample batches exactly (gathered on
every rank); judge calls run on rank 0 only; rank 0 computes the metrics and commits the artifact (same
key as one process). A rank failing between two collectives exits, and torchrun stops the rest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from itictl import hooks
from itictl.errors import BadInputError
from itictl.evaluate.evaluator import Evaluator, evaluate_grid, summary_line
from itictl.evaluate.options import EvalOptions, settings_of

# EvalOptions fields that never enter the key as they are (secrets, paths, speed, or replaced by digests)
_NOT_IN_KEY = ("device", "many_shot_prefix", "judge", "info_judge", "openai_base_url", "data_dir", "text",
               "batch_tokens", "model", "revision", "protocol", "val_draw", "backend", "sigma_from", "tie_break",
               "mc_positions")  # the protocol and its switches: in the key only when not itictl's (_params)
# 2: ROUGE and CE/KL computations changed; the payload gains per_question.csv and CIs (evaluate/stats.py)
EVAL_STEP_VERSION = 2


@dataclass
class _Plan:
    """Everything decided before any model work."""

    n: int  # questions evaluated
    settings: list[tuple[int, float]]
    judges: dict[str, Any]
    skipped: dict[str, str]
    text_digest: str | None
    transfer: list | None
    tqa: Any  # the TruthfulQA table as read from the data (prompt counts for --limit-questions)
    parents: dict[str, str] = field(default_factory=dict)
    deltas_keys: dict[tuple[int, int, float], str] = field(default_factory=dict)


def _text_digest(s: str | None) -> str | None:
    return hashlib.sha256(s.encode()).hexdigest() if s else None


def _build_judges(opts: EvalOptions, store, device: str) -> tuple[dict, dict]:
    from itictl.judge import parse_judge

    judges, skipped = {}, {}
    wanted = {"truth": ("judge", opts.judge), "info": ("info", opts.info_judge)}
    for which, (metric, spec) in wanted.items():
        name = "True" if which == "truth" else "Info"
        if metric not in opts.metrics:
            skipped[name] = f"metric '{metric}' not requested (--metrics)"
        elif not spec:
            flag = "judge" if which == "truth" else "info-judge"
            skipped[name] = f"no judge configured (pass --{flag} openai:MODEL, hf:PATH or local)"
        else:
            judges[which] = parse_judge(spec, role=which, base_url=opts.openai_base_url, device=device, store=store)
    if "True" in skipped or "Info" in skipped:
        skipped["True*Info"] = "needs both True and Info"
    if set(opts.metrics) & {"ce", "kl"} and not opts.text:  # decided up front, not after the model load
        why = ("no --text FILE (the Hub's stas/openwebtext-10k is a loading-script dataset itictl cannot "
               "run; pass any natural text, e.g. wikitext-2-raw-test.txt)")
        skipped.update({"CE Loss": why, "KL wrt Original": why})
    return judges, skipped


def _plan(store, opts: EvalOptions, spec) -> _Plan:
    """Question count vs folds and validation split, judges, text and transfer set: no model work,
    nothing written to the store."""
    from itictl import data as D
    from itictl import pipeline

    tqa = pipeline.load_questions(spec)
    n = pipeline.questions_held(spec, tqa)
    if n < opts.folds:
        raise BadInputError(f"{n} questions cannot make {opts.folds} folds", "raise --limit-questions")
    settings = settings_of(opts)
    if any(a != 0 for _, a in settings):  # probes are trained per fold: each needs train and val questions
        pipeline.check_folds(n, opts.folds, opts.val_ratio)
    judges, skipped = _build_judges(opts, store, opts.device)  # hf: judges resolve 'auto' when they load
    text_digest = store.file_digest(Path(opts.text)) if set(opts.metrics) & {"ce", "kl"} and opts.text else None
    transfer = D.load_transfer(opts.eval_dataset) if opts.eval_dataset != "truthfulqa" else None
    return _Plan(n, settings, judges, skipped, text_digest, transfer, tqa)


def _probe_device(opts: EvalOptions, dist, device_map) -> str | None:
    """Where the probe steps train: the eval's GPU (the device is not in the probe key; the solver's
    results agree within float tolerance), else None (the probe step's CPU path)."""
    from itictl.compute import distributed as DI
    from itictl.models.devices import compute_device, parse_device_map, resolve_device

    if device_map:
        return "cuda" if compute_device(None, parse_device_map(device_map)) == "cuda" else None
    dev = resolve_device(DI.rank_device(dist, opts.device) if dist.distributed else opts.device)
    return dev if dev.startswith("cuda") else None


def _chain(store, opts: EvalOptions, spec, plan: _Plan, model_art, out, dist, probe_device=None) -> None:
    """Every fold's probes and every (fold, K, α)'s intervention, through the pipeline; their keys
    go into plan.parents / plan.deltas_keys. Each activations file is read once for all folds and
    settings (keep_loaded)."""
    from itictl import pipeline
    from itictl.extract.h5 import keep_loaded

    if not any(a != 0 for _, a in plan.settings):
        return
    base = pipeline.prepare(store, spec, tqa=plan.tqa, model_art=model_art, out=out, dist=dist)
    plan.parents.update(activations=base.activations.key, tuning=base.tuning.key)
    with keep_loaded():
        for i in range(opts.folds):
            with hooks.timed("probes"):
                probes, _ = pipeline.fold_probes(store, spec, base.activations, i, out=out, device=probe_device)
            for k, a in plan.settings:
                if a == 0:
                    continue
                with hooks.timed("interventions"):
                    iv, _ = pipeline.intervention(store, spec, probes, base.tuning,
                                                  pipeline.Setting(k, a, opts.direction), out=out)
                plan.deltas_keys[(i, k, a)] = iv.key
                plan.parents[f"intervention.fold{i}.k{k}.a{a:g}"] = iv.key
    first = next(s for s in plan.settings if s[1] != 0)
    plan.parents["intervention"] = plan.deltas_keys[(0, first[0], first[1])]


def _model_artifact(store, spec, out, timer, overlap: bool):
    """pipeline.model_of; a local folder whose digests are not cached yet is loaded in the background
    while it is hashed (models/preload.py), the overlapped seconds go to timings['background']."""
    from itictl import pipeline
    from itictl.config import cores
    from itictl.models import preload
    from itictl.store.digests import leaving_cores

    pre = preload.start(store, spec.model, spec.dtype, spec.device) if overlap else None
    with leaving_cores(max(2, cores() // 2) if pre is not None else 0):  # the preload thread's imports
        model_art = pipeline.model_of(store, spec, out)
    if pre is not None:
        adopted = pre.adopt(store, model_art)
        timer.background.update({f"preload_{k}": v for k, v in pre.seconds.items()}, preload_adopted=adopted)
        if pre.why:
            timer.background["preload_refused"] = pre.why
    return model_art


def _params(opts: EvalOptions, plan: _Plan) -> dict[str, Any]:
    params = {k: v for k, v in asdict(opts).items() if k not in _NOT_IN_KEY}
    params.update(many_shot_prefix_sha256=_text_digest(opts.many_shot_prefix), text_sha256=plan.text_digest,
                  judge=plan.judges["truth"].identity if "truth" in plan.judges else None,
                  info_judge=plan.judges["info"].identity if "info" in plan.judges else None,
                  n_questions=plan.n, metrics=sorted(set(opts.metrics)))
    if plan.transfer is not None:  # only for transfer sets, so TruthfulQA eval keys do not change
        params["transfer_sha256"] = hashlib.sha256(
            json.dumps([asdict(t) for t in plan.transfer], sort_keys=True).encode()).hexdigest()
    if opts.revision is not None:  # only when set, so earlier keys stay
        params["revision"] = opts.revision
    from itictl.protocol import non_default

    switches = {k: v for k, v in opts.switches().items() if k != "split"}  # split is in the key as it was
    params.update(non_default(opts.protocol, switches))
    return params


def run_eval(store, opts: EvalOptions, out=None, dist=None,
             device_map: str | None = None) -> tuple[Any, bool, dict[str, Any]]:
    """Build or reuse extract → probe → intervene per fold and setting, evaluate, write the `eval`
    artifact, tag `last-eval`. Returns (artifact, cached, eval document). `dist` (default
    itictl.compute.distributed.current()): every rank of a torchrun group calls this with the same options."""
    from itictl import data as D
    from itictl import pipeline
    from itictl.compute import distributed as DI
    from itictl.evaluate.timings import PhaseTimer

    dist = dist or DI.current()
    with PhaseTimer() as timer:  # per-phase seconds: the manifest's meta and the returned document
        opts.validate()
        device_map = DI.check_device_map(device_map, dist)
        spec = opts.chain_spec(device_map)
        spec.check()
        timer.rename({f"extract:{spec.dataset}": f"extract_{spec.dataset}", f"extract:{spec.tuning_dataset}": "extract_tuning"})
        with hooks.timed("plan"):
            plan = _plan(store, opts, spec)
        with hooks.timed("model_artifact"):
            model_art = _model_artifact(store, spec, out, timer, overlap=not (dist.distributed or device_map))
        ds_art = D.ensure_dataset(store, pipeline.data_dir_of(spec))
        plan.parents.update(model=model_art.key, dataset=ds_art.key)
        with hooks.timed("imports"):  # torch's first import (seconds on a cold host), if no earlier phase paid it
            import torch  # noqa: F401
        _chain(store, opts, spec, plan, model_art, out, dist, _probe_device(opts, dist, device_map))
        questions = list(D.read_dataset(ds_art).questions)[:plan.n]
        job = _Job(store, opts, plan, model_art, questions, device_map, out, dist, timer=timer)
        art, cached = DI.produce(store, dist, "eval", _params(opts, plan), plan.parents, job.build,
                                 step_version=EVAL_STEP_VERSION)
        if dist.is_main:
            store.tag("last-eval", art.key)
        doc = job.doc or art.read_json("eval.json")
        return art, cached, {**doc, "timings": {**timer.result(), "process": timer.startup()}}


@dataclass
class _Job:
    """The eval build: load the model, score every setting and fold, write the payload."""

    store: Any
    opts: EvalOptions
    plan: _Plan
    model_art: Any
    questions: list
    device_map: Any
    out: Any
    dist: Any
    doc: dict[str, Any] | None = None
    timer: Any = None  # the run's PhaseTimer: its result goes to the manifest's meta

    def _load(self):
        """(model, tokenizer, CE/KL samples); in a phase: a rank that cannot load fails the group at once."""
        from itictl.compute import distributed as DI
        from itictl.models import load_model

        opts, got = self.opts, {}
        device = DI.rank_device(self.dist, opts.device) if self.dist.distributed else opts.device
        kw = {"device_map": self.device_map} if self.device_map else {}  # only when set (model parallel)

        def load() -> None:
            lm = load_model(self.store, self.model_art, dtype=opts.dtype, device=device, **kw)
            got["samples"] = None
            if set(opts.metrics) & {"ce", "kl"} and opts.text:
                from itictl.evaluate.natural_text import load_samples

                got["samples"] = load_samples(lm.tokenizer, Path(opts.text), n=opts.text_samples, seed=opts.seed)
            got["lm"] = lm

        DI.run_phase("loading the model", load, self.dist)
        return got["lm"].model, got["lm"].tokenizer, got["samples"]

    def build(self, ctx) -> None:  # ctx None on ranks > 0 (they help, rank 0 writes)
        import torch

        from itictl import data as D
        from itictl.intervene.build import load_deltas

        opts, plan = self.opts, self.plan
        if ctx is not None and len(plan.settings) > 1:  # _write draws the sweep plot
            from itictl.evaluate.plots import import_in_background

            import_in_background()
        with hooks.timed("eval_setup"):
            model, tok, samples = self._load()
            folds = D.question_folds(plan.n, opts.folds, opts.seed, opts.split)
            ev = Evaluator(model, tok, self.questions, opts, judges=plan.judges, skipped=dict(plan.skipped),
                           text_samples=samples, out=self.out if self.dist.is_main else None,
                           transfer=plan.transfer, dist=self.dist)
        loaded: dict[str, Any] = {}

        def deltas_for(i, k, a):
            key = plan.deltas_keys[(i, k, a)]
            if key not in loaded:
                loaded[key] = {int(l): d.to(torch.float32) for l, d in load_deltas(self.store.get(key)).items()}
            return loaded[key]

        eval_idx = (lambda i: range(len(plan.transfer))) if plan.transfer is not None else None
        results = evaluate_grid(ev, folds, plan.settings, deltas_for, eval_idx)
        if ctx is not None:
            with hooks.timed("write"):
                self._write(ctx, ev, results, folds)
            if self.timer is not None:  # wall seconds: the manifest's meta only (eval.json is reproducible)
                ctx.meta["timings"] = self.timer.result()

    def _write(self, ctx, ev: Evaluator, results: list[dict[str, Any]], folds) -> None:
        from itictl.evaluate import stats
        from itictl.evaluate.evaluator import write_per_question_csv
        from itictl.evaluate.generate import write_answers_csv

        opts, plan = self.opts, self.plan
        mc_label = "lm-eval-harness mc1/mc2" if opts.mc_style == "harness" else ""
        stats.attach(results, ev.per_question, ev.per_sample, seed=opts.seed)
        for r in results:
            r["summary"] = summary_line(r["heads"], r["alpha"], r["mean"], mc_label)
        ctx.meta["protocol"] = opts.protocol
        doc = {"protocol": opts.protocol, "switches": opts.switches(), "mc_style": opts.mc_style,
               "eval_dataset": opts.eval_dataset, "n_questions": plan.n,
               "folds": [len(f) for f in folds], "settings": results, "skipped": plan.skipped,
               "judges": {w: j.spec for w, j in plan.judges.items()},
               "uncertainty": {"method": "percentile bootstrap (questions within folds; CE/KL over text samples)",
                               "resamples": stats.N_RESAMPLES, "level": stats.LEVEL, "seed": opts.seed}}
        (ctx.out / "eval.json").write_text(json.dumps(doc, indent=2, default=float), encoding="utf-8")
        write_answers_csv(ctx.out / "answers.csv", ev.answers)
        write_per_question_csv(ctx.out / "per_question.csv", ev.per_question)
        if len(results) > 1:
            from itictl.evaluate.plots import sweep_plot

            sweep_plot(results, ctx.out / "sweep.png")
        self.doc = doc
