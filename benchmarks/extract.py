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
  python benchmarks/extract.py --device cuda --model llama2-7b-random --fuse off,compile --no-reference \
      --head-only --phase-timeout 240     # issue 21: unfused vs compiled layers, FLOP-bound ratio of each

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


def itictl_method(model, items, device, batch_tokens, row_tokens=None, fuse="off", layer_wise=True):
    """As `itictl extract` computes: planned, packed forwards; activations in the store dtype
    (float16 for a float16 model, float32 on the CPU) copied to host arrays in prompt order while
    the next forwards run. `fuse`: a --fuse mode (compiled decoder layers, itictl.compute.fuse)."""
    from itictl.extract.engine import plan_batches
    from itictl.extract.host import collect_to_host

    batches = plan_batches(items, range(len(items)), batch_tokens, row_tokens=row_tokens)
    out = collect_to_host(model, items, batches, layer_wise=layer_wise, device=device, pad_id=0, fuse=fuse)
    return out["head_wise"], out.get("layer_wise"), batches


class PhaseTimeout(Exception):
    pass


class deadline:
    """Raise PhaseTimeout in the main thread after `seconds` (0: no limit), so one slow phase (a
    compile that takes too long) is reported and the others still run."""

    def __init__(self, seconds: int, name: str):
        self.seconds, self.name = int(seconds or 0), name

    def __enter__(self):
        import signal

        if self.seconds > 0:
            def fire(*_):
                raise PhaseTimeout(f"{self.name}: over {self.seconds} s")
            self.prev = signal.signal(signal.SIGALRM, fire)
            signal.alarm(self.seconds)
        return self

    def __exit__(self, *exc):
        import signal

        if self.seconds > 0:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, self.prev)
        return False


def fuse_report(model) -> dict:
    """What the compiled path did: dynamo's graph counts and breaks, whether compiled forwards exist."""
    from torch._dynamo.utils import counters

    from itictl.compute.fuse import COMPILED
    from itictl.models.arch import decoder_layers

    cls = type(decoder_layers(model)[0])
    return {"unique_graphs": counters["stats"].get("unique_graphs", 0),
            "graph_breaks": sum(counters["graph_break"].values()),
            "frames_ok": counters["frames"].get("ok", 0),
            "compiled_modes": sorted(m for c, m in COMPILED if c is cls)}


def compare_fuse(args, model, items, device, batch_tokens, base, bound) -> dict:
    """Time each --fuse mode after the first like the main run (a full warm-up that includes the
    compile, then --repeats runs), with its max abs difference to the first mode's arrays."""
    import warnings

    import numpy as np

    res = {}
    for mode in args.fuse_modes[1:]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with deadline(args.phase_timeout, f"fuse {mode}"):
                    runs, head, layer, _, warm_s = timed_runs(args, model, items, device, batch_tokens, mode)
            except PhaseTimeout as e:
                res[f"fuse_{mode}"] = {"error": str(e)}
                print(f"fuse {mode}: {e}", file=sys.stderr)
                continue
        t = float(np.median(runs))
        r = {"itictl_s": round(t, 3), "runs_s": [round(x, 3) for x in runs], "warmup_s": round(warm_s, 1),
             "max_abs_diff_head_wise_vs_" + args.fuse_modes[0]: float(np.abs(head.astype(np.float32)
                                                                             - base[0].astype(np.float32)).max()),
             "fallback_warnings": [str(w.message) for w in caught if "--fuse" in str(w.message)],
             **fuse_report(model)}
        if layer is not None and base[1] is not None:
            r["max_abs_diff_layer_wise_vs_" + args.fuse_modes[0]] = float(np.abs(
                layer.astype(np.float32) - base[1].astype(np.float32)).max())
        if bound:
            r["over_bound"] = round(t / bound, 2)
        res[f"fuse_{mode}"] = r
        print(f"fuse {mode}: {t:.3f} s" + (f" = {t / bound:.2f}x the FLOP bound" if bound else "")
              + f" (warm-up incl. compile {warm_s:.1f} s)", file=sys.stderr)
    return res


