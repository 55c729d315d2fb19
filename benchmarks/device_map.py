"""Benchmark/check: a model split across GPUs with a device map gives the single-GPU results.

Loads the same weights twice through itictl.models.load_model — (a) on one device (--device,
default cuda:0) and (b) dispatched by accelerate with --device-map over every visible GPU — and for
each: extracts head-wise activations of --limit tqa_mc2 prompts (itictl.extract.engine),
applies a random intervention (--heads heads, α=--alpha, σ from the extracted activations) and
compares last-token logits on --prompts prompts, bakes it (o_proj.bias = W_o·δ_l) and compares the
baked logits, then saves the split model's bake as a HF folder and reloads it on one device.
Every pair passes when ‖a−b‖/‖b‖ < --tol (1e-2: fp16 rounding; the split run adds activations on
other GPUs in a different order, nothing else).

Models:
  llama2-7b-random  Llama-2-7B shapes (32 layers, 32 heads × 128, vocab 32,000), random fp16
                    weights from --seed (std 0.02, like transformers' init), built once and saved
                    to a temporary folder; prompts use the embedded model's tokenizer, ids folded
                    into 32,000. --layers / --hidden shrink it for a CPU smoke run.
  embedded          the embedded SmolLM2-135M (store: --store, $ITICTL_TEST_STORE or a temp one).
  PATH or Hub id    any model folder / Hub id itictl can load.

  python benchmarks/device_map.py --device-map balanced --model llama2-7b-random --data DIR
  python benchmarks/device_map.py --device cpu --device-map auto --model llama2-7b-random \\
      --layers 2 --hidden 256 --limit 40                                    # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

LLAMA2_VOCAB = 32000


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            torch.cuda.synchronize(i)


def _timed(fn):
    _sync()
    t = time.perf_counter()
    r = fn()
    _sync()
    return time.perf_counter() - t, r


def rel_diff(a, b) -> tuple[float, float]:
    """(‖a−b‖/‖b‖, max |a−b|) in float64 on the CPU."""
    import torch

    a = torch.as_tensor(a).detach().double().cpu()
    b = torch.as_tensor(b).detach().double().cpu()
    n = float(torch.linalg.vector_norm(b))
    d = float(torch.linalg.vector_norm(a - b))
    return (d / n if n > 0 else d), float((a - b).abs().max())


# ---- models ---------------------------------------------------------------------------------------

def embedded_tokenizer(folder: str | None = None):
    from transformers import AutoTokenizer

    from itictl.models.embedded import embedded_gguf_path

    if folder:  # the embedded tokenizer saved as a folder (machines without the GGUF)
        return AutoTokenizer.from_pretrained(folder)

    p = embedded_gguf_path()
    return AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)


def build_random_llama(folder: Path, *, layers: int, hidden: int, seed: int, tokenizer: str | None = None) -> None:
    """Llama-2-7B-shaped (or shrunk) random fp16 weights, deterministic in `seed`, saved as a HF
    folder with the embedded tokenizer. Values are drawn per tensor from seeded generators (on the
    GPU when there is one: seconds instead of minutes for 6.7B values), then kept on the CPU."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    heads = max(1, hidden // 128)
    inter = 11008 if hidden == 4096 else hidden * 8 // 3 // 64 * 64 or 64
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, vocab_size=LLAMA2_VOCAB,
                      max_position_embeddings=4096, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0, tie_word_embeddings=False)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    model = model.to(torch.float16).to_empty(device="cpu")
    gen_dev = "cuda:0" if torch.cuda.is_available() else "cpu"
    with torch.no_grad():
        for i, (name, p) in enumerate(sorted(model.named_parameters())):
            if name.endswith("norm.weight"):
                p.fill_(1.0)
                continue
            g = torch.Generator(device=gen_dev).manual_seed(seed * 100003 + i)
            p.copy_((torch.randn(p.shape, generator=g, device=gen_dev) * 0.02).to(torch.float16).cpu())
    from itictl.models.loading import hf_quiet

    model.config.dtype = torch.float16
    with hf_quiet(True):
        model.save_pretrained(folder, max_shard_size="4GB")
    embedded_tokenizer(tokenizer).save_pretrained(folder)


def loaded_pair(args, store, model_art):
    """(single-device LoadedModel, device-mapped LoadedModel, load seconds of each)."""
    from itictl.models import load_model

    ta, single = _timed(lambda: load_model(store, model_art, dtype=args.dtype, device=args.device, fresh=True,
                                           quiet=True))
    tb, split = _timed(lambda: load_model(store, model_art, dtype=args.dtype, device_map=args.device_map,
                                          fresh=True, quiet=True))
    return single, split, ta, tb


def same_weights(a, b) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    if sorted(sa) != sorted(sb):
        return False
    return all(torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa)


def placement(lm) -> dict[str, int]:
    """How many parameters (millions) live on each device."""
    out: dict[str, int] = {}
    for p in lm.model.parameters():
        out[str(p.device)] = out.get(str(p.device), 0) + p.numel()
    return {k: round(v / 1e6) for k, v in sorted(out.items())}


