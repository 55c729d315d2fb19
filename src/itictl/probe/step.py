"""The probe step: per-(layer, head) logistic regressions on head-wise activations.

Owns `run_probe` (activations artifact -> `probes` artifact), the batched trainer
`fit_logreg_batched` and the per-head scikit-learn loop `fit_logreg_sklearn`.

Splits are over questions, never prompts: the questions present in the activations are cut into
`folds` folds (seeded shuffle, or the reference's contiguous np.array_split); fold `fold` is the test
fold; inside the other folds `val_ratio` of the questions are held out for validation.

The objective is scikit-learn's LogisticRegression default (penalty l2, C=1, intercept not
penalised): minimise 0.5·||w||² + C·Σ_i logloss(y_i, x_i·w + b). The batched trainer
(itictl.probe.newton) solves it for all L·H heads at once with Newton's method (float32 products over
the prompts, float64 weights and Cholesky solves, each head stopping at its own convergence), so it
reaches the optimum that lbfgs(max_iter=1000) approaches. On a CPU the torch backend works from the
mapped file a few layers at a time (itictl.probe.blockwise); elsewhere the activations are read
once, straight into the solver's float32 layout on the device (itictl.probe.staging). The
manifest's meta records the step's phases (read, stage, [com,] solve, accuracy, write).

Payload: probes.json (val_acc [L][H], test_acc, question ids of train/val/test, layout, model key),
probes.safetensors (weight [L,H,D], bias [L,H], com [L,H,D] = mean(true) − mean(false) over train+val
prompts), heatmap.png.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from itictl import hooks
from itictl.errors import BadInputError
from itictl.probe import blockwise
from itictl.probe.solver import accuracy, fit_logreg_batched, fit_logreg_sklearn  # noqa: F401 (re-exported)
from itictl.probe.staging import (
    Laps,
    com_staged,
    fit_staged,
    score_staged,
    stage,
    stage_h5,
)

PROBE_STEP_VERSION = 2  # 2: the float32 staged solver (weights within ~1e-4 of version 1's)
BACKENDS = ("torch", "sklearn")
SPLITS = ("random", "contiguous")
VAL_DRAWS = ("seeded", "stream")  # per-fold RandomState(seed) | one stream over the folds (the reference)


# ---- reading activations ------------------------------------------------------------------------
@dataclass
class HeadActs:
    """Activations as numpy arrays: head_wise [N, L, H, D], label [N], question_index [N]."""

    head_wise: np.ndarray
    label: np.ndarray
    question_index: np.ndarray
    model_key: str | None

    @property
    def shape(self) -> tuple[int, int, int]:
        _, L, H, D = self.head_wise.shape
        return L, H, D


def read_head_acts(acts_art) -> HeadActs:
    """Load an activations artifact's head-wise activations, labels and question ids into memory."""
    from itictl.extract import open_activations

    with open_activations(acts_art) as acts:
        hw = acts.load_head_wise()  # [N, L, H·D], stored dtype (parallel raw-chunk reads)
        N, L, W = hw.shape
        if W != acts.H * acts.D or L != acts.L:
            raise BadInputError(f"activations {acts_art.key[:12]} have shape {hw.shape}, not L={acts.L}, H·D={acts.H}×{acts.D}",
                                "re-extract the activations")
        return HeadActs(hw.reshape(N, L, acts.H, acts.D), np.asarray(acts.label, dtype=np.int64),
                        np.asarray(acts.question_index, dtype=np.int64),
                        acts_art.parents.get("model") or (acts.model or None))


# ---- splits -------------------------------------------------------------------------------------
def split_questions(question_ids: np.ndarray, *, folds: int, fold: int | None, val_ratio: float, seed: int,
                    split: str, val_draw: str = "seeded") -> dict[str, list[int]]:
    """{'train', 'val', 'test'} question ids (sorted) for one fold; fold None: split_all. val_draw
    'stream': fold i's train/val draw continues one seeded stream after folds 0..i-1's (the reference)."""
    from itictl.data import question_folds, train_val_split

    if fold is None:
        return split_all(question_ids, val_ratio=val_ratio, seed=seed)
    uq = np.unique(question_ids)
    parts = question_folds(len(uq), folds, seed, split=split)  # positions into uq
    test_pos = np.asarray(parts[fold], dtype=np.int64)
    train_pos = np.concatenate([np.asarray(p, np.int64) for j, p in enumerate(parts) if j != fold])
    if val_draw == "stream":
        from itictl.data.folds import stream_train_val_split

        tr, va = stream_train_val_split([uq[np.asarray(p, np.int64)] for p in parts], fold, val_ratio, seed)
    else:
        tr, va = train_val_split(uq[train_pos], val_ratio, seed)
    return {"train": sorted(int(x) for x in tr), "val": sorted(int(x) for x in va),
            "test": sorted(int(x) for x in uq[test_pos])}


