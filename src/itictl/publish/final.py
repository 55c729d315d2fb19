"""The final intervention for shipping: what `itictl bake` / `push` / `export` use with no REF after
an eval (issue 13.4) or a tune (issue 15), the reference's validation/edit_weight.py fit.

An eval measures an intervention on held-out folds: fold i's heads, θ and σ come from the other
folds' questions. What ships is refitted once on **all** questions with the same options (model,
data, K, α, direction, seed, val_ratio, dtype, limits): probes on every question with a
val_ratio train/val split and no test fold, σ over every tuning prompt (pipeline.final_intervention,
fold None). The eval's own activations and tuning activations are reused when the store has them.

Owns `eval_settings` / `eval_setting` (which (K, α) of an eval ships: the one the eval marks as
`chosen`, else its only α ≠ 0 setting; --heads/--alpha pick among several), `eval_spec` (the eval's
chain options as a pipeline.ChainSpec), `for_eval` and `last_eval_final` (build or reuse it), and
`questions_seen` (which questions an intervention's probes saw, for tables and the model card).
After `itictl tune`, `for_tune` does the same for the tune's chosen setting (tune.json `chosen`,
its chain options `chain.spec`); with no REF, `last_final` uses whichever of `last-tune` and
`last-eval` was tagged most recently (`newest_source`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from itictl.errors import BadInputError, NotFoundError, UsageError

# ChainSpec fields an eval's params never decide (where it ran, and the model: its parent artifact)
_NOT_FROM_EVAL = ("model", "revision", "data_dir", "device", "device_map")


def _eval_doc(eval_art) -> dict[str, Any]:
    if "eval.json" not in eval_art.manifest.files:
        return {}
    doc = eval_art.read_json("eval.json")
    return doc if isinstance(doc, dict) else {}


def eval_settings(eval_art) -> list[tuple[int, float]]:
    """The eval's α ≠ 0 settings (K, α) in its order: eval.json's, else its params' grid."""
    doc = _eval_doc(eval_art)
    if isinstance(doc.get("settings"), list):
        pairs = [(int(s["heads"]), float(s["alpha"])) for s in doc["settings"] if isinstance(s, dict)]
    else:
        p = eval_art.params
        pairs = [(int(k), float(a)) for a in p.get("alphas") or () for k in p.get("heads") or ()]
    return list(dict.fromkeys((k, a) for k, a in pairs if a != 0))


def _chosen(eval_art) -> dict[str, Any] | None:
    """The setting the eval marks as chosen (`chosen: {heads, alpha[, direction]}` in eval.json or
    its meta, as a `tune` marks its final setting)."""
    for where in (_eval_doc(eval_art), eval_art.meta):
        c = where.get("chosen") if isinstance(where, dict) else None
        if isinstance(c, dict) and "heads" in c and "alpha" in c:
            return c
    return None


def _fmt(pairs) -> str:
    return ", ".join(f"K={k} α={a:g}" for k, a in pairs)


def eval_setting(eval_art, heads: int | None = None, alpha: float | None = None):
    """The pipeline.Setting to ship from an eval: `chosen`, else the only α ≠ 0 setting; heads /
    alpha (--heads/--alpha) pick one of the eval's settings. One-line errors otherwise."""
    from itictl.pipeline import Setting

    direction = str(eval_art.params.get("direction", "com"))
    chosen = _chosen(eval_art)
    if heads is None and alpha is None and chosen is not None:
        if float(chosen["alpha"]) == 0:
            raise NotFoundError(f"{eval_art.kind} {eval_art.key[:12]} chose α = 0 (no intervention): nothing to ship",
                                "pass an intervention REF, or --heads/--alpha for another of its settings")
        return Setting(int(chosen["heads"]), float(chosen["alpha"]), str(chosen.get("direction") or direction))
    settings = eval_settings(eval_art)
    if not settings:
        raise NotFoundError(f"eval {eval_art.key[:12]} has no intervention (α = 0 only)",
                            "pass an intervention REF, or run `itictl eval` with a non-zero --alpha")
    pick = [(k, a) for k, a in settings if (heads is None or k == heads) and (alpha is None or a == float(alpha))]
    if not pick:
        want = " ".join(([f"K={heads}"] if heads is not None else []) + ([f"α={alpha:g}"] if alpha is not None else []))
        raise BadInputError(f"eval {eval_art.key[:12]} has no setting {want}",
                            f"choose one of its settings with --heads/--alpha: {_fmt(settings)}")
    if len(pick) > 1:
        raise UsageError(f"eval {eval_art.key[:12]} has {len(pick)} settings ({_fmt(pick)}): which one to ship is "
                         "ambiguous", "pass REF, or --heads K --alpha A to pick one")
    return Setting(pick[0][0], pick[0][1], direction)


