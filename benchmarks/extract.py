"""Benchmark: itictl's extraction engine against the reference method, same prompts, one run.

Reference method (honest_llama get_activations.py, re-implemented here): one prompt at a time
(batch 1) through a pyvene IntervenableModel with a collector on every layer's o_proj input,
`output_hidden_states=True` on the full causal LM, and per-prompt numpy copies of the stacked
hidden states and collector states (last token kept).

itictl: tree-packed rows (a question prefix once, its answers after it under a tree mask; rows
nearly full), token-budgeted forwards, decoder stack only, hooks that gather the last token on
device, one device->host copy per chunk.

Both collect head-wise [N, L, H·D] and layer-wise [N, L+1, hidden] activations.

  python benchmarks/extract.py --device cpu --model embedded --limit 1000
  python benchmarks/extract.py --device cuda --model llama2-7b-random            # all 5,882 tqa_mc2

For llama2-7b-random the prompts are the real tqa_mc2 prompts tokenised by the embedded model's
tokenizer (ids folded into Llama-2's 32,000 vocabulary), so lengths and prefix sharing are real.
On CUDA it also prints the FLOP bound 2 * params * tokens / 790e12 s for the tokens itictl computes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
H100_BF16_DENSE = 790e12  # FLOP/s used for the bound (as in the issue)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def default_data() -> Path | None:
    """$ITICTL_DATA, else the workspace's shared TruthfulQA copy beside the project, else None (Hub)."""
    env = os.environ.get("ITICTL_DATA")
    shared = ROOT.parent / "shared" / "data" / "truthfulqa"
    return Path(env) if env else (shared if shared.is_dir() else None)


def load_prompts(args):
    from itictl.data import build_prompts, load_truthfulqa

    data_dir = Path(args.data) if args.data else default_data()
    prompts = build_prompts(load_truthfulqa(data_dir), args.dataset, seed=0)
    return prompts[: args.limit] if args.limit else prompts


def embedded_model(args, dtype, device):
    from itictl.models import ensure_model, load_model
    from itictl.store import Store

    store = Store(args.store or os.environ.get("ITICTL_TEST_STORE") or Path(tempfile.gettempdir()) / "itictl-bench-store")
    store.ensure()
    art = ensure_model(store, None)
    return load_model(store, art, dtype=dtype, device=device)