# ---- the steps ------------------------------------------------------------------------------------

def items_for(tokenizer, prompts, vocab: int):
    from itictl.extract.engine import tokenize_prompts

    items = tokenize_prompts(tokenizer, [p.text for p in prompts], [p.prefix for p in prompts], share=True)
    if len(tokenizer) > vocab:  # embedded tokenizer on a 32k-vocab random model: fold the ids
        for it in items:
            it.ids = [i % vocab for i in it.ids]
    return items


def extract(lm, items, batch_tokens: int):
    from itictl.extract.engine import extract_items, pad_token_id

    return _timed(lambda: extract_items(lm.model, items, batch_tokens=batch_tokens, device=lm.device,
                                        pad_id=pad_token_id(lm.tokenizer) % lm.model.config.vocab_size))


def random_deltas(head_wise, layout, n_heads: int, alpha: float, seed: int):
    """{layer: δ_l [H·D]}: n_heads random (layer, head) pairs, θ random unit, shift α·σ·θ with σ the
    std of the activations' projections on θ (as the method's strength)."""
    import numpy as np
    import torch

    L, H, D = layout.n_layers, layout.n_heads, layout.head_dim
    rng = np.random.default_rng(seed)
    chosen = rng.choice(L * H, size=min(n_heads, L * H), replace=False)
    deltas: dict[int, torch.Tensor] = {}
    for flat in sorted(int(c) for c in chosen):
        l, h = divmod(flat, H)
        theta = rng.standard_normal(D)
        theta /= np.linalg.norm(theta)
        acts = np.asarray(head_wise[:, l, h * D:(h + 1) * D], dtype=np.float64)
        sigma = float(np.std(acts @ theta)) or 1.0
        d = deltas.setdefault(l, torch.zeros(H * D))
        d[h * D:(h + 1) * D] = torch.from_numpy(alpha * sigma * theta).float()
    return deltas


