"""k-fold evaluation orchestration (validate_2fold.py semantics) and the `eval` artifact.

Owns: `EvalOptions`, `run_eval(store, opts, out)` and the metric core `Evaluator`. Per fold i,
heads/directions/σ come from the other folds only (probes fold i → intervention), then the held-out
questions are scored with that intervention. Work shared across folds and settings is done once:
the prefix KV cache, the α = 0 baseline (MC scores, generations, judge calls, CE log-probs) and
every extract/probe/intervene artifact (through the store). Results: per-fold and mean metrics per
(K, α) setting, the reference's summary line, `eval.json` + `answers.csv` (+ `sweep.png` for grids).

Under torchrun (world > 1) every rank runs run_eval: extraction is data-parallel (extract.py),
probe/intervene objects are built once under their key locks, and in the eval build the ranks
share MC-scoring forwards, generation batches and CE/KL sample batches exactly (gathered on
every rank); judge calls run on rank 0 only; rank 0 computes the metrics and commits the artifact (same
key as one process). A rank failing between two collectives exits, and torchrun stops the rest.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from itictl.errors import BadInputError

ALL_METRICS = ("mc", "judge", "info", "bleu", "rouge", "ce", "kl")
SUMMARY_KEYS = ("True*Info", "True", "Info", "MC1", "MC2", "CE Loss", "KL wrt Original")


@dataclass
class EvalOptions:
    model: str | None = None
    heads: list[int] = field(default_factory=lambda: [48])
    alphas: list[float] = field(default_factory=lambda: [15.0])
    direction: str = "com"
    folds: int = 2
    seed: int = 42
    val_ratio: float = 0.2
    split: str = "random"
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

    def validate(self) -> None:
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
        if self.mc_style not in ("truthfulqa", "harness"):
            raise BadInputError(f"unknown --mc-style {self.mc_style!r}", "use truthfulqa or harness")
        if self.eval_dataset not in ("truthfulqa", "nq_open", "trivia_qa"):
            raise BadInputError(f"unknown --eval-dataset {self.eval_dataset!r}", "use truthfulqa, nq_open or trivia_qa")
        gen = sorted(set(self.metrics) & {"judge", "info", "bleu", "rouge"})
        if self.eval_dataset != "truthfulqa" and gen:
            raise BadInputError(f"--eval-dataset {self.eval_dataset} scores MC only; {','.join(gen)} need TruthfulQA",
                                "use --metrics mc,ce,kl with a transfer set")
        if self.mc_style == "harness" and self.preset != "qa":
            raise BadInputError("--mc-style harness uses lm-eval-harness's QA prompt", "drop --preset or use --preset qa")
        if self.mc_style == "harness" and self.eval_dataset == "truthfulqa":
            # lm-eval-harness's prompt is the QA primer + "Q: …\nA:" with no instruction: settled
            # here, before the key, so --instruction-prompt cannot split identical work over keys
            self.instruction = "none"
        if self.text_samples < 1:
            raise BadInputError("--text-samples must be ≥ 1", "the reference uses 100")
        if not 0 < self.val_ratio < 1:
            raise BadInputError("--val-ratio must be in (0, 1)", "the reference uses 0.2")
        from itictl.evaluate.presets import check_instruction, check_preset

        check_preset(self.preset)
        check_instruction(self.instruction)


def settings_of(opts: EvalOptions) -> list[tuple[int, float]]:
    """The (K, α) grid; α = 0 is the baseline (K irrelevant) and appears once."""
    out: list[tuple[int, float]] = []
    for a in opts.alphas:
        for k in opts.heads:
            s = (0, 0.0) if a == 0 else (k, float(a))
            if s not in out:
                out.append(s)
    return out


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(xs)) if xs else None


# ---- the metric core -------------------------------------------------------------------------
class Evaluator:
    """Scores question subsets of one model with optional deltas; caches the α = 0 baseline."""

    def __init__(self, model, tok, questions: Sequence[Any], opts: EvalOptions, *, judges: dict[str, Any],
                 skipped: dict[str, str], text_samples: list[list[int]] | None = None, out=None,
                 transfer: Sequence[Any] | None = None, dist=None):
        from itictl.compute import distributed as D
        from itictl.evaluate.mc import MCItem, groups_for, harness_items, mc_items

        self.model, self.tok, self.opts, self.out = model, tok, opts, out
        self.dist = dist or D.SINGLE
        self.questions = list(questions)
        self.metrics = set(opts.metrics)
        self.judges, self.skipped = judges, skipped
        if transfer is not None:  # NQ-open / TriviaQA: true answers vs the provided false answer
            self.items = [MCItem(t.question, list(t.answers), [t.false_answer], 0) for t in transfer]
        elif opts.mc_style == "harness":
            self.items = harness_items(self.questions)
        else:
            self.items = mc_items(self.questions)
        self.prefix, self.groups = groups_for(self.items, opts.instruction, opts.preset, opts.many_shot_prefix)
        self.text_samples = text_samples
        self._base_mc: list[list[float]] | None = None
        self._base_gen: list[str] | None = None
        self._base_judged: dict[str, list[float]] = {}
        self._base_text: dict | None = None
        self.answers: list[dict] = []

    def _steer(self, deltas):
        if not deltas:
            return None
        import torch

        from itictl.intervene.steering import AnswerPositions, intervened

        def steer(pos):
            if isinstance(pos, list):  # per-row answer starts
                return intervened(self.model, deltas, AnswerPositions(torch.tensor(pos)))
            return intervened(self.model, deltas, pos)  # 'all' or a TokenMask

        return steer

    def _progress(self, desc: str, total: int):
        import contextlib

        if self.out is None:
            return contextlib.nullcontext(lambda n=1: None)
        return self.out.progress(desc, total, "q")

    # MC
    def mc_scores(self, idx: Sequence[int], deltas) -> list[list[float]]:
        from itictl.evaluate.mc import score_groups

        if not deltas:
            if self._base_mc is None:
                with self._progress("MC baseline", len(self.groups)) as adv:
                    self._base_mc = score_groups(self.model, self.tok, self.prefix, self.groups,
                                                 batch_tokens=self.opts.batch_tokens, progress=adv, dist=self.dist)
            return [self._base_mc[i] for i in idx]
        with self._progress("MC intervened", len(idx)) as adv:
            return score_groups(self.model, self.tok, self.prefix, [self.groups[i] for i in idx],
                                steer=self._steer(deltas), batch_tokens=self.opts.batch_tokens, progress=adv,
                                dist=self.dist)

    # generation
    def generations(self, idx: Sequence[int], deltas) -> list[str]:
        from itictl.evaluate.generate import generate_answers

        def run(ids):
            with self._progress("generate", len(ids)) as adv:
                return generate_answers(self.model, self.tok, [self.questions[i].question for i in ids],
                                        instruction=self.opts.instruction, preset=self.opts.preset,
                                        many_shot_prefix=self.opts.many_shot_prefix, deltas=deltas or None,
                                        progress=adv, dist=self.dist)

        if not deltas:
            if self._base_gen is None:
                self._base_gen = run(list(range(len(self.questions))))
            return [self._base_gen[i] for i in idx]
        return run(list(idx))

    def judged(self, which: str, idx: Sequence[int], answers: list[str], deltas) -> list[float]:
        judge = self.judges[which]
        pairs = [(self.questions[i].question, a) for i, a in zip(idx, answers)]
        if not deltas:
            if which not in self._base_judged:
                allp = [(q.question, a) for q, a in zip(self.questions, self._base_gen or [])]
                self._base_judged[which] = judge.score(allp, info=(which == "info"))
            return [self._base_judged[which][i] for i in idx]
        return judge.score(pairs, info=(which == "info"))

    def text_metrics(self, deltas) -> dict[str, float]:
        from itictl.evaluate.natural_text import baseline, ce_kl

        if self._base_text is None:
            self._base_text = baseline(self.model, self.text_samples, dist=self.dist)
        return ce_kl(self.model, self.text_samples, self._base_text, steer=self._steer(deltas), dist=self.dist)

    def evaluate(self, idx: Sequence[int], deltas, *, setting: str, fold: int) -> dict[str, float | None]:
        """Metrics on questions `idx` (held-out fold) with `deltas` ({} = baseline)."""
        from itictl.evaluate.mc import mc_metrics
        from itictl.evaluate.presets import split_answers
        from itictl.evaluate.text_metrics import bleu_rouge

        res: dict[str, float | None] = {}
        main = self.dist.is_main  # ranks > 0 only help with the sharded parts (MC, generation, CE/KL)
        if "mc" in self.metrics:  # every rank: the scorer shares its forwards and gathers the scores
            sc = self.mc_scores(idx, deltas)
            per = [mc_metrics(self.items[i], s) for i, s in zip(idx, sc)]
            for k in ("MC1", "MC2", "MC3"):
                res[k] = _mean([p[k] for p in per])
        if self.metrics & {"bleu", "rouge"} or self.judges:
            answers = self.generations(idx, deltas)
            rows = [{"setting": setting, "fold": fold, "question_index": getattr(self.questions[i], "index", i),
                     "question": self.questions[i].question, "answer": a} for i, a in zip(idx, answers)]
            for which, name in (("truth", "True"), ("info", "Info")):
                if which in self.judges and main:
                    p = self.judged(which, idx, answers, deltas)
                    res[name] = _mean([float(x >= 0.5) for x in p])
                    res[f"{name} prob"] = _mean(p)
                    for r, x in zip(rows, p):
                        r[f"{name.lower()}_p_yes"] = round(x, 6)
            if "True" in res and "Info" in res:
                res["True*Info"] = res["True"] * res["Info"]
            if self.metrics & {"bleu", "rouge"}:
                br = [bleu_rouge(a, split_answers(self.questions[i].correct_answers),
                                 split_answers(self.questions[i].incorrect_answers)) for i, a in zip(idx, answers)]
                if "bleu" in self.metrics:
                    res["BLEU acc"] = _mean([b["bleu acc"] for b in br])
                if "rouge" in self.metrics:
                    res["ROUGE-1 acc"] = _mean([b["rouge1 acc"] for b in br])
                    res["ROUGE-L acc"] = _mean([b["rougeL acc"] for b in br])
            self.answers.extend(rows)
        if self.metrics & {"ce", "kl"} and self.text_samples is not None:
            t = self.text_metrics(deltas)
            if "ce" in self.metrics:
                res["CE Loss"] = t["ce"]
            if "kl" in self.metrics:
                res["KL wrt Original"] = t["kl"]
        return res


def summary_line(k: int, alpha: float, mean: dict[str, Any], mc_label: str = "") -> str:
    """validate_2fold.py's final print, with skipped metrics written as 'skipped'."""
    def f(key):
        v = mean.get(key)
        return "skipped" if v is None else f"{v:.4f}"

    mc = f" ({mc_label})" if mc_label else ""
    return (f"alpha: {alpha:g}, heads: {k}, True*Info Score: {f('True*Info')}, True Score: {f('True')}, "
            f"Info Score: {f('Info')}, MC1 Score{mc}: {f('MC1')}, MC2 Score{mc}: {f('MC2')}, "
            f"CE Loss: {f('CE Loss')}, KL wrt Original: {f('KL wrt Original')}")