def tokenizer_only(path):
    """The embedded model's tokenizer saved as a folder (lets the random-weight benchmarks run
    where the GGUF is absent)."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    return SimpleNamespace(tokenizer=AutoTokenizer.from_pretrained(path))


def llama2_7b_random(dtype, device, layers: int | None = None):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers or 32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      max_position_embeddings=4096, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(prev)
    return model.eval()


def reference_collectors(model):
    """pyvene IntervenableModel with the reference's collector on every layer's o_proj input.
    Built once per model: a second IntervenableModel on the same model (or a plain
    output_hidden_states call before it) leaves hidden_states empty with transformers 5."""
    import pyvene as pv

    from itictl.models.arch import get_arch, head_layout

    spec = get_arch(model)

    class Collector:  # the reference's collector: keep the last token of o_proj's input
        collect_state = True
        collect_action = False

        def __init__(self):
            self.states = []

        def reset(self):
            self.states = []

        def __call__(self, b, s):
            self.states.append(b[0, -1].detach().clone())
            return b

    def wrap(c):
        def wrapped(*a, **k):
            return c(*a, **k)
        return wrapped

    L = head_layout(model).n_layers
    collectors = [Collector() for _ in range(L)]
    cfg = [{"component": f"{spec.base}.{spec.layers}[{l}].{spec.o_proj}.input", "intervention": wrap(collectors[l])}
           for l in range(L)]
    return pv.IntervenableModel(cfg, model), collectors


def reference_method(pv_model, collectors, items, device):
    """Batch 1, pyvene collectors on every o_proj input, output_hidden_states, numpy per prompt."""
    import numpy as np
    import torch

    # pyvene 0.1.8 removes *all* forward hooks after each call, including the ones transformers 5
    # installs (once, lazily) to capture hidden_states; clear transformers' "installed" flag so it
    # reinstalls them for each prompt (the reference ran on a transformers without these hooks).
    modules = list(pv_model.model.modules())
    heads, layers = [], []
    for it in items:
        for m in modules:
            if getattr(m, "_output_capturing_hooks_installed", False):
                m._output_capturing_hooks_installed = False
        ids = torch.tensor([it.ids], device=device)
        with torch.no_grad():
            out = pv_model({"input_ids": ids, "output_hidden_states": True})[1]
        hs = torch.stack(out.hidden_states, dim=0).squeeze(1).float().cpu().numpy()  # [L+1, T, hidden]
        hw = torch.stack([torch.stack(c.states) for c in collectors]).squeeze(1).float().cpu().numpy()  # [L, H·D]
        for c in collectors:
            c.reset()
        layers.append(hs[:, -1, :].copy())
        heads.append(hw.copy())
    return np.stack(heads), np.stack(layers)


def itictl_method(model, items, device, batch_tokens, row_tokens=None):
    """As `itictl extract` computes: planned, packed forwards; activations in the store dtype
    (float16 for a float16 model, float32 on the CPU) copied to host arrays in prompt order while
    the next forwards run."""
    from itictl.extract.engine import plan_batches
    from itictl.extract.host import collect_to_host

    batches = plan_batches(items, range(len(items)), batch_tokens, row_tokens=row_tokens)
    out = collect_to_host(model, items, batches, layer_wise=True, device=device, pad_id=0)
    return out["head_wise"], out["layer_wise"], batches


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--model", default="embedded", choices=["embedded", "llama2-7b-random"])
    p.add_argument("--layers", type=int, default=None, help="llama2-7b-random: fewer layers (smoke tests)")
    p.add_argument("--dataset", default="tqa_mc2")
    p.add_argument("--data", default=None, help="TruthfulQA folder (default: $ITICTL_DATA, else ../shared/data/truthfulqa, "
                   "else the Hub)")
    p.add_argument("--store", default=None, help="store for the embedded model (default $ITICTL_TEST_STORE or a temp dir)")
    p.add_argument("--limit", type=int, default=None, help="first N prompts (default: all)")
    p.add_argument("--ref-limit", type=int, default=None,
                   help="run the reference on the first N prompts only and scale its time (default: all prompts)")
    p.add_argument("--dtype", default=None, help="float32 (CPU default) | float16 (CUDA default) | bfloat16")
    p.add_argument("--batch-tokens", type=int, default=None)
    p.add_argument("--tokenizer", default=None,
                   help="llama2-7b-random: a folder with the embedded tokenizer (instead of loading the model)")
    p.add_argument("--row-tokens", type=int, default=None, help="packed row length (default 256)")
    p.add_argument("--also-batch-tokens", type=int, nargs="*", default=[],
                   help="also time itictl with these --batch-tokens (before the reference)")
    p.add_argument("--no-share", action="store_true", help="disable question-prefix sharing")
    p.add_argument("--repeats", type=int, default=3, help="timed itictl runs per setting (median reported)")
    p.add_argument("--json", action="store_true", help="print one JSON line with the results")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from itictl.extract import default_batch_tokens
    from itictl.extract.engine import count_tokens, tokenize_prompts

    device = args.device
    dtype = getattr(torch, args.dtype or ("float32" if device == "cpu" else "float16"))
    prompts = load_prompts(args)
    t0 = time.time()
    emb = (tokenizer_only(args.tokenizer) if args.tokenizer else embedded_model(args, "float32", "cpu")) \
        if args.model == "llama2-7b-random" else \
        embedded_model(args, str(dtype).split(".")[-1], device)
    items = tokenize_prompts(emb.tokenizer, [pp.text for pp in prompts], [pp.prefix for pp in prompts],
                             share=not args.no_share)
    if args.model == "llama2-7b-random":
        del emb
        model = llama2_7b_random(dtype, device, args.layers)
        for it in items:
            it.ids = [i % 32000 for i in it.ids]
        name = f"Llama-2-7B-shaped random ({args.layers or 32} layers)"
    else:
        model = emb.model
        name = "embedded SmolLM2-135M-Instruct"
    # the CLI's default for these prompts (`itictl extract` sizes forwards from their total tokens)
    batch_tokens = args.batch_tokens or default_batch_tokens("cpu" if device == "cpu" else "cuda",
                                                             sum(len(it.ids) for it in items))
    print(f"setup {time.time() - t0:.1f}s: {name}, {len(items)} {args.dataset} prompts, {dtype}, {device}, "
          f"batch_tokens={batch_tokens}", file=sys.stderr)

    # itictl first, on the untouched model (the reference's pyvene wrapper and transformers'
    # hidden-state capture hooks stay installed afterwards and would slow any later forward).
    # Warm-up: the whole run on a GPU (allocator and kernels for every shape), 8 prompts on a CPU.
    warm = items if device.startswith("cuda") else items[:8]

    def timed(bt: int):
        """Warm-up, then args.repeats timed runs -> (seconds per run, head, layer, batches of the last)."""
        itictl_method(model, warm, device, bt, args.row_tokens)
        runs = []
        for _ in range(args.repeats):
            _sync(device)
            t = time.time()
            got = itictl_method(model, items, device, bt, args.row_tokens)
            _sync(device)
            runs.append(time.time() - t)
        return (runs, *got)

    runs, head, layer, batches = timed(batch_tokens)
    t_itictl = float(np.median(runs))  # the median is reported (the spread too)

    others = {}
    for bt in args.also_batch_tokens:  # other forward sizes, same warm-up and timing
        ts, _, _, b2 = timed(bt)
        others[bt] = {"itictl_s": round(float(np.median(ts)), 3), "forwards": len(b2)}

    pv_model, collectors = reference_collectors(model)
    reference_method(pv_model, collectors, items[:2], device)  # warm-up, not timed

    ref_items = items[: args.ref_limit] if args.ref_limit else items
    _sync(device)
    t = time.time()
    ref_head, ref_layer = reference_method(pv_model, collectors, ref_items, device)
    _sync(device)
    t_ref_measured = time.time() - t
    t_ref = t_ref_measured * len(items) / len(ref_items)

    n_ref = len(ref_items)
    err_head = float(np.abs(head[:n_ref] - ref_head).max())
    err_layer = float(np.abs(layer[:n_ref] - ref_layer).max())
    scale = float(np.abs(ref_head).max())
    tokens = count_tokens(items, batches)
    res = {
        "model": name, "device": device, "dtype": str(dtype).split(".")[-1], "prompts": len(items),
        "batch_tokens": batch_tokens, "share": not args.no_share,
        "reference_s": round(t_ref, 3), "reference_ms_per_prompt": round(1000 * t_ref / len(items), 3),
        "reference_measured_prompts": n_ref,
        "itictl_s": round(t_itictl, 3), "itictl_runs_s": [round(x, 3) for x in runs],
        "itictl_prompts_per_s": round(len(items) / t_itictl, 1),
        "ratio": round(t_ref / t_itictl, 2),
        "tokens_computed": tokens["real"], "tokens_padded": tokens["padded"], "tokens_unshared": tokens["unshared"],
        "max_abs_diff_head_wise": err_head, "max_abs_head_wise": scale, "max_abs_diff_layer_wise": err_layer,
        "torch_threads": torch.get_num_threads(), "forwards": len(batches),
    }
    for bt, o in others.items():
        res[f"itictl_s@{bt}"] = o["itictl_s"]
        res[f"ratio@{bt}"] = round(t_ref / o["itictl_s"], 2)
        res[f"forwards@{bt}"] = o["forwards"]
    if device.startswith("cuda"):
        from itictl.models.arch import decoder_stack

        stack = decoder_stack(model)
        emb_params = sum(p.numel() for n, p in stack.named_parameters() if "embed" in n)
        params = sum(p.numel() for p in stack.parameters()) - emb_params  # what the matmuls touch
        bound = 2 * params * tokens["real"] / H100_BF16_DENSE
        res.update({"gpu": torch.cuda.get_device_name(), "matmul_params": params,
                    "flop_bound_s": round(bound, 3), "itictl_over_bound": round(t_itictl / bound, 2),
                    "reference_tokens": tokens["unshared"],
                    "reference_flop_bound_s": round(2 * params * tokens["unshared"] / H100_BF16_DENSE, 3)})
        for bt, o in others.items():  # same prompts, so the same tokens up to padding
            res[f"over_bound@{bt}"] = round(o["itictl_s"] / bound, 2)
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:28s} {v}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
