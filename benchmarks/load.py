"""Benchmark: first load (GGUF dequantisation / folder digests) vs cached load of a model.

Each measurement runs in a fresh Python process (no in-process memo), against one store:
  run 1  empty store: ensure_model (+ GGUF -> HF folder conversion) + load_model
  run 2  same store:  ensure_model (cache hit) + load_model from the cached artifact
The baseline for the embedded default is transformers' own GGUF load (what every run would pay
without the cached artifact), timed in a third process.

Usage:
  python benchmarks/load.py                               # embedded SmolLM2, CPU
  python benchmarks/load.py --device cuda --dtype float16
  python benchmarks/load.py --random-llama2-7b --device cuda   # Llama-2-7B-shaped random fp16 folder
  python benchmarks/load.py --random-llama2-7b --layers 4      # same shape per layer, fewer layers
  python benchmarks/load.py --model PATH_OR_HUB_ID
`load_s` includes transformers' lazy import of the model's modules (seconds on a busy CPU);
`reload_s` is a second load_model(fresh=True) in the same process: the load itself.
Prints a table and, last, one JSON line with all numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(args: argparse.Namespace) -> None:
    """One timed ensure+load in this process; prints one JSON line."""
    t0 = time.perf_counter()
    import torch
    import transformers  # noqa: F401  (library import time is reported apart from load time)
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    from itictl.models import ensure_model, load_model
    from itictl.store import Store

    t_import = time.perf_counter() - t0
    store = Store(args.store)
    store.ensure()
    t1 = time.perf_counter()
    art = ensure_model(store, args.model)
    t_ensure = time.perf_counter() - t1
    t2 = time.perf_counter()
    lm = load_model(store, art, dtype=args.dtype, device=args.device)
    if lm.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_load = time.perf_counter() - t2
    t3 = time.perf_counter()  # again, modules imported: the load itself
    load_model(store, art, dtype=args.dtype, device=args.device, fresh=True)
    if lm.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_reload = time.perf_counter() - t3
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], device=lm.device)
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits
    print(json.dumps({"import_s": t_import, "ensure_s": t_ensure, "load_s": t_load, "reload_s": t_reload,
                      "total_s": t_ensure + t_load, "key": art.key, "device": lm.device, "dtype": lm.dtype,
                      "layout": [lm.layout.n_layers, lm.layout.n_heads, lm.layout.head_dim],
                      "logit0": float(logits[0, -1, 0])}))


def gguf_baseline(args: argparse.Namespace) -> None:
    """transformers' direct GGUF load of the embedded model (no store); prints one JSON line."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from itictl.models.embedded import embedded_gguf_path

    p = embedded_gguf_path()
    t0 = time.perf_counter()
    AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
    AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, dtype=torch.float32)
    print(json.dumps({"load_s": time.perf_counter() - t0}))


def make_random_llama(folder: Path, layers: int, device: str) -> Path:
    """A Llama-2-7B-shaped (hidden 4096, 32 heads x 128, MLP 11008, vocab 32000) random fp16 folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.models.tiny import tiny_tokenizer

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32,
                      num_hidden_layers=layers, vocab_size=32000, max_position_embeddings=4096,
                      bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    dev = "cuda" if device.startswith("cuda") else "cpu"
    with torch.device(dev):
        model = LlamaForCausalLM(cfg).to(torch.float16)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="2GB")
    tiny_tokenizer().save_pretrained(folder)
    del model
    return folder


def run_child(mode: str, args: argparse.Namespace, store: Path, model: str | None) -> dict:
    cmd = [sys.executable, __file__, f"--{mode}", "--store", str(store), "--dtype", args.dtype,
           "--device", args.device]
    if model:
        cmd += ["--model", model]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"{mode} run failed (exit {p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model spec (default: the embedded SmolLM2)")
    ap.add_argument("--random-llama2-7b", action="store_true", help="benchmark a random Llama-2-7B-shaped folder")
    ap.add_argument("--layers", type=int, default=32, help="layers of the random Llama (default 32 = 7B)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    ap.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    ap.add_argument("--store", default=None, help="store to use (default: a fresh temporary one)")
    ap.add_argument("--repeats", type=int, default=2, help="cached-load repeats (best is reported)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.baseline:
        return gguf_baseline(args)

    with tempfile.TemporaryDirectory(prefix="itictl-bench-") as tmp:
        store = Path(args.store) if args.store else Path(tmp) / "store"
        model = args.model
        if args.random_llama2_7b:
            t = time.perf_counter()
            model = str(make_random_llama(Path(tmp) / "llama2-7b-random", args.layers, args.device))
            print(f"made random Llama-2-7B-shaped folder ({args.layers} layers) in {time.perf_counter() - t:.1f}s",
                  file=sys.stderr)
        first = run_child("child", args, store, model)
        cached = min((run_child("child", args, store, model) for _ in range(args.repeats)),
                     key=lambda r: r["total_s"])
        assert cached["key"] == first["key"]
        base = run_child("baseline", args, store, None) if model is None else None
        rows = [("python+torch+transformers import", cached["import_s"]),
                ("first ensure+load (empty store)", first["total_s"]),
                ("  of which ensure_model", first["ensure_s"]),
                ("cached ensure+load", cached["total_s"]),
                ("  of which ensure_model", cached["ensure_s"]),
                ("cached reload, modules warm", cached["reload_s"])]
        if base:
            rows.append(("transformers GGUF load (baseline)", base["load_s"]))
        print(f"model={model or 'embedded SmolLM2-135M-Instruct'} device={first['device']} dtype={first['dtype']} "
              f"layout(L,H,D)={tuple(first['layout'])}")
        for name, v in rows:
            print(f"{name:<36} {v:8.2f} s")
        ratio = first["total_s"] / cached["total_s"]
        print(f"{'first / cached':<36} {ratio:8.1f} x")
        if base:
            print(f"{'GGUF baseline / cached':<36} {base['load_s'] / cached['total_s']:8.1f} x")
        print(json.dumps({"first": first, "cached": cached, "gguf_baseline": base, "ratio_first_cached": ratio}))


if __name__ == "__main__":
    main()
