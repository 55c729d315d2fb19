"""Benchmark: the whole probe step at full size, itictl against the reference's per-head loop, one run.

Data (default): the embedded model's full tqa_mc2 activations (5,882 prompts, 30 layers x 9 heads,
D = 64) in --store (default /tmp/itictl-bench-store), made there with `itictl extract --dataset
tqa_mc2` when absent (~3-4 min on 2 idle cores, cached after). --activations REF: another
activations artifact in --store. --synthetic L,H,D,N[,DTYPE]: random float16 (or float32)
activations of that shape written through itictl's own HDF5 writer (labels and question ids shaped like tqa_mc2: 817
questions, ~7.2 answers each; a planted per-head signal), e.g. 32,32,128,5882 for Llama-2-7B.

itictl: `run_probe` (fold 0 of 2, val ratio 0.2, as `itictl probe` runs it) into a throwaway store
holding a hard link to the activations, so nothing is cached; the phases come from the manifest.
On a CPU (itictl.probe.blockwise): read = mapping the file, stage = gathering each layer group's
training rows, solve, accuracy = val + test and com's class sums from the mapped chunks, write =
payload + heatmap PNG. On a GPU (itictl.probe.staging): read = HDF5 into memory, stage = rows to the
device in float32, com, solve, accuracy, write. total = run_probe's wall time, store commit
included; CPU seconds (time.process_time, all threads) are printed too, since wall times on a
shared machine follow the other jobs' load. torch is imported (and CUDA initialised) before timing.
Reference (honest_llama's train_probes + get_com_directions): the HDF5 read whole through h5py, then
per head LogisticRegression(random_state=seed, max_iter=1000).fit and predict on val and test; com
in float64 numpy. Both read the file after one untimed read (page cache warm).

  python benchmarks/probe.py                                              # CPU, embedded model
  OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/probe.py --threads 1   # the same, one core
  python benchmarks/probe.py --synthetic 32,32,128,5882 --device cuda --sklearn-heads 64
(--sklearn-heads N times the reference's fits and predictions on the first N heads and
extrapolates to all; the agreement is over those N heads. best_head_gap_points: itictl's best
validation accuracy minus itictl's accuracy at the reference's best head; 0 = the same head or a tie.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for probe_data, beside this file


def reference_step(h5_path: Path, rows: dict[str, np.ndarray], seed: int, n_heads: int | None):
    """honest_llama's probe loop -> (phase seconds, val accuracy [timed heads]); fits/predictions
    on the first n_heads heads, times scaled to all heads."""
    import h5py
    from sklearn.linear_model import LogisticRegression

    laps, t, cpu0 = {}, time.perf_counter(), time.process_time()
    with h5py.File(h5_path, "r") as f:
        hw, label = f["head_wise"][...], f["label"][...]
        L, H, D = (int(f.attrs[k]) for k in ("L", "H", "D"))
    laps["read"], t = time.perf_counter() - t, time.perf_counter()
    hw = hw.reshape(len(hw), L, H, D)
    X = {k: hw[v] for k, v in rows.items()}
    y = {k: label[v] for k, v in rows.items()}
    laps["stage"], t = time.perf_counter() - t, time.perf_counter()
    heads = [(layer, h) for layer in range(L) for h in range(H)][: n_heads or L * H]
    acc, fit_s, pred_s = [], 0.0, 0.0
    for layer, h in heads:
        t0 = time.perf_counter()
        clf = LogisticRegression(random_state=seed, max_iter=1000).fit(X["train"][:, layer, h, :], y["train"])
        t1 = time.perf_counter()
        acc.append((clf.predict(X["val"][:, layer, h, :]) == y["val"]).mean())
        if len(y["test"]):
            (clf.predict(X["test"][:, layer, h, :]) == y["test"]).mean()
        fit_s, pred_s = fit_s + t1 - t0, pred_s + time.perf_counter() - t1
    scale = L * H / len(heads)
    laps["solve"], laps["accuracy"] = fit_s * scale, pred_s * scale
    t = time.perf_counter()
    tv = np.concatenate([X["train"], X["val"]]).astype(np.float64)
    ytv = np.concatenate([y["train"], y["val"]])
    tv[ytv == 1].mean(0) - tv[ytv == 0].mean(0)
    laps["com"] = time.perf_counter() - t
    cpu = time.process_time() - cpu0 + (fit_s + pred_s) * (scale - 1)  # untimed heads: as the timed ones
    return {k: round(v, 4) for k, v in laps.items()}, np.array(acc), len(heads), round(cpu, 3)


def itictl_step(workdir: Path, acts_art, device: str, seed: int, rep: int):
    """One uncached run_probe -> (phase seconds, run_probe wall seconds, val_acc [L, H], CPU seconds)."""
    from probe_data import throwaway_copy, warm_page_cache

    from itictl.extract.h5 import H5_NAME
    from itictl.probe.step import load_probes, run_probe

    root = workdir / f"probe-store-{rep}"
    store, art = throwaway_copy(root, acts_art, tag=f"{time.time()}-{rep}")
    warm_page_cache(art.file(H5_NAME))
    t0, c0 = time.perf_counter(), time.process_time()
    probes, cached = run_probe(store, art, folds=2, fold=0, val_ratio=0.2, seed=seed, split="random",
                               backend="torch", device=device)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert not cached
    out = dict(probes.meta["phase_seconds"]), round(total, 4), load_probes(probes).val_acc, round(cpu, 3)
    shutil.rmtree(root, ignore_errors=True)
    return out


def warm_up(device: str) -> None:
    """Import torch, start CUDA and its libraries (cuBLAS, cuSOLVER) on a tiny solve."""
    import torch

    from itictl.probe.solver import fit_logreg_batched

    rng = np.random.RandomState(0)
    fit_logreg_batched(rng.randn(4, 64, 8).astype(np.float32), rng.randint(0, 2, 64), device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def open_source(args, store):
    from probe_data import default_data, embedded_mc2, synthetic

    if args.synthetic:
        L, H, D, N, *dt = args.synthetic.split(",")
        L, H, D, N = int(L), int(H), int(D), int(N)
        dtype = dt[0] if dt else "float16"
        return synthetic(store, L, H, D, N, seed=args.seed, dtype=dtype), f"synthetic {L}x{H}x{D} {dtype}, {N} prompts"
    key = args.activations or embedded_mc2(Path(args.store), Path(args.data) if args.data else default_data())
    return store.open(key, kind="activations"), f"activations {key[:12]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="/tmp/itictl-bench-store")
    ap.add_argument("--activations", metavar="REF")
    ap.add_argument("--synthetic", metavar="L,H,D,N[,DTYPE]", help="DTYPE: float16 (default) or float32")
    ap.add_argument("--data", help="TruthfulQA folder for the extraction (default: $ITICTL_DATA or the shared copy)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2, help="itictl runs (each uncached); the fastest is reported")
    ap.add_argument("--sklearn-heads", type=int, default=None, help="time the reference on this many heads, extrapolate")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from probe_data import warm_page_cache

    from itictl.extract.h5 import H5_NAME, open_activations
    from itictl.probe.step import split_questions
    from itictl.store import Store

    acts_art, source = open_source(args, Store(args.store))
    with open_activations(acts_art) as a:
        q, (L, H, D), N = a.question_index, (a.L, a.H, a.D), a.n
    ids = split_questions(q, folds=2, fold=0, val_ratio=0.2, seed=args.seed, split="random")
    rows = {k: np.flatnonzero(np.isin(q, v)) for k, v in ids.items()}
    warm_up(args.device)
    with tempfile.TemporaryDirectory(prefix="probe-bench-", dir=Path(args.store).parent) as tmp:
        runs = [itictl_step(Path(tmp), acts_art, args.device, args.seed, r) for r in range(max(1, args.repeats))]
    phases, total, acc_t, cpu_t = min(runs, key=lambda r: r[1])
    warm_page_cache(acts_art.file(H5_NAME))
    ref, acc_s, n_ref, cpu_s = reference_step(acts_art.file(H5_NAME), rows, args.seed, args.sklearn_heads)
    ref_total = sum(ref.values())
    diff = np.abs(acc_t.reshape(-1)[:n_ref] - acc_s)
    print(json.dumps({
        "source": source, "layout": [L, H, D], "heads": L * H, "prompts": N,
        "train_prompts": len(rows["train"]), "device": args.device,
        "itictl": {"phases_s": phases, "run_probe_s": total, "all_runs_s": [r[1] for r in runs],
                   "cpu_s": cpu_t, "all_runs_cpu_s": [r[3] for r in runs]},
        "reference": {"phases_s": ref, "total_s": round(ref_total, 3), "heads_timed": n_ref, "cpu_s": cpu_s},
        "threads": __import__("torch").get_num_threads(),
        "ratio_step": round(ref_total / total, 2), "ratio_solve": round(ref["solve"] / phases["solve"], 2),
        "ratio_step_cpu": round(cpu_s / cpu_t, 2),
        "mean_abs_val_acc_diff_points": round(100 * float(diff.mean()), 3),
        "max_abs_val_acc_diff_points": round(100 * float(diff.max()), 3),
        "best_head_gap_points": round(100 * float(acc_t.reshape(-1)[:n_ref].max() - acc_t.reshape(-1)[np.argmax(acc_s)]), 3),
    }, indent=1))
    print(f"probe step, {L * H} heads, {len(rows['train'])} training prompts ({args.device}): itictl {total:.3f} s "
          f"vs reference {ref_total:.3f} s = {ref_total / total:.1f}x wall (CPU s {cpu_t:.3f} vs {cpu_s:.3f} = "
          f"{cpu_s / cpu_t:.1f}x)")


if __name__ == "__main__":
    main()
