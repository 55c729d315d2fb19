"""`itictl judge train`: a truth or info judge trained in the store -> a `judge` artifact.

Method: every labelled answer of TruthfulQA's judge fine-tuning file ("Q: …\\nA: …\\nTrue:" /
"Helpful:", " yes" / " no") runs through the judge model (judge/features.py: the extraction
engine, answers to one question packed as one tree); the activations at the prompt's last token
feed a standardised logistic probe per layer (judge/fit.py: layer and C chosen by validation
log-loss). Splits are by whole questions (judge/data.py): metrics are reported on answers to
questions the judge never saw (`unseen_questions`) and on held-out answers to seen questions
(`seen_questions`: how eval uses it, since eval's questions are all in the judge data).

Artifact `judge`: params {kind, data (sha256 of the file), limit, features, search (layers, C grid,
screening), splits, seed, dtype}; parents {model}. Payload judge.safetensors (weight, bias, mean,
std; float32) and judge.json (model key, layer, C, metrics, search table, counts). Tags
`last-judge-truth` / `last-judge-info`. batch_tokens and the device are not in the key. The
features are computed in pieces of CHUNK prompts saved in the key's work dir: a killed run resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from itictl.errors import BadInputError
from itictl.judge import data as JD
from itictl.judge import fit as JF

STEP_VERSION = 1
FLOAT16_ABOVE = 1 << 30  # feature arrays larger than this (bytes as float32) are kept as float16
CHUNK = 2048  # prompts per resumable piece of the feature extraction


def judge_params(kind: str, digest: str, *, limit: int | None, features: str, seed: int, dtype: str) -> dict[str, Any]:
    return {"kind": kind, "data": digest, "limit": limit, "features": features, "seed": seed, "dtype": dtype,
            "search": {"layers": "all", "Cs": list(JF.DEFAULT_CS), "screen_C": JF.SCREEN_C,
                       "screen_n": JF.SCREEN_N, "top": JF.TOP_LAYERS, "select": "val_log_loss"},
            "splits": {"unseen_questions": JD.UNSEEN_QUESTIONS, "val_answers": JD.VAL_ANSWERS,
                       "seen_test_answers": JD.SEEN_TEST_ANSWERS}}


def _count_records(path: Path) -> int:
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def run_judge_train(store, kind: str, *, model: str | None = None, data: str | Path | None = None,
                    limit: int | None = None, features: str = "heads", seed: int = 0, device: str = "auto",
                    dtype: str = "auto", batch_tokens: int | None = None, out=None) -> tuple[Any, bool, dict[str, Any]]:
    """Train (or reuse) a judge; tag it `last-judge-<kind>`. -> (artifact, cached, judge.json)."""
    from itictl.judge.features import FEATURES
    from itictl.models import ensure_model
    from itictl.models.devices import compute_device, resolve_dtype

    JD.check_kind(kind)
    if features not in FEATURES:
        raise BadInputError(f"unknown --features {features!r}", f"use one of {', '.join(FEATURES)}")
    if limit is not None and limit < 1:
        raise BadInputError(f"--limit must be at least 1 (got {limit})", "omit --limit for the whole file")
    if batch_tokens is not None and batch_tokens < 1:
        raise BadInputError(f"--batch-tokens must be positive (got {batch_tokens})", "try 4096 on CPU")
    dt = resolve_dtype(dtype, compute_device(device))
    path = JD.default_data_file(kind, data)
    if limit is not None and limit >= _count_records(path):
        limit = None  # the whole file: the same key as no --limit
    JD.load_examples(path, kind, limit)  # every record checked (~0.2 s), before any model work
    model_art = ensure_model(store, model, out=out)
    params = judge_params(kind, store.file_digest(path), limit=limit, features=features, seed=seed, dtype=dt)

    def build(ctx) -> None:
        _build(ctx, store, model_art, path, params, device=device, batch_tokens=batch_tokens, out=out)

    art, cached = store.produce("judge", params, {"model": model_art.key}, build, step_version=STEP_VERSION)
    store.tag(f"last-judge-{kind}", art.key)
    return art, cached, art.read_json("judge.json")


def _features(store, model_art, examples, params, *, device, batch_tokens, out, work: Path):
    """-> (X [N, layers, W], loaded model); finished chunks are kept in `work` until the judge exists."""
    import contextlib

    from itictl.judge.features import prompt_features
    from itictl.models import load_model, resolve_device
    from itictl.store.atomic import atomic_path

    dev = resolve_device(device)
    status = out.status(f"loading model {model_art.key[:12]} on {dev}") if out else contextlib.nullcontext()
    with status:
        lm = load_model(store, model_art, dtype=params["dtype"], device=dev)
    n_layers = lm.layout.n_layers + (1 if params["features"] == "resid" else 0)
    width = lm.layout.width if params["features"] == "heads" else lm.model.config.hidden_size
    dt = np.float16 if len(examples) * n_layers * width * 4 > FLOAT16_ABOVE else np.float32
    bar = out.progress("judge activations", len(examples), "answers") if out else contextlib.nullcontext(None)
    with bar as adv:
        X = np.empty((len(examples), n_layers, width), dtype=dt)
        for rows, f in _chunks(examples, work):
            if f.is_file():  # done before a crash
                X[rows] = np.load(f)
                if adv:
                    adv(len(rows))
                continue
            X[rows] = prompt_features(lm.model, lm.tokenizer, [examples[i].prompt for i in rows],
                                      features=params["features"], device=lm.device, batch_tokens=batch_tokens,
                                      store_dtype=dt, progress=adv)
            with atomic_path(f) as tmp, tmp.open("wb") as fh:
                np.save(fh, X[rows])
    return X, lm


def _chunks(examples, work: Path) -> list[tuple[np.ndarray, Path]]:
    """CHUNK-prompt pieces of the work, the answers to one question kept together where the piece
    allows (their prefix is shared), each with the work file that holds it once done (a killed run
    resumes from them)."""
    order = np.asarray(sorted(range(len(examples)), key=lambda i: (examples[i].question, i)), dtype=np.int64)
    work.mkdir(parents=True, exist_ok=True)
    return [(order[s:s + CHUNK], work / f"features_{s // CHUNK:05d}.npy") for s in range(0, len(order), CHUNK)]


def _build(ctx, store, model_art, path: Path, params: dict[str, Any], *, device: str, batch_tokens, out) -> None:
    import contextlib

    from itictl.judge.local import PAYLOAD_JSON, PAYLOAD_WEIGHTS
    from itictl.judge.metrics import binary_metrics

    examples = JD.load_examples(path, params["kind"], params["limit"])
    sp = JD.split_examples(examples, params["seed"])
    y = np.asarray([e.label for e in examples], dtype=np.int64)
    X, lm = _features(store, model_art, examples, params, device=device, batch_tokens=batch_tokens, out=out,
                      work=ctx.work)
    solver_dev = str(lm.device) if str(lm.device).startswith("cuda") else "cpu"
    n_fits = X.shape[1] + min(JF.TOP_LAYERS, X.shape[1]) * len(JF.DEFAULT_CS)  # screening + grid
    bar = out.progress("probe search", n_fits, "probes") if out else contextlib.nullcontext(None)
    with bar as adv:
        s = JF.search(X, y, sp["train"], sp["val"], seed=params["seed"], device=solver_dev, progress=adv)
    fit_rows = np.sort(np.concatenate([sp["train"], sp["val"]]))
    probe = JF.fit_final(X, y, fit_rows, s.layer, s.C, device=solver_dev)

    def scored(rows):
        return binary_metrics(y[rows], probe.predict(X[rows, probe.layer]))

    metrics = {"unseen_questions": scored(sp["unseen_test"]), "seen_questions": scored(sp["seen_test"]),
               "train": scored(fit_rows)}
    best_val = min(r["val_log_loss"] for r in s.grid)
    _write(ctx.out, PAYLOAD_WEIGHTS, probe)
    doc = {"kind": params["kind"], "model": model_art.key, "features": params["features"], "layer": probe.layer,
           "C": probe.C, "width": int(probe.weight.shape[0]), "dtype": params["dtype"], "data_file": path.name,
           "metrics": metrics, "val_log_loss": best_val,
           "counts": {"records": len(examples), "questions": len({e.question for e in examples}),
                      **{k: len(v) for k, v in sp.items()}},
           "search": {"screen": s.screen, "grid": s.grid}}
    (ctx.out / PAYLOAD_JSON).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    ctx.meta.update(layer=probe.layer, C=probe.C, unseen_accuracy=metrics["unseen_questions"]["accuracy"],
                    seen_accuracy=metrics["seen_questions"]["accuracy"])


def _write(folder: Path, name: str, probe) -> None:
    from safetensors.numpy import save_file

    save_file({"weight": probe.weight.astype(np.float32), "bias": np.asarray([probe.bias], dtype=np.float32),
               "mean": probe.mean.astype(np.float32), "std": probe.std.astype(np.float32)}, str(folder / name))