def split_all(question_ids: np.ndarray, *, val_ratio: float, seed: int) -> dict[str, list[int]]:
    """All questions, no test fold (the reference's edit_weight.py): every question goes to the
    train/val split data.train_val_split makes; 'test' is empty."""
    from itictl.data import train_val_split

    tr, va = train_val_split(np.unique(question_ids), val_ratio, seed)
    return {"train": sorted(int(x) for x in tr), "val": sorted(int(x) for x in va), "test": []}


def check_labels(y: np.ndarray) -> None:
    if len(np.unique(y)) < 2:
        raise BadInputError("the training questions have only one label", "use more questions (a larger --limit)")


def train_probes(acts: HeadActs, rows_train: np.ndarray, *, backend: str, seed: int, device=None):
    """Fit every head's probe on the given prompt rows -> (w [L,H,D], b [L,H]) float64 numpy."""
    check_labels(acts.label[rows_train])
    st = stage(acts.head_wise, acts.label, {"train": rows_train}, device)
    return fit_staged(st, backend=backend, seed=seed, overwrite=True)  # st is ours to reuse


def head_accuracy(acts: HeadActs, rows: np.ndarray, w: np.ndarray, b: np.ndarray, device=None) -> np.ndarray:
    """Accuracy of every head's probe on the given prompt rows -> [L, H]."""
    return score_staged(stage(acts.head_wise, acts.label, {"val": rows}, device), "val", w, b)


headaccuracy = head_accuracy  # the old name


def com_directions(acts: HeadActs, rows: np.ndarray, device=None) -> np.ndarray:
    """mean(true) − mean(false) over the given prompt rows -> [L, H, D] (the reference's 'com')."""
    return com_staged(stage(acts.head_wise, acts.label, {"train": rows}, device), ("train",))


@dataclass
class FoldFit:
    """One fold's probes: w [L,H,D], b [L,H], com [L,H,D], val_acc [L,H], test_acc [L,H] or None."""

    w: np.ndarray
    b: np.ndarray
    com: np.ndarray
    val_acc: np.ndarray
    test_acc: np.ndarray | None
    model_key: str | None


def fit_fold(acts, acts_art, rows: dict[str, np.ndarray], *, backend: str, seed: int, device=None,
             laps: Laps | None = None) -> FoldFit:
    """Probes of an open Activations on rows {'train', 'val', 'test'}: the data is read once into
    the solver's layout on the device (phases read, stage, com, solve, accuracy go to laps)."""
    laps = laps if laps is not None else Laps(device)
    if acts.head_wise.shape[1:] != (acts.L, acts.H * acts.D):
        raise BadInputError(f"activations {acts_art.key[:12]} have shape {acts.head_wise.shape}, not L={acts.L}, "
                            f"H·D={acts.H}×{acts.D}", "re-extract the activations")
    check_labels(acts.label[rows["train"]])
    mapped = blockwise.plan(acts, backend, device)
    if mapped is not None:  # a CPU: straight from the mapped file, a few layers at a time
        return FoldFit(*blockwise.fit_mapped(acts, mapped, rows, laps),
                       acts_art.parents.get("model") or (acts.model or None))
    st = stage_h5(acts, rows, device, laps=laps)
    laps.lap("stage")
    com = com_staged(st, ("train", "val"))  # before the solver reuses the training part's buffer
    laps.lap("com")
    w, b = fit_staged(st, backend=backend, seed=seed, overwrite=True)
    laps.lap("solve")
    val_acc = score_staged(st, "val", w, b)
    test_acc = score_staged(st, "test", w, b) if len(rows.get("test", ())) else None
    laps.lap("accuracy")
    return FoldFit(w, b, com, val_acc, test_acc, acts_art.parents.get("model") or (acts.model or None))


# ---- the step -----------------------------------------------------------------------------------
def validate_options(folds: int, fold: int | None, val_ratio: float, split: str, backend: str,
                     val_draw: str = "seeded") -> None:
    """fold None: all questions (no test fold); `folds` is still checked (it is the spec's)."""
    if folds < 2:
        raise BadInputError(f"--folds must be ≥ 2, got {folds}", "use 2 (the reference's 2-fold split)")
    if fold is not None and not 0 <= fold < folds:
        raise BadInputError(f"--fold must be in 0..{folds - 1}, got {fold}", "folds are numbered from 0")
    if not (0.0 < val_ratio < 1.0):
        raise BadInputError(f"--val-ratio must be strictly between 0 and 1, got {val_ratio}", "use 0.2")
    if split not in SPLITS:
        raise BadInputError(f"unknown split {split!r}", f"use one of: {', '.join(SPLITS)}")
    if backend not in BACKENDS:
        raise BadInputError(f"unknown backend {backend!r}", f"use one of: {', '.join(BACKENDS)}")
    if val_draw not in VAL_DRAWS:
        raise BadInputError(f"unknown --val-draw {val_draw!r}", f"use one of: {', '.join(VAL_DRAWS)}")


