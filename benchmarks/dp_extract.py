"""Data-parallel extraction benchmark (issue 8): single-process `itictl extract` vs
`torchrun --nproc-per-node N -m itictl extract` of the same prompts into two fresh stores.

Prints both compute times (the extract JSON's meta.compute_s: model loading excluded; for the
torchrun run, until the slowest rank finished), prompts/s, the throughput ratio, and whether the
keys and the activations.h5 payload digests are identical.

  # on a 2-GPU box, a Llama-2-7B-shaped random fp16 model written once to a folder:
  python benchmarks/dp_extract.py --make-model /tmp/llama2-7b-random --model /tmp/llama2-7b-random \\
      --nproc 2 --data /path/to/truthfulqa
  # later runs reuse the folder:
  python benchmarks/dp_extract.py --model /tmp/llama2-7b-random --nproc 2 --data /path/to/truthfulqa
  # CPU smoke test (gloo): --device cpu --limit 40 --make-model DIR --layers 2 --small

The random model takes its tokenizer from the embedded SmolLM2 model (vocabulary 49,152), so the
prompt lengths and question-prefix sharing are those of a real BPE tokenizer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_model(path: Path, layers: int, small: bool, device: str, tokenizer: str | None = None,
               dims: tuple[int, int, int, int] | None = None) -> None:
    """A Llama-2-7B-shaped (or, with small=True, tiny; with dims = (hidden, layers, heads, intermediate),
    that shape) random model folder with a real tokenizer (benchmarks/eval_e2e.py uses it too)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from itictl.models import ensure_model
    from itictl.models.loading import hf_folder
    from itictl.store import Store

    if tokenizer:  # the embedded tokenizer saved as a folder (machines without the GGUF)
        tok = AutoTokenizer.from_pretrained(tokenizer)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "store")
            store.ensure()
            tok = AutoTokenizer.from_pretrained(hf_folder(ensure_model(store, None)))
    path.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(path)
    if dims is not None:
        hidden, layers, heads, inter = dims
        cfg = LlamaConfig(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=heads, num_hidden_layers=layers,
                          intermediate_size=inter, vocab_size=len(tok), max_position_embeddings=4096, rms_norm_eps=1e-5)
    elif small:
        cfg = LlamaConfig(hidden_size=256, num_attention_heads=8, num_key_value_heads=8, num_hidden_layers=layers,
                          intermediate_size=688, vocab_size=len(tok), max_position_embeddings=4096)
    else:
        cfg = LlamaConfig(hidden_size=4096, num_attention_heads=32, num_key_value_heads=32, num_hidden_layers=layers,
                          intermediate_size=11008, vocab_size=len(tok), max_position_embeddings=4096,
                          rms_norm_eps=1e-5)
    cfg.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.02)
    model.save_pretrained(path, safe_serialization=True)
    del model


def run(cmd: list[str], env: dict[str, str]) -> tuple[dict, float]:
    t = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.time() - t
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    return json.loads(p.stdout), wall