KERNEL_KINDS = (("matmul", ("gemm", "cutlass", "xmma", "nvjet", "cublas", "sm90_", "sm100_")),
                ("attention", ("attention", "fmha", "flash", "cudnn", "sdpa")),
                ("fused (triton)", ("triton_",)), ("copies", ("memcpy", "memset")))


def kernel_kind(name: str) -> str:
    low = name.lower()
    for kind, keys in KERNEL_KINDS:
        if any(k in low for k in keys):
            return kind
    return "other elementwise / index"


def profile_modes(args, model, items, device, bt) -> dict:
    """One profiled run per --fuse mode (after the timed ones, so everything is compiled): device
    time by kernel kind and the top kernels (the profile that says where the rest of the time goes)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    out = {}
    for mode in args.fuse_modes:
        with deadline(args.phase_timeout, f"profile {mode}"), profile(activities=[ProfilerActivity.CUDA]) as prof:
            itictl_method(model, items, device, bt, args.row_tokens, mode, not args.head_only)
            torch.cuda.synchronize()
        kinds: dict[str, float] = {}
        top = []
        for e in prof.key_averages():
            t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
            if t <= 0:
                continue
            kinds[kernel_kind(e.key)] = kinds.get(kernel_kind(e.key), 0.0) + t / 1e6
            top.append((t / 1e6, e.count, e.key[:90]))
        top.sort(reverse=True)
        out[mode] = {"device_s_by_kind": {k: round(v, 3) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
                     "device_s_total": round(sum(kinds.values()), 3),
                     "top_kernels": [f"{t:.3f} s  x{n}  {k}" for t, n, k in top[:15]]}
        print(f"profile --fuse {mode}: " + json.dumps(out[mode], indent=1), file=sys.stderr)
    return out


def timed_runs(args, model, items, device, bt, fuse):
    """Warm-up (timed: includes compiling), then args.repeats timed runs -> (seconds per run, head,
    layer, batches of the last, warm-up seconds). Warm-up: the whole run on a GPU or with compiled
    layers (allocator, kernels and compiled graphs for every shape), else 8 prompts on a CPU."""
    warm = items if device.startswith("cuda") or fuse != "off" else items[:8]  # compiled: every shape
    lw = not args.head_only
    _sync(device)
    t = time.time()
    itictl_method(model, warm, device, bt, args.row_tokens, fuse, lw)
    _sync(device)
    warm_s = time.time() - t
    runs = []
    for _ in range(args.repeats):
        _sync(device)
        t = time.time()
        got = itictl_method(model, items, device, bt, args.row_tokens, fuse, lw)
        _sync(device)
        runs.append(time.time() - t)
    return (runs, *got, warm_s)


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
    p.add_argument("--fuse", default="off", metavar="MODES",
                   help="comma-separated --fuse modes (off, compile, max-autotune, auto): the first is the main run "
                        "(and the one compared with the reference), each other is timed the same way and compared "
                        "with the first (issue 21: --fuse off,compile)")
    p.add_argument("--no-reference", action="store_true", help="skip the reference method (pyvene, slow)")
    p.add_argument("--head-only", action="store_true", help="head-wise only, as `itictl extract` by default")
    p.add_argument("--phase-timeout", type=int, default=0, help="seconds per timed phase (0: no limit)")
    p.add_argument("--profile", action="store_true",
                   help="CUDA: after timing, one torch.profiler run per --fuse mode: device time by kernel kind")
    args = p.parse_args(argv)
    args.fuse_modes = [m.strip() for m in args.fuse.split(",") if m.strip()] or ["off"]

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
    def timed(bt: int, fuse: str = args.fuse_modes[0]):
        with deadline(args.phase_timeout, f"itictl --fuse {fuse} @ {bt}"):
            return timed_runs(args, model, items, device, bt, fuse)

    runs, head, layer, batches, warm_main = timed(batch_tokens)
    t_itictl = float(np.median(runs))  # the median is reported (the spread too)
    print(f"itictl --fuse {args.fuse_modes[0]}: {t_itictl:.3f} s (warm-up {warm_main:.1f} s)", file=sys.stderr)
    bound = flop_bound(model, count_tokens(items, batches)) if device.startswith("cuda") else None
    fused = compare_fuse(args, model, items, device, batch_tokens, (head, layer), bound)

    if args.profile and device.startswith("cuda"):
        try:
            fused["profile"] = profile_modes(args, model, items, device, batch_tokens)
        except Exception as e:  # noqa: BLE001 - a profile is extra: report and go on
            fused["profile"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    others = {}
    for bt in args.also_batch_tokens:  # other forward sizes, same warm-up and timing
        ts, _, _, b2, _ = timed(bt)
        others[bt] = {"itictl_s": round(float(np.median(ts)), 3), "forwards": len(b2)}
    if args.no_reference:
        return report(args, model, items, batches, head, {"model": name, "batch_tokens": batch_tokens,
                      "itictl_s": round(t_itictl, 3),
                      "itictl_runs_s": [round(x, 3) for x in runs], "warmup_s": round(warm_main, 1),
                      "fuse": args.fuse_modes[0], **fused}, others, t_itictl, dtype)

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
    ref = {"model": name, "batch_tokens": batch_tokens, "reference_s": round(t_ref, 3),
           "reference_ms_per_prompt": round(1000 * t_ref / len(items), 3),
           "reference_measured_prompts": n_ref, "ratio": round(t_ref / t_itictl, 2),
           "max_abs_diff_head_wise": float(np.abs(head[:n_ref] - ref_head).max()),
           "max_abs_head_wise": float(np.abs(ref_head).max()),
           "itictl_s": round(t_itictl, 3), "itictl_runs_s": [round(x, 3) for x in runs],
           "warmup_s": round(warm_main, 1), "fuse": args.fuse_modes[0], **fused}
    if layer is not None:
        ref["max_abs_diff_layer_wise"] = float(np.abs(layer[:n_ref] - ref_layer).max())
    for bt, o in others.items():
        ref[f"ratio@{bt}"] = round(t_ref / o["itictl_s"], 2)
    return report(args, model, items, batches, head, ref, others, t_itictl, dtype)


def flop_bound(model, tokens: dict) -> float:
    """2 * matmul params * computed tokens / 790e12 (embeddings excluded: a lookup, not a matmul)."""
    from itictl.models.arch import decoder_stack

    stack = decoder_stack(model)
    emb_params = sum(p.numel() for n, p in stack.named_parameters() if "embed" in n)
    return 2 * (sum(p.numel() for p in stack.parameters()) - emb_params) * tokens["real"] / H100_BF16_DENSE


def report(args, model, items, batches, head, res: dict, others: dict, t_itictl: float, dtype) -> int:
    """Print the results (one JSON line with --json, else one key per line)."""
    import torch

    from itictl.models.arch import decoder_stack

    tokens = count_tokens_of(items, batches)
    res = {"device": args.device, "dtype": str(dtype).split(".")[-1], "prompts": len(items),
           "share": not args.no_share, "head_only": args.head_only, **res,
           "itictl_prompts_per_s": round(len(items) / t_itictl, 1),
           "tokens_computed": tokens["real"], "tokens_padded": tokens["padded"], "tokens_unshared": tokens["unshared"],
           "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "forwards": len(batches)}
    for bt, o in others.items():
        res[f"itictl_s@{bt}"] = o["itictl_s"]
        res[f"forwards@{bt}"] = o["forwards"]
    if args.device.startswith("cuda"):
        stack = decoder_stack(model)
        params = sum(p.numel() for n, p in stack.named_parameters() if "embed" not in n)
        bound = flop_bound(model, tokens)
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


def count_tokens_of(items, batches) -> dict:
    from itictl.extract.engine import count_tokens

    return count_tokens(items, batches)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