def last_logits(lm, ids_list):
    """[P, vocab] float32 last-token logits, one prompt per forward pass (no padding effects)."""
    import torch

    rows = []
    with torch.no_grad():
        for ids in ids_list:
            x = torch.tensor([ids], device=lm.device)
            rows.append(lm.model(input_ids=x).logits[0, -1].float().cpu())
    return torch.stack(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="llama2-7b-random", help="llama2-7b-random | embedded | PATH | Hub id")
    ap.add_argument("--device-map", default="balanced", help="auto | balanced | sequential | JSON {module: device}")
    ap.add_argument("--device", default="cuda", help="the single-device baseline (cuda = cuda:0, or cpu)")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--data", default=None, help="TruthfulQA folder (else $ITICTL_DATA / the shared copy)")
    ap.add_argument("--limit", type=int, default=200, help="tqa_mc2 prompts to extract")
    ap.add_argument("--prompts", type=int, default=8, help="prompts whose next-token logits are compared")
    ap.add_argument("--heads", type=int, default=48)
    ap.add_argument("--alpha", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=32, help="llama2-7b-random: decoder layers")
    ap.add_argument("--hidden", type=int, default=4096, help="llama2-7b-random: hidden size (heads = hidden/128)")
    ap.add_argument("--batch-tokens", type=int, default=16384)
    ap.add_argument("--tol", type=float, default=1e-2, help="pass when ‖a−b‖/‖b‖ < tol")
    ap.add_argument("--store", default=None, help="itictl store for the model artifacts")
    ap.add_argument("--tmp", default=None, help="folder for the random model and the saved bake")
    ap.add_argument("--no-save", action="store_true", help="skip saving and reloading the split bake")
    ap.add_argument("--tokenizer", default=None, help="llama2-7b-random: folder with the embedded tokenizer")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    import torch

    from itictl.data import build_prompts, load_truthfulqa
    from itictl.intervene.steering import intervened
    from itictl.models import ensure_model, parse_device_map
    from itictl.publish.bake import bake_folder, baked
    from itictl.store import Store

    args.device = "cuda:0" if args.device == "cuda" else args.device
    args.device_map = parse_device_map(args.device_map)
    tmp = Path(tempfile.mkdtemp(prefix="itictl-dmap-", dir=args.tmp))
    # the random model lives in tmp/: its artifact goes in a throwaway store next to it
    shared = args.store or (os.environ.get("ITICTL_TEST_STORE") if args.model != "llama2-7b-random" else None)
    store = Store(shared or tmp / "store")
    store.ensure()
    results: dict = {"model": args.model, "device": args.device, "device_map": args.device_map,
                     "gpus": torch.cuda.device_count(), "dtype": args.dtype, "checks": {}}
    checks = results["checks"]
    failed: list[str] = []

    def check(name: str, a, b) -> None:
        rel, mx = rel_diff(a, b)
        ok = rel < args.tol
        checks[name] = {"rel": rel, "max_abs": mx, "pass": ok}
        print(f"  {name:38s} rel {rel:.2e}  max|Δ| {mx:.3e}  {'PASS' if ok else 'FAIL'}", flush=True)
        if not ok:
            failed.append(name)

    try:
        # 1. the weights
        if args.model == "llama2-7b-random":
            folder = tmp / "llama2-7b-random"
            t, _ = _timed(lambda: build_random_llama(folder, layers=args.layers, hidden=args.hidden, seed=args.seed,
                                                         tokenizer=args.tokenizer))
            print(f"built and saved random Llama ({args.layers}x{args.hidden}, fp16) in {t:.1f} s", flush=True)
            results["build_s"] = round(t, 1)
            spec = str(folder)
        else:
            spec = None if args.model == "embedded" else args.model
        t, model_art = _timed(lambda: ensure_model(store, spec))
        results["ensure_s"] = round(t, 1)
        single, split, ta, tb = loaded_pair(args, store, model_art)
        results.update(load_single_s=round(ta, 1), load_split_s=round(tb, 1), placement_single=placement(single),
                       placement_split=placement(split), input_device_split=split.device)
        print(f"loaded: single {ta:.1f} s on {placement(single)} M params; split {tb:.1f} s on "
              f"{placement(split)} M params (inputs on {split.device})", flush=True)
        if len(placement(split)) < 2:
            print("  note: the device map put the whole model on one device (one GPU visible, or CPU)")
        ok_w = same_weights(single.model, split.model)
        checks["weights_identical"] = {"pass": ok_w}
        print(f"  {'weights identical':38s} {'PASS' if ok_w else 'FAIL'}", flush=True)
        if not ok_w:
            failed.append("weights_identical")

        # 2. extraction
        from extract import default_data  # benchmarks/extract.py

        prompts = build_prompts(load_truthfulqa(Path(args.data) if args.data else default_data()), "tqa_mc2",
                                seed=0)[: args.limit]
        vocab = single.model.config.vocab_size
        items = items_for(single.tokenizer, prompts, vocab)
        ts, acts_single = extract(single, items, args.batch_tokens)
        results["extract_single_s"] = round(ts, 2)
        print(f"extract {len(items)} prompts: single {ts:.2f} s ({len(items) / ts:.0f} prompts/s)", flush=True)
        try:
            tsp, acts_split = extract(split, items, args.batch_tokens)
            results["extract_split_s"] = round(tsp, 2)
            print(f"extract {len(items)} prompts: split  {tsp:.2f} s ({len(items) / tsp:.0f} prompts/s)", flush=True)
            check("extract head_wise (split vs single)", acts_split["head_wise"], acts_single["head_wise"])
        except Exception as e:  # the engine not (yet) device-map aware: report and go on
            msg = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            checks["extract head_wise (split vs single)"] = {"pass": False, "error": msg}
            failed.append("extract head_wise (split vs single)")
            print(f"  extract on the split model FAILED: {msg}", flush=True)

        # 3. intervention
        deltas = random_deltas(acts_single["head_wise"], single.layout, args.heads, args.alpha, args.seed)
        results["intervened_layers"] = sorted(deltas)
        ids_list = [it.ids for it in items[: args.prompts]]
        plain_single, plain_split = last_logits(single, ids_list), last_logits(split, ids_list)
        check("plain logits (split vs single)", plain_split, plain_single)
        with intervened(single.model, deltas, "all"):
            live_single = last_logits(single, ids_list)
        with intervened(split.model, deltas, "all"):
            live_split = last_logits(split, ids_list)
        effect, _ = rel_diff(live_single, plain_single)
        results["intervention_effect_rel"] = effect
        print(f"  intervention changes the logits by rel {effect:.2e} ({args.heads} heads, α={args.alpha:g})")
        check("intervened logits (split vs single)", live_split, live_single)

        # 4. bake
        with baked(single.model, deltas):
            baked_single = last_logits(single, ids_list)
        with baked(split.model, deltas):
            baked_split = last_logits(split, ids_list)
        check("baked logits (split vs single)", baked_split, baked_single)
        check("baked vs live (single)", baked_single, live_single)
        if not args.no_save:
            from transformers import AutoModelForCausalLM

            out_dir = tmp / "baked-split"
            from itictl.models.loading import hf_quiet

            with hf_quiet(True):
                t, _ = _timed(lambda: bake_folder(split.model, split.tokenizer, deltas, out_dir))
            results["save_split_bake_s"] = round(t, 1)
            del split
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            with hf_quiet(True):
                re = AutoModelForCausalLM.from_pretrained(out_dir, dtype=getattr(torch, args.dtype),
                                                          device_map={"": args.device}).eval()
            from types import SimpleNamespace

            reloaded = last_logits(SimpleNamespace(model=re, device=args.device), ids_list)
            print(f"saved the split model's bake in {t:.1f} s and reloaded it on {args.device}")
            check("saved split bake, reloaded (vs single)", reloaded, baked_single)
    finally:
        if args.tmp is None:
            shutil.rmtree(tmp, ignore_errors=True)
    results["pass"] = not failed
    print(("PASS" if not failed else f"FAIL: {', '.join(failed)}") + f" (tol {args.tol:g})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