def payload(store: Path, key: str) -> dict:
    m = json.loads((store / "objects" / key[:2] / key[2:] / "manifest.json").read_text())
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder (itictl extract -m)")
    ap.add_argument("--nproc", type=int, default=2, help="torchrun --nproc-per-node")
    ap.add_argument("--data", required=True, help="TruthfulQA folder")
    ap.add_argument("--dataset", default="tqa_mc2")
    ap.add_argument("--limit", type=int, default=None, help="first N prompts (default: all)")
    ap.add_argument("--device", default="cuda", help="cuda (one GPU per rank) or cpu (gloo)")
    ap.add_argument("--batch-tokens", type=int, default=None)
    ap.add_argument("--baseline-batch-tokens", type=int, default=None,
                    help="also time one single-process run at this --batch-tokens (e.g. 65536, the single-GPU "
                         "optimum) in a third store, and print the torchrun run's throughput against it")
    ap.add_argument("--work", default=None, help="folder for the two stores (default: a temp dir, removed)")
    ap.add_argument("--make-model", metavar="DIR", default=None, help="first write a random Llama-2-7B-shaped model here")
    ap.add_argument("--layers", type=int, default=32, help="--make-model: layers")
    ap.add_argument("--small", action="store_true", help="--make-model: a tiny random model (smoke tests)")
    ap.add_argument("--tokenizer", default=None, help="--make-model: tokenizer folder (default: the embedded model's)")
    ap.add_argument("--single-only", action="store_true", help="run only the single-process extract and print its meta")
    ap.add_argument("--fuse", default=None, help="itictl extract --fuse (auto | off | compile | max-autotune)")
    args = ap.parse_args()

    if args.make_model:
        t = time.time()
        make_model(Path(args.make_model), args.layers, args.small, args.device if args.device != "cpu" else "cpu",
                   args.tokenizer)
        print(f"wrote random model to {args.make_model} in {time.time() - t:.1f} s", file=sys.stderr)

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="dp-extract-"))
    one, dp, base = work / "single", work / "dp", work / "baseline"
    for s in (one, dp, base):
        shutil.rmtree(s, ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)}
    env.pop("ITICTL_TEST_STORE", None)
    common = ["extract", "-m", args.model, "--data", args.data, "-d", args.dataset, "--device", args.device,
              "--json", "-q"]
    if args.limit:
        common += ["--limit", str(args.limit)]
    if args.batch_tokens:
        common += ["--batch-tokens", str(args.batch_tokens)]
    if args.fuse:
        common += ["--fuse", args.fuse]
    try:
        a, a_wall = run([sys.executable, "-m", "itictl", "--store", str(one), *common], env)
        if args.single_only:  # one process: its timings alone (issue 3's end-to-end CLI number)
            ma = payload(one, a["key"])
            print(json.dumps({"model": args.model, "dataset": args.dataset, "wall_s": round(a_wall, 1),
                              "meta": ma["meta"], "digest": ma["files"]["activations.h5"]["sha256"]}, indent=2))
            return
        b, b_wall = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                         str(args.nproc), "-m", "itictl", "--store", str(dp), *common], env)
        ma, mb = payload(one, a["key"]), payload(dp, b["key"])
        same = a["key"] == b["key"] and ma["files"] == mb["files"]
        sa, sb = ma["meta"]["compute_s"], mb["meta"]["compute_s"]
        doc = {
            "model": args.model, "dataset": args.dataset, "prompts": ma["meta"]["n_prompts"], "nproc": args.nproc,
            "device": args.device, "batch_tokens": ma["meta"].get("batch_tokens"),
            "single": {"compute_s": sa, "prompts_per_s": ma["meta"]["prompts_per_s"], "wall_s": round(a_wall, 1)},
            "torchrun": {"compute_s": sb, "prompts_per_s": mb["meta"]["prompts_per_s"], "wall_s": round(b_wall, 1),
                         "rank_compute_s": mb["meta"].get("rank_compute_s"),
                         "rank_prompts": mb["meta"].get("rank_prompts")},
            "throughput_ratio": round(sa / sb, 3) if sb else None,
            "same_key": a["key"] == b["key"], "identical_payload_digests": same,
            "digest": ma["files"]["activations.h5"]["sha256"],
        }
        if args.baseline_batch_tokens:
            cmd = [c for c in common]
            if "--batch-tokens" in cmd:
                i = cmd.index("--batch-tokens")
                del cmd[i:i + 2]
            c, c_wall = run([sys.executable, "-m", "itictl", "--store", str(base), *cmd, "--batch-tokens",
                             str(args.baseline_batch_tokens)], env)
            mc = payload(base, c["key"])
            doc["baseline"] = {"batch_tokens": args.baseline_batch_tokens, "compute_s": mc["meta"]["compute_s"],
                               "prompts_per_s": mc["meta"]["prompts_per_s"], "wall_s": round(c_wall, 1),
                               "same_key": c["key"] == a["key"]}
            doc["throughput_ratio_vs_baseline"] = round(mc["meta"]["compute_s"] / sb, 3) if sb else None
        print(json.dumps(doc, indent=2))
        print(f"single {sa:.2f} s, torchrun x{args.nproc} {sb:.2f} s: throughput ratio {doc['throughput_ratio']}x; "
              f"identical digests: {same}", file=sys.stderr)
        if not same:
            raise SystemExit(1)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