def evaluate_grid(ev: Evaluator, folds: Sequence[np.ndarray], settings: Sequence[tuple[int, float]],
                  deltas_for: Callable[[int, int, float], dict], eval_idx_for: Callable[[int], Sequence[int]] | None = None
                  ) -> list[dict[str, Any]]:
    """For each setting and fold: deltas from `deltas_for(fold, K, α)`, metrics on the held-out fold."""
    out = []
    for k, a in settings:
        per_fold = []
        for i in range(len(folds)):
            idx = list(eval_idx_for(i)) if eval_idx_for else [int(x) for x in folds[i]]
            deltas = {} if a == 0 else deltas_for(i, k, a)
            per_fold.append(ev.evaluate(idx, deltas, setting=f"K={k},alpha={a:g}", fold=i))
        keys = sorted({key for r in per_fold for key in r})
        mean = {key: _mean([r.get(key) for r in per_fold]) for key in keys}
        out.append({"heads": k, "alpha": a, "folds": per_fold, "mean": mean})
    return out


# ---- orchestration through the store ---------------------------------------------------------
def _text_digest(s: str | None) -> str | None:
    return hashlib.sha256(s.encode()).hexdigest() if s else None


def _build_judges(opts: EvalOptions, store, device: str) -> tuple[dict, dict]:
    from itictl.evaluate.judges import parse_judge

    judges, skipped = {}, {}
    wanted = {"truth": ("judge", opts.judge), "info": ("info", opts.info_judge)}
    for which, (metric, spec) in wanted.items():
        name = "True" if which == "truth" else "Info"
        if metric not in opts.metrics:
            skipped[name] = f"metric '{metric}' not requested (--metrics)"
        elif not spec:
            skipped[name] = f"no judge configured (pass --{'judge' if which == 'truth' else 'info-judge'} openai:MODEL or hf:PATH)"
        else:
            judges[which] = parse_judge(spec, base_url=opts.openai_base_url, device=device, store=store)
    if "True" in skipped or "Info" in skipped:
        skipped["True*Info"] = "needs both True and Info"
    return judges, skipped


