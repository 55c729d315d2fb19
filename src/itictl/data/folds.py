"""Question folds and the train/validation split inside the training folds.

Splits are over question ids, never prompts. Semantics follow honest_llama's validate_2fold.py:
- `question_folds(n, k, seed, 'contiguous')` = np.array_split(np.arange(n), k) (the reference);
  'random' permutes with np.random.RandomState(seed) first, then array_splits (each fold sorted).
- `train_val_split(ids, val_ratio, seed)`: train = RandomState(seed).choice(ids,
  int(len(ids)·(1−val_ratio)), replace=False) (in draw order); val = the other ids in input order.
  The reference seeds numpy once per run, so its fold 0 equals ours with the same seed; later
  folds there continue the same random stream, here every call starts from `seed`.
- `stream_train_val_split(parts, fold, val_ratio, seed)`: the reference's stream literally
  (val_draw 'stream'): one RandomState(seed); for folds 0, 1, … in order, train = choice(the other
  folds' ids concatenated in fold order, int(len·(1−val_ratio)), replace=False), val = the rest;
  returns fold `fold`'s draw (the earlier folds' draws only advance the stream).
"""

from __future__ import annotations

import math

import numpy as np

from itictl.errors import BadInputError

SPLITS = ("random", "contiguous")


def question_folds(n_questions: int, k: int, seed: int, split: str = "random") -> list[np.ndarray]:
    if split not in SPLITS:
        raise BadInputError(f"unknown split {split!r}", f"use one of: {', '.join(SPLITS)}")
    n, k = int(n_questions), int(k)
    if n < 2:
        raise BadInputError(f"cannot make folds of {n} question(s)", "use at least 2 questions")
    if k < 2 or k > n:
        raise BadInputError(f"--folds {k} is out of range for {n} questions", f"use 2 <= folds <= {n}")
    if split == "contiguous":
        return [f.astype(np.int64) for f in np.array_split(np.arange(n, dtype=np.int64), k)]
    perm = np.random.RandomState(seed).permutation(n).astype(np.int64)
    return [np.sort(f) for f in np.array_split(perm, k)]


def train_val_split(question_ids, val_ratio: float, seed: int,
                    rng: np.random.RandomState | None = None) -> tuple[np.ndarray, np.ndarray]:
    """rng: draw from this stream (advancing it) instead of a fresh RandomState(seed)."""
    ids = np.asarray(question_ids, dtype=np.int64).reshape(-1)
    try:
        r = float(val_ratio)
    except (TypeError, ValueError):
        raise BadInputError(f"--val-ratio {val_ratio!r} is not a number", "use a value in (0, 1), e.g. 0.2") from None
    if not math.isfinite(r) or not 0.0 < r < 1.0:
        raise BadInputError(f"--val-ratio {val_ratio} is outside (0, 1)", "use a value in (0, 1), e.g. 0.2")
    if len(np.unique(ids)) != len(ids):
        raise BadInputError("question ids for the train/val split contain duplicates", "pass unique question ids")
    n_train = int(len(ids) * (1 - r))
    if n_train == 0 or n_train == len(ids):
        raise BadInputError(f"--val-ratio {r} leaves an empty {'train' if n_train == 0 else 'validation'} set "
                            f"for {len(ids)} questions", "use more questions or another --val-ratio")
    rng = rng if rng is not None else np.random.RandomState(seed)
    train = rng.choice(ids, size=n_train, replace=False).astype(np.int64)
    in_train = set(train.tolist())
    val = np.array([x for x in ids.tolist() if x not in in_train], dtype=np.int64)
    return train, val


def stream_train_val_split(parts, fold: int, val_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference's per-fold train/val draw: one RandomState(seed) for all folds, in fold order.
    parts: the folds' question ids; -> fold `fold`'s (train ids in draw order, val ids)."""
    rng = np.random.RandomState(seed)
    parts = [np.asarray(p, dtype=np.int64).reshape(-1) for p in parts]
    for i in range(int(fold) + 1):
        others = np.concatenate([p for j, p in enumerate(parts) if j != i])
        train, val = train_val_split(others, val_ratio, seed, rng=rng)
    return train, val