ALL_QUESTIONS = "all"  # the `fold` param of probes on every question (no folds, no test fold)


def probe_params(*, folds: int, fold: int | None, val_ratio: float, seed: int, split: str, backend: str,
                 val_draw: str = "seeded") -> dict:
    if fold is None:  # folds and split do not change an all-questions fit: not in its key
        return {"fold": ALL_QUESTIONS, "val_ratio": float(val_ratio), "seed": int(seed), "backend": backend}
    extra = {"val_draw": val_draw} if val_draw != "seeded" else {}  # only when set: earlier keys stay
    return {"folds": int(folds), "fold": int(fold), "val_ratio": float(val_ratio), "seed": int(seed),
            "split": split, "backend": backend, **extra}


def run_probe(store, acts_art, *, folds: int = 2, fold: int | None = 0, val_ratio: float = 0.2, seed: int = 42,
              split: str = "random", backend: str = "torch", out=None, device=None, val_draw: str = "seeded"):
    """Train probes on one fold of an activations artifact -> (probes Artifact, cached).
    fold None: on all questions (train/val split of every question, no test fold)."""
    validate_options(folds, fold, val_ratio, split, backend, val_draw)
    if acts_art.kind != "activations":
        raise BadInputError(f"{acts_art.key[:12]} is a {acts_art.kind} object, not activations",
                            "pass an activations ref (see `itictl store ls --kind activations`)")
    params = probe_params(folds=folds, fold=fold, val_ratio=val_ratio, seed=seed, split=split, backend=backend,
                          val_draw=val_draw)

    def build(ctx) -> None:
        from safetensors.numpy import save_file

        from itictl.extract import open_activations
        from itictl.probe import heatmap
        hooks.fire("probe.start", key=ctx.key)
        t0 = time.time()
        laps = Laps(device)
        with open_activations(acts_art) as acts:
            ids = split_questions(acts.question_index, folds=folds, fold=fold, val_ratio=val_ratio, seed=seed,
                                  split=split, val_draw=val_draw)
            rows = {k: np.flatnonzero(np.isin(acts.question_index, v)) for k, v in ids.items()}
            if len(rows["train"]) == 0 or len(rows["val"]) == 0:
                raise BadInputError("too few questions for this split (empty train or validation part)",
                                    "use more questions or a different --val-ratio")
            L, H, D = acts.L, acts.H, acts.D
            if out is not None:
                out.info(f"training {L * H} probes ({L} layers × {H} heads, D={D}) on {len(rows['train'])} "
                         f"prompts [{backend}]")
            fit = fit_fold(acts, acts_art, rows, backend=backend, seed=seed, device=device, laps=laps)
        w, b, com, val_acc, test_acc = fit.w, fit.b, fit.com, fit.val_acc, fit.test_acc
        save_file({"weight": w.astype(np.float32), "bias": b.astype(np.float32), "com": com.astype(np.float32)},
                  str(ctx.out / "probes.safetensors"))
        doc = {
            "layout": {"L": L, "H": H, "D": D},
            "model_key": fit.model_key,
            "activations_key": acts_art.key,
            "params": params,
            "questions": ids,
            "n_prompts": {k: len(v) for k, v in rows.items()},
            "val_acc": val_acc.round(6).tolist(),
            "test_acc": None if test_acc is None else test_acc.round(6).tolist(),
        }  # timings go to the manifest's meta, never the payload: payloads are reproducible
        (ctx.out / "probes.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
        heatmap.write_png(val_acc, ctx.out / "heatmap.png",
                          title=f"probe validation accuracy ({_fold_title(fold, folds)}, {backend})")
        laps.lap("write")
        ctx.meta.update({"layout": doc["layout"], "fit_seconds": laps["solve"], "phase_seconds": dict(laps),
                         "best_val_acc": float(val_acc.max()), "wall_s": round(time.time() - t0, 3)})

    return store.produce("probes", params, {"activations": acts_art.key}, build, step_version=PROBE_STEP_VERSION)


def _fold_title(fold: int | None, folds: int) -> str:
    return "all questions" if fold is None else f"fold {fold}/{folds}"


@dataclass
class Probes:
    """A probes artifact read back: val_acc [L,H], weight [L,H,D], bias [L,H], com [L,H,D], doc."""

    val_acc: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    com: np.ndarray
    doc: dict

    @property
    def layout(self) -> tuple[int, int, int]:
        lay = self.doc["layout"]
        return int(lay["L"]), int(lay["H"]), int(lay["D"])


def load_probes(art) -> Probes:
    from safetensors.numpy import load_file

    if art.kind != "probes":
        raise BadInputError(f"{art.key[:12]} is a {art.kind} object, not probes", "pass a probes ref")
    doc = art.read_json("probes.json")
    t = load_file(str(art.file("probes.safetensors")))
    return Probes(np.asarray(doc["val_acc"], dtype=np.float64), t["weight"], t["bias"], t["com"], doc)