def _prompts_of_first(tqa, fmt: str, n_questions: int, seed: int = 0) -> int | None:
    """How many prompts of `fmt` belong to the first n questions (None: all of them)."""
    from itictl.data import build_prompts

    prompts = build_prompts(tqa, fmt, seed=seed)
    count = sum(1 for p in prompts if p.question_index < n_questions)
    return None if count >= len(prompts) else count


def run_eval(store, opts: EvalOptions, out=None, dist=None,
             device_map: str | None = None) -> tuple[Any, bool, dict[str, Any]]:
    """Build or reuse extract → probe → intervene per fold and setting, evaluate, write the `eval`
    artifact, tag `last-eval`. Returns (artifact, cached, eval document). `dist` (default
    itictl.compute.distributed.current()): every rank of a torchrun group calls this with the same options."""
    from itictl.compute import distributed as DI
    dist = dist or DI.current()
    opts.validate()

    device_map = DI.check_device_map(device_map, dist)
    device = DI.rank_device(dist, opts.device) if dist.distributed else opts.device
    from itictl import data as D
    from itictl import extract as X
    from itictl.intervene import build as I
    from itictl.probe import step as P
    from itictl.models import ensure_model, load_model

    data_dir = Path(opts.data_dir) if opts.data_dir else None
    model_art = ensure_model(store, opts.model)
    ds_art = D.ensure_dataset(store, data_dir)
    tqa = D.read_dataset(ds_art)
    questions = list(tqa.questions)
    if opts.limit_questions:
        questions = questions[:opts.limit_questions]
    n = len(questions)
    if n < opts.folds:
        raise BadInputError(f"{n} questions cannot make {opts.folds} folds", "raise --limit-questions")
    settings = settings_of(opts)
    need_iv = any(a != 0 for _, a in settings)
    judges, skipped = _build_judges(opts, store, opts.device)  # hf: judges resolve 'auto' when they load
    if set(opts.metrics) & {"ce", "kl"} and not opts.text:  # decided up front, not after the model load
        why = ("no --text FILE (the Hub's stas/openwebtext-10k is a loading-script dataset itictl cannot "
               "run; pass any natural text, e.g. wikitext-2-raw-test.txt)")
        skipped.update({"CE Loss": why, "KL wrt Original": why})
    text_digest = None
    if opts.metrics and set(opts.metrics) & {"ce", "kl"} and opts.text:
        if not Path(opts.text).is_file():
            from itictl.errors import NotFoundError

            raise NotFoundError(f"text file {opts.text} not found", "pass --text FILE with natural text")
        text_digest = store.file_digest(Path(opts.text))

    parents: dict[str, str] = {"model": model_art.key, "dataset": ds_art.key}
    deltas_keys: dict[tuple[int, int, float], str] = {}
    if need_iv:
        common = dict(seed=opts.seed, out=out, device=opts.device, dtype=opts.dtype, device_map=device_map)
        # --limit-questions N counts questions; extraction's --limit counts prompts: take exactly the
        # prompts of the first N questions, so probes' folds are the eval's folds.
        acts, _ = X.run_extract(store, opts.model, "tqa_mc2", data_dir,
                                limit=_prompts_of_first(tqa, "tqa_mc2", n), **common)
        tune, _ = X.run_extract(store, opts.model, "tqa_gen_end_q", data_dir,
                                limit=_prompts_of_first(tqa, "tqa_gen_end_q", n, opts.seed), **common)
        parents.update(activations=acts.key, tuning=tune.key)
        for i in range(opts.folds):
            pr, _ = P.run_probe(store, acts, folds=opts.folds, fold=i, val_ratio=opts.val_ratio,
                                seed=opts.seed, split=opts.split, out=out)
            for k, a in settings:
                if a == 0:
                    continue
                iv, _ = I.run_intervene(store, pr, tune, heads=k, alpha=a, direction=opts.direction,
                                        seed=opts.seed, out=out)
                deltas_keys[(i, k, a)] = iv.key
                parents[f"intervention.fold{i}.k{k}.a{a:g}"] = iv.key
        first = next((s for s in settings if s[1] != 0), None)
        if first is not None:
            parents["intervention"] = deltas_keys[(0, first[0], first[1])]

    transfer = D.load_transfer(opts.eval_dataset) if opts.eval_dataset != "truthfulqa" else None
    transfer_digest = (hashlib.sha256(json.dumps([asdict(t) for t in transfer], sort_keys=True).encode()).hexdigest()
                       if transfer is not None else None)
    params = {k: v for k, v in asdict(opts).items() if k not in ("device", "many_shot_prefix", "judge", "info_judge",
                                                                 "openai_base_url", "data_dir", "text", "batch_tokens", "model")}
    params.update(many_shot_prefix_sha256=_text_digest(opts.many_shot_prefix), text_sha256=text_digest,
                  judge=judges["truth"].identity if "truth" in judges else None,
                  info_judge=judges["info"].identity if "info" in judges else None,
                  n_questions=n, metrics=sorted(set(opts.metrics)))
    if transfer_digest is not None:  # only for transfer sets, so TruthfulQA eval keys do not change
        params["transfer_sha256"] = transfer_digest
    doc_holder: dict[str, Any] = {}

    def build(ctx):  # ctx None on ranks > 0 (they help, rank 0 writes)
        import torch

        kw = {"device_map": device_map} if device_map else {}  # only when set (model parallel)
        got: dict[str, Any] = {}

        def load() -> None:  # in a phase: a rank that cannot load fails the whole group at once
            lm = load_model(store, model_art, dtype=opts.dtype, device=device, **kw)
            got["samples"] = None
            if set(opts.metrics) & {"ce", "kl"} and opts.text:
                from itictl.evaluate.natural_text import load_samples

                got["samples"] = load_samples(lm.tokenizer, Path(opts.text), n=opts.text_samples, seed=opts.seed)
            got["lm"] = lm

        DI.run_phase("loading the model", load, dist)
        model, tok, text_samples = got["lm"].model, got["lm"].tokenizer, got["samples"]
        folds = D.question_folds(n, opts.folds, opts.seed, opts.split)
        ev = Evaluator(model, tok, questions, opts, judges=judges, skipped=dict(skipped),
                       text_samples=text_samples, out=out if dist.is_main else None, transfer=transfer, dist=dist)
        loaded: dict[str, Any] = {}

        def deltas_for(i, k, a):
            key = deltas_keys[(i, k, a)]
            if key not in loaded:
                loaded[key] = {int(l): d.to(torch.float32) for l, d in I.load_deltas(store.get(key)).items()}
            return loaded[key]

        eval_idx = (lambda i: range(len(transfer))) if transfer is not None else None
        results = evaluate_grid(ev, folds, settings, deltas_for, eval_idx)
        if ctx is None:
            return
        mc_label = "lm-eval-harness mc1/mc2" if opts.mc_style == "harness" else ""
        for r in results:
            r["summary"] = summary_line(r["heads"], r["alpha"], r["mean"], mc_label)
        doc = {"mc_style": opts.mc_style, "eval_dataset": opts.eval_dataset, "n_questions": n,
               "folds": [len(f) for f in folds], "settings": results, "skipped": skipped,
               "judges": {w: j.spec for w, j in judges.items()}}
        (ctx.out / "eval.json").write_text(json.dumps(doc, indent=2, default=float), encoding="utf-8")
        from itictl.evaluate.generate import write_answers_csv

        write_answers_csv(ctx.out / "answers.csv", ev.answers)
        if len(results) > 1:
            from itictl.evaluate.plots import sweep_plot

            sweep_plot(results, ctx.out / "sweep.png")
        doc_holder["doc"] = doc

    art, cached = DI.produce(store, dist, "eval", params, parents, build)
    if dist.is_main:
        store.tag("last-eval", art.key)
    doc = doc_holder.get("doc") or art.read_json("eval.json")
    return art, cached, doc