def eval_spec(eval_art):
    """The eval's chain options (folds, val_ratio, split, seed, dtype, limits, …) as a ChainSpec."""
    from dataclasses import fields

    from itictl.pipeline import ChainSpec

    p = eval_art.params
    return ChainSpec(**{f.name: p[f.name] for f in fields(ChainSpec) if f.name in p and f.name not in _NOT_FROM_EVAL})


def _eval_inputs(store, eval_art, spec) -> tuple[Any, Any, Any]:
    """(model, activations or None, tuning or None): the eval's (or tune's) parents, from the store.
    When one must be rebuilt, the data here must be its data (checked by digest, before any work)."""
    from itictl import pipeline

    par = eval_art.parents
    if not store.has(par.get("model", "")):
        raise NotFoundError(f"the model of {eval_art.kind} {eval_art.key[:12]} is not in this store",
                            "pass an intervention REF")
    acts, tuning = (store.get(par[r]) if store.has(par.get(r, "")) else None for r in ("activations", "tuning"))
    if acts is None or tuning is None:
        ds = par.get("dataset")
        digest = store.get(ds).params.get("digest") if ds and store.has(ds) else None
        if digest is not None and pipeline.load_questions(spec).digest != digest:
            raise BadInputError(f"the TruthfulQA data here is not the data {eval_art.kind} {eval_art.key[:12]} used",
                                "set ITICTL_DATA to that folder, or pass an intervention REF")
    return store.get(par["model"]), acts, tuning


def for_eval(store, eval_art, *, heads: int | None = None, alpha: float | None = None, out=None):
    """-> Final(intervention, cached, source=the eval): the all-questions intervention of the eval's chosen (or
    only) setting, built or reused; says which on `out`."""
    if eval_art.kind != "eval":
        raise BadInputError(f"{eval_art.key[:12]} is a {eval_art.kind} object, not an eval", "pass an eval ref")
    return _final(store, eval_art, eval_setting(eval_art, heads, alpha), eval_spec(eval_art),
                  f"measured on held-out folds by eval {eval_art.key[:12]}", out)


class Final(NamedTuple):
    """A final intervention and where it came from: `source` is the eval or tune it was built from
    (the model card cites exactly that one; publish.modelcard.render_card)."""

    intervention: Any
    cached: bool
    source: Any


def _final(store, source_art, setting, spec, provenance: str, out) -> Final:
    """The all-questions intervention of `setting` with `spec`'s chain options, reusing the source's
    (eval's or tune's) model, activations and tuning activations when the store has them."""
    from itictl import pipeline

    model_art, acts, tuning = _eval_inputs(store, source_art, spec)
    chain = pipeline.final_intervention(store, spec, setting, model_art=model_art, acts=acts, tuning=tuning, out=out)
    if out is not None:
        seen = questions_seen(chain.probes)
        out.info(f"intervention {chain.intervention.key[:12]} ({'cached' if chain.cached else 'built'}): K={setting.heads}"
                 f" α={setting.alpha:g} {setting.direction}, fitted on {seen['text']}; {provenance}")
    return Final(chain.intervention, chain.cached, source_art)


def last_eval_final(store, out=None, *, heads: int | None = None, alpha: float | None = None):
    """for_eval of the `last-eval` ref -> Final(intervention, cached, source)."""
    if "last-eval" not in store.refs():
        raise NotFoundError("no REF given and there is no `last-eval` ref",
                            "run `itictl eval` first or pass an intervention ref")
    return for_eval(store, store.open("last-eval"), heads=heads, alpha=alpha, out=out)


def _tune_doc(tune_art) -> dict[str, Any]:
    if tune_art.kind != "tune":
        raise BadInputError(f"{tune_art.key[:12]} is a {tune_art.kind} object, not a tune", "pass a tune ref")
    doc = tune_art.read_json("tune.json") if "tune.json" in tune_art.manifest.files else None
    if not isinstance(doc, dict) or not isinstance(doc.get("chosen"), dict) or not isinstance(doc.get("chain"), dict):
        raise NotFoundError(f"tune {tune_art.key[:12]} has no chosen setting", "rerun `itictl tune`")
    return doc


def tune_setting(tune_art):
    """The pipeline.Setting a tune chose for the final intervention (tune.json's `chosen`); a choice of
    α = 0 is a one-line NotFoundError (exit 3)."""
    from itictl.pipeline import Setting

    c = _tune_doc(tune_art)["chosen"]
    if float(c.get("alpha") or 0) == 0 or c.get("bakeable") is False:
        raise NotFoundError(f"the tune chose α = 0 (no intervention): tune {tune_art.key[:12]} found no setting "
                            "that helps within its budget, so there is nothing to ship",
                            "pass REF, or re-tune with a larger budget (--max-kl / --max-ce-increase)")
    return Setting(int(c["heads"]), float(c["alpha"]), str(c.get("direction") or "com"))


