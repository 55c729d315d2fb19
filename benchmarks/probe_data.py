"""Activations for benchmarks/probe.py: the embedded model's full tqa_mc2 set (made with
`itictl extract` when the store lacks it), a synthetic set of any shape written through itictl's own
HDF5 writer, and a throwaway store holding a hard link to either (so the probe step never hits the
cache)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MC2_QUESTIONS = 817


def default_data() -> Path | None:
    env = os.environ.get("ITICTL_DATA")
    shared = ROOT.parent / "shared" / "data" / "truthfulqa"
    return Path(env) if env else (shared if shared.is_dir() else None)


def embedded_mc2(store_root: Path, data: Path | None) -> str:
    """Key of the embedded model's full tqa_mc2 activations in store_root (extracted when absent)."""
    itictl = Path(sys.executable).with_name("itictl")
    cmd = [str(itictl), "--store", str(store_root), "--json", "-q", "extract", "--dataset", "tqa_mc2"]
    if data is not None:
        cmd += ["--data", str(data)]
    print(f"activations: {' '.join(cmd)} (cached when present; ~3-4 min on 2 idle cores otherwise)",
          file=sys.stderr)
    doc = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return doc["key"]


def mc2_shaped_labels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label, question_index, answer_index) for n prompts over 817 questions, like tqa_mc2 (~7.2
    answers a question, 1..k-1 of them true)."""
    rng = np.random.RandomState(seed)
    q_count = min(MC2_QUESTIONS, max(1, n // 2))
    per = np.full(q_count, n // q_count)
    per[rng.permutation(q_count)[: n - per.sum()]] += 1
    q = np.repeat(np.arange(q_count), per)
    a = np.concatenate([np.arange(k) for k in per])
    n_true = np.concatenate([np.full(k, rng.randint(1, max(2, k))) for k in per])
    return (a < n_true).astype(np.int8), q.astype(np.int32), a.astype(np.int32)


def synthetic(store, L: int, H: int, D: int, N: int, seed: int = 0, dtype: str = "float16"):
    """A synthetic activations artifact [N, L, H·D] (float16 as a GPU extraction stores them, or
    float32 as a CPU one does) with a planted per-head signal, written by itictl.extract.h5.write_h5
    from chunk folders like an extraction's."""
    from itictl.extract.h5 import H5_NAME, write_h5

    label, q, a = mc2_shaped_labels(N, seed)
    prompts = [SimpleNamespace(label=int(y), question_index=int(qi), answer_index=int(ai), category=None)
               for y, qi, ai in zip(label, q, a)]
    layout = SimpleNamespace(n_layers=L, n_heads=H, head_dim=D, width=H * D)

    def build(ctx) -> None:
        rng = np.random.default_rng(seed)
        signal = (rng.standard_normal((L, H * D), dtype=np.float32)
                  * np.repeat(rng.uniform(0, 0.25, (L, H)).astype(np.float32), D, axis=1))
        files = []
        for c, r0 in enumerate(range(0, N, 512)):
            r1 = min(N, r0 + 512)
            folder = ctx.work / f"chunk{c:05d}"
            folder.mkdir(parents=True, exist_ok=True)
            x = rng.standard_normal((r1 - r0, L, H * D), dtype=np.float32)
            x += (2.0 * label[r0:r1] - 1)[:, None, None] * signal
            np.save(folder / "idx.npy", np.arange(r0, r1))
            np.save(folder / "head.npy", x.astype(dtype))
            files.append(folder)
        write_h5(ctx.out / H5_NAME, files, prompts, np.full(N, 40, dtype=np.int32), fmt="tqa_mc2",
                 dtype=dtype, store_dtype=dtype, layer_wise=False, layout=layout, hidden=H * D,
                 model_key="synthetic")
        shutil.rmtree(ctx.work, ignore_errors=True)

    params = {"synthetic": [L, H, D, N], "seed": seed, "format": "tqa_mc2", "dtype": dtype}
    return store.produce("activations", params, {}, build)[0]


def throwaway_copy(root: Path, acts_art, tag: str):
    """The activations artifact again, in a fresh store at root (a hard link where possible)."""
    from itictl.extract.h5 import H5_NAME
    from itictl.store import Store

    src = acts_art.file(H5_NAME)

    def build(ctx) -> None:
        try:
            os.link(src, ctx.out / H5_NAME)
        except OSError:
            shutil.copyfile(src, ctx.out / H5_NAME)

    store = Store(root)
    return store, store.produce("activations", {"copy_of": acts_art.key, "tag": tag}, {}, build)[0]


def warm_page_cache(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass
