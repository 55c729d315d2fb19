"""The metric core of `itictl eval`: `Evaluator` scores question subsets of one loaded model with
optional deltas (MC, generations + judges + BLEU/ROUGE, CE/KL on natural text) and caches the α = 0
baseline; `evaluate_grid` runs it over (K, α) settings × folds; `summary_line` is the reference's
print. No store, no options parsing: evaluate/runner.py drives it. Its phases (mc, generation,
judge_truth, judge_info, bleu_rouge, ce_kl) are marked with hooks.timed (evaluate/timings.py).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from itictl import hooks
from itictl.evaluate.options import EvalOptions


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(xs)) if xs else None


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
        self.prefix, self.groups = groups_for(self.items, opts.instruction, opts.preset, opts.many_shot_prefix,
                                              positions=opts.mc_positions)
        self.text_samples = text_samples
        self._base_mc: list[list[float]] | None = None
        self._mc_tokens: list | None = None  # mc_plan.GroupTokens per group (self._tokens)
        self._base_gen: list[str] | None = None
        self._base_judged: dict[str, list[float]] = {}
        self._base_text: dict | None = None
        self.answers: list[dict] = []
        self.transfer = transfer is not None
        self.per_question: list[dict] = []  # one row per question × setting (per_question.csv)
        self.per_sample: dict[tuple[int, float], dict[int, dict[str, list[float]]]] = {}  # (K, α) -> fold -> CE/KL

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
        from itictl.evaluate.mc_positions import scoring_of

        sc = scoring_of(self.opts.mc_positions)
        if not deltas:
            if self._base_mc is None:
                with self._progress("MC baseline", len(self.groups)) as adv:
                    self._base_mc = score_groups(self.model, self.tok, self.prefix, self.groups, scoring=sc,
                                                 batch_tokens=self.opts.batch_tokens, progress=adv, dist=self.dist,
                                                 tokens=self._tokens())
            return [self._base_mc[i] for i in idx]
        tokens = self._tokens()
        with self._progress("MC intervened", len(idx)) as adv:
            return score_groups(self.model, self.tok, self.prefix, [self.groups[i] for i in idx],
                                steer=self._steer(deltas), batch_tokens=self.opts.batch_tokens, progress=adv,
                                dist=self.dist, scoring=sc, tokens=[tokens[i] for i in idx])

    def _tokens(self) -> list:
        """The MC texts' token ids (mc_plan.GroupTokens per group), tokenized once at the first MC pass
        and reused by every pass; every rank tokenizes the same texts, so ranks plan alike."""
        if self._mc_tokens is None:
            from itictl.evaluate.mc_plan import tokenize_groups

            self._mc_tokens = tokenize_groups(self.tok, self.groups)
        return self._mc_tokens

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
        from itictl.evaluate.natural_text import baseline, batch_size_for, ce_kl

        bs = batch_size_for(self.model)
        if self._base_text is None:
            self._base_text = baseline(self.model, self.text_samples, batch_size=bs, dist=self.dist)
        return ce_kl(self.model, self.text_samples, self._base_text, steer=self._steer(deltas), batch_size=bs,
                     dist=self.dist)

    def evaluate(self, idx: Sequence[int], deltas, *, setting: str, fold: int, heads: int = 0,
                 alpha: float = 0.0) -> dict[str, float | None]:
        """Metrics on questions `idx` (held-out fold) with `deltas` ({} = baseline); the per-question
        values go to `per_question`, the per-sample CE/KL to `per_sample[(heads, alpha)][fold]`."""
        res: dict[str, float | None] = {}
        rows = [{"heads": heads, "alpha": alpha, "fold": fold,
                 "question_index": i if self.transfer else getattr(self.questions[i], "index", i),
                 "category": "" if self.transfer else getattr(self.questions[i], "category", "")} for i in idx]
        if "mc" in self.metrics:  # every rank: the scorer shares its forwards and gathers the scores
            with hooks.timed("mc"):
                self._mc(idx, deltas, rows, res)
        if self.metrics & {"bleu", "rouge"} or self.judges:
            self._generation(idx, deltas, rows, res, setting, fold)
        if self.metrics & {"ce", "kl"} and self.text_samples is not None:
            with hooks.timed("ce_kl"):
                t = self.text_metrics(deltas)
            kept = self.per_sample.setdefault((heads, alpha), {}).setdefault(fold, {})
            for m, name in (("ce", "CE Loss"), ("kl", "KL wrt Original")):
                if m in self.metrics:
                    res[name] = t[m]
                    kept[m] = list(t[f"{m}_samples"])
        self.per_question.extend(rows)
        return res

    def _mc(self, idx: Sequence[int], deltas, rows: list[dict], res: dict) -> None:
        from itictl.evaluate.mc import mc_metrics

        sc = self.mc_scores(idx, deltas)
        for r, i, s in zip(rows, idx, sc):
            r.update(mc_metrics(self.items[i], s))
        for k in ("MC1", "MC2", "MC3"):
            res[k] = _mean([r[k] for r in rows])

    def _generation(self, idx: Sequence[int], deltas, rows: list[dict], res: dict, setting: str, fold: int) -> None:
        """Generated answers, judge scores (rank 0 only) and BLEU/ROUGE accuracies."""
        with hooks.timed("generation"):
            answers = self.generations(idx, deltas)
        arows = [{"setting": setting, "fold": fold, "question_index": getattr(self.questions[i], "index", i),
                  "question": self.questions[i].question, "answer": a} for i, a in zip(idx, answers)]
        for r, a in zip(rows, answers):
            r["answer"] = a
        for which, name in (("truth", "True"), ("info", "Info")):
            if which in self.judges and self.dist.is_main:  # ranks > 0 only help with the sharded parts
                with hooks.timed(f"judge_{which}"):
                    p = self.judged(which, idx, answers, deltas)
                for r, ar, x in zip(rows, arows, p):
                    r[name], r[f"{name} prob"] = float(x >= 0.5), x
                    ar[f"{name.lower()}_p_yes"] = round(x, 6)
                res[name] = _mean([r[name] for r in rows])
                res[f"{name} prob"] = _mean(p)
        if "True" in res and "Info" in res:
            res["True*Info"] = res["True"] * res["Info"]
        if self.metrics & {"bleu", "rouge"}:
            self._bleu_rouge(idx, answers, rows, res)
        self.answers.extend(arows)

    def _bleu_rouge(self, idx: Sequence[int], answers: list[str], rows: list[dict], res: dict) -> None:
        from itictl.evaluate.presets import split_answers
        from itictl.evaluate.text_metrics import bleu_rouge

        with hooks.timed("bleu_rouge"):
            for r, i, a in zip(rows, idx, answers):
                b = bleu_rouge(a, split_answers(self.questions[i].correct_answers),
                               split_answers(self.questions[i].incorrect_answers))
                if "bleu" in self.metrics:
                    r["BLEU acc"] = b["bleu acc"]
                if "rouge" in self.metrics:
                    r["ROUGE-1 acc"], r["ROUGE-L acc"] = b["rouge1 acc"], b["rougeL acc"]
        for k in ("BLEU acc", "ROUGE-1 acc", "ROUGE-L acc"):
            if rows and k in rows[0]:
                res[k] = _mean([r[k] for r in rows])


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
            per_fold.append(ev.evaluate(idx, deltas, setting=f"K={k},alpha={a:g}", fold=i, heads=k, alpha=a))
        keys = sorted({key for r in per_fold for key in r})
        mean = {key: _mean([r.get(key) for r in per_fold]) for key in keys}
        out.append({"heads": k, "alpha": a, "folds": per_fold, "mean": mean})
    return out


PER_QUESTION_COLUMNS = ("heads", "alpha", "fold", "question_index", "category", "MC1", "MC2", "MC3", "answer", "True",
                        "Info", "True prob", "Info prob", "BLEU acc", "ROUGE-1 acc", "ROUGE-L acc")


def write_per_question_csv(path, rows: Sequence[dict]) -> None:
    """One row per question × setting, the columns present in any row (TruthfulQA-output style)."""
    import csv

    cols = [c for c in PER_QUESTION_COLUMNS if any(c in r for r in rows)]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: (f"{r[c]:g}" if c == "alpha" else r.get(c)) for c in cols})