def tune_spec(tune_art):
    """The tune's chain options (tune.json chain.spec) as a ChainSpec, less where it ran and the
    model (its parent artifact), as eval_spec."""
    from dataclasses import fields

    from itictl.pipeline import ChainSpec

    d = _tune_doc(tune_art)["chain"].get("spec") or {}
    return ChainSpec(**{f.name: d[f.name] for f in fields(ChainSpec) if f.name in d and f.name not in _NOT_FROM_EVAL})


def for_tune(store, tune_art, *, out=None):
    """-> Final(intervention, cached, source=the tune): the all-questions intervention of the tune's chosen setting
    (`itictl tune … && itictl bake`), built or reused with the tune's chain options and, when the
    store has them, its activations and tuning activations. α = 0 fails before anything is written."""
    return _final(store, tune_art, tune_setting(tune_art), tune_spec(tune_art),
                  f"setting chosen by tune {tune_art.key[:12]} (nested CV)", out)


SOURCES = ("last-tune", "last-eval")  # what bake / push / export use with no REF: the newer of these


def newest_source(store) -> str | None:
    """'last-tune' or 'last-eval', whichever was tagged most recently (the ref file's mtime: a tag
    rewrites the file, so a cached rerun of eval or tune counts as new; a tie goes to last-tune);
    None when neither ref exists."""
    from itictl.store.refs import tagged_at

    times = {name: t for name in SOURCES if (t := tagged_at(store, name)) is not None}
    return max(times, key=lambda name: (times[name], name == "last-tune")) if times else None


def last_final(store, out=None, *, heads: int | None = None, alpha: float | None = None):
    """No REF: for_tune of `last-tune` or for_eval of `last-eval`, whichever is newer (newest_source);
    says which on `out`. --heads/--alpha with a tune source is a UsageError. -> Final(intervention, cached, source)."""
    name = newest_source(store)
    if name is None:
        raise NotFoundError("no REF given and there is no `last-eval` or `last-tune` ref",
                            "run `itictl eval` or `itictl tune` first, or pass an intervention ref")
    if name == "last-tune" and (heads is not None or alpha is not None):
        raise UsageError("--heads/--alpha pick an eval's setting, but the newest source is last-tune, which chose its own",
                         "drop --heads/--alpha to ship the tune's choice, or rerun `itictl eval` to make last-eval newer")
    art = store.open(name)
    if out is not None:
        out.info(f"no REF: using {name} ({art.kind} {art.key[:12]}), the more recently tagged of last-tune and last-eval")
    if name == "last-tune":
        return for_tune(store, art, out=out)
    return for_eval(store, art, heads=heads, alpha=alpha, out=out)


def questions_seen(probes_art) -> dict[str, Any]:
    """Which questions a probes artifact was fitted on: {'fold': 'all' | k, 'folds', 'train', 'val',
    'test' (counts), 'text'} (e.g. "all 817 questions, 80/20 train/val split, no test fold")."""
    from itictl.probe.step import ALL_QUESTIONS

    p = probes_art.params
    qs = probes_art.read_json("probes.json").get("questions") or {}
    n = {k: len(qs.get(k) or ()) for k in ("train", "val", "test")}
    vr = float(p.get("val_ratio", 0.2))
    ratio = f"{round(100 * (1 - vr)):g}/{round(100 * vr):g} train/val split"
    if p.get("fold") == ALL_QUESTIONS:
        text = f"all {n['train'] + n['val']} questions, {ratio}, no test fold"
    else:
        text = (f"fold {p.get('fold')}'s training questions ({n['train'] + n['val']} of {sum(n.values())}, {ratio};"
                f" {n['test']} held out in test fold {p.get('fold')} of {p.get('folds')})")
    return {"fold": p.get("fold"), "folds": p.get("folds"), **n, "text": text}


def shipped(store, intervention_art) -> dict[str, Any]:
    """For result documents: {'fold': 'all' | k | None, 'questions': text or None} of an
    intervention (None for an imported one without probes)."""
    from itictl.publish.modelcard import ancestors

    probes = ancestors(store, intervention_art).get("probes")
    if probes is None or "probes.json" not in probes.manifest.files:
        return {"fold": None, "questions": None}
    seen = questions_seen(probes)
    return {"fold": seen["fold"], "questions": seen["text"]}
