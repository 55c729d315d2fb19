"""Benchmark: batched torch probes vs the reference's per-head scikit-learn loop, same data, same run.

Data: an activations artifact from a store (--store PATH --activations REF), or random activations
shaped like a model (--shape smollm2 = 30×9×64, --shape llama2-7b = 32×32×128) with a planted
per-head signal. Prints timings, the ratio and the mean |accuracy difference| as JSON.

  python benchmarks/probe.py --store ~/.local/share/itictl --activations <ref>
  python benchmarks/probe.py --shape llama2-7b --prompts 2350 --device cuda --sklearn-heads 64
(--sklearn-heads N times sklearn on the first N heads and extrapolates to all, for big shapes.)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

SHAPES = {"smollm2": (30, 9, 64), "llama2-7b": (32, 32, 128)}


def random_acts(L, H, D, n, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    signal = rng.randn(L, H, D) * rng.uniform(0, 0.3, (L, H, 1))
    X = rng.randn(n, L, H, D).astype(np.float32) + (2 * y - 1)[:, None, None, None] * signal
    q = np.arange(n) // 6
    return X.astype(np.float32), y, q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store")
    ap.add_argument("--activations")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="smollm2")
    ap.add_argument("--prompts", type=int, default=2940, help="random data: prompts (train+val; 2-fold of 5,882)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sklearn-heads", type=int, default=None, help="time sklearn on this many heads, extrapolate")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    from itictl.probe.step import HeadActs, fit_logreg_batched, fit_logreg_sklearn, split_questions

    if args.activations:
        from itictl.probe.step import read_head_acts
        from itictl.store import Store

        acts = read_head_acts(Store(args.store).open(args.activations, kind="activations"))
        source = f"activations {args.activations}"
    else:
        L, H, D = SHAPES[args.shape]
        X, y, q = random_acts(L, H, D, args.prompts)
        acts = HeadActs(X, y, q, None)
        source = f"random {args.shape} {L}x{H}x{D}, {args.prompts} prompts"
    L, H, D = acts.shape
    s = split_questions(acts.question_index, folds=2, fold=0, val_ratio=0.2, seed=args.seed, split="random")
    tr = np.flatnonzero(np.isin(acts.question_index, s["train"]))
    va = np.flatnonzero(np.isin(acts.question_index, s["val"]))
    Xtr = np.ascontiguousarray(acts.head_wise[tr].transpose(1, 2, 0, 3).reshape(L * H, len(tr), D))
    Xva = acts.head_wise[va].transpose(1, 2, 0, 3).reshape(L * H, len(va), D).astype(np.float64)
    ytr, yva = acts.label[tr], acts.label[va]

    import torch  # imported before timing: the import is not part of the fit

    fit_logreg_batched(Xtr[:4], ytr, device=args.device)  # warm-up (CUDA context, kernels, thread pools)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    w_t, b_t, iters = fit_logreg_batched(Xtr, ytr, device=args.device)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_torch = time.perf_counter() - t0

    n_sk = min(args.sklearn_heads or L * H, L * H)
    t0 = time.perf_counter()
    w_s, b_s = fit_logreg_sklearn(Xtr[:n_sk], ytr, seed=args.seed)
    t_sk = (time.perf_counter() - t0) * (L * H / n_sk)

    def acc(w, b, X):
        return (((np.einsum("pmd,pd->pm", X, w) + b[:, None]) > 0) == (yva == 1)).mean(1)

    a_t = acc(w_t.numpy()[:n_sk], b_t.numpy()[:n_sk], Xva[:n_sk])
    a_s = acc(w_s, b_s, Xva[:n_sk])
    print(json.dumps({"source": source, "heads": L * H, "train_prompts": int(len(tr)), "device": args.device,
                      "torch_s": round(t_torch, 3), "newton_iters": iters,
                      "sklearn_s": round(t_sk, 3), "sklearn_extrapolated_from": n_sk,
                      "speedup": round(t_sk / t_torch, 2),
                      "mean_abs_acc_diff_points": round(100 * float(np.abs(a_t - a_s).mean()), 3)}, indent=1))


if __name__ == "__main__":
    main()
