"""Profile itictl's GPU hot paths on a Llama-2-7B-shaped random model (no reference run).

Prints: the matmul ceiling measured on this card; the decoder stack's best-case throughput on a
dense, unpadded batch (the ceiling for any batching scheme built on the HF model); extraction time
for each setting given by --settings; a torch.profiler table of the first setting; and MC scoring
time (with a profile) on --questions questions.

  python benchmarks/profile_gpu.py --settings share:65536,noshare:32768 --questions 200
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _timed(fn, sync):
    sync()
    t = time.perf_counter()
    r = fn()
    sync()
    return time.perf_counter() - t, r


def _table(prof, n):
    try:
        return prof.key_averages().table(sort_by="self_device_time_total", row_limit=n)
    except Exception:  # older torch
        return prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=n)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--settings", default="share:65536,noshare:32768")
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--profile-rows", type=int, default=30)
    ap.add_argument("--skip", default="", help="comma list: ceiling,extract,mc")
    a = ap.parse_args()
    skip = set(a.skip.split(","))

    import torch
    from torch.profiler import ProfilerActivity, profile

    import extract as bx

    dev = "cuda"
    sync = torch.cuda.synchronize
    torch.set_grad_enabled(False)

    if "ceiling" not in skip:
        x = torch.randn(8192, 8192, device=dev, dtype=torch.float16)
        y = torch.randn(8192, 8192, device=dev, dtype=torch.float16)
        for _ in range(3):
            x @ y
        t, _ = _timed(lambda: [x @ y for _ in range(20)], sync)
        print(f"matmul 8192^3 fp16: {2 * 8192**3 * 20 / t / 1e12:.0f} TFLOP/s", flush=True)
        del x, y

    ns = argparse.Namespace(data=a.data, dataset="tqa_mc2", limit=None, store=None)
    prompts = bx.load_prompts(ns)
    emb = bx.tokenizer_only(a.tokenizer) if a.tokenizer else bx.embedded_model(ns, "float32", "cpu")
    tok = emb.tokenizer
    from itictl.extract.engine import count_tokens, plan_batches, run_batches, tokenize_prompts

    items_sh = tokenize_prompts(tok, [p.text for p in prompts], [p.prefix for p in prompts], share=True)
    items_ns = tokenize_prompts(tok, [p.text for p in prompts], [p.prefix for p in prompts], share=False)
    for its in (items_sh, items_ns):
        for it in its:
            it.ids = [i % 32000 for i in it.ids]
    model = bx.llama2_7b_random(torch.float16, dev, a.layers)
    print("attn_implementation", getattr(model.config, "_attn_implementation", None), flush=True)
    from itictl.models.arch import decoder_stack

    stack = decoder_stack(model)
    params = sum(p.numel() for n, p in stack.named_parameters() if "embed" not in n)

    if "ceiling" not in skip:
        for B, T in ((1024, 32), (512, 64), (256, 128)):
            ids = torch.randint(0, 32000, (B, T), device=dev)
            stack(input_ids=ids, use_cache=False)
            t, _ = _timed(lambda: stack(input_ids=ids, use_cache=False), sync)
            print(f"dense stack forward B={B} T={T}: {t*1e3:.0f} ms, {B*T/t:,.0f} tok/s, "
                  f"{2*params*B*T/t/1e12:.0f} TFLOP/s", flush=True)
            mask = torch.ones_like(ids)
            mask[:, -3:] = 0
            t, _ = _timed(lambda: stack(input_ids=ids, attention_mask=mask, use_cache=False), sync)
            print(f"  with padding mask: {t*1e3:.0f} ms, {2*params*B*T/t/1e12:.0f} TFLOP/s", flush=True)

    if "extract" not in skip:
        first = True
        for s in a.settings.split(","):
            mode, bt, *rt = s.split(":")
            bt = int(bt)
            items = items_sh if mode.startswith("share") else items_ns
            batches = plan_batches(items, range(len(items)), bt, row_tokens=int(rt[0]) if rt else None,
                                   packed=not mode.startswith("plain"))
            lw = not mode.endswith("-nolw")

            def go():
                n = 0
                for rows, h, l in run_batches(model, items, batches, layer_wise=lw, device=dev, pad_id=0):
                    n += len(rows)
                return n

            go()  # warm
            t, _ = _timed(go, sync)
            c = count_tokens(items, batches)
            bound = 2 * params * c["real"] / 790e12
            print(f"extract {s}: {t:.2f}s  batches={len(batches)} real={c['real']} padded={c['padded']} "
                  f"bound={bound:.2f}s over={t/bound:.1f}x  eff={2*params*c['padded']/t/1e12:.0f} TFLOP/s(padded)", flush=True)
            if first:
                first = False
                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    go()
                    sync()
                print(_table(prof, a.profile_rows), flush=True)

    if "mc" not in skip:
        import eval as be  # benchmarks/eval.py

        from itictl.evaluate.mc import groups_for, mc_items, score_groups

        data = Path(a.data) if a.data else ROOT.parent / "shared" / "data" / "truthfulqa"
        import os
        data = Path(os.environ.get("ITICTL_DATA", data))
        items = mc_items(be._questions(data, a.questions))
        prefix, groups = groups_for(items, "default", "qa", None)
        del model
        torch.cuda.empty_cache()
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=a.layers or 32, num_attention_heads=32,
                          num_key_value_heads=32, vocab_size=len(tok), max_position_embeddings=4096)
        torch.manual_seed(0)
        with torch.device(dev):
            m2 = LlamaForCausalLM(cfg).to(torch.float16).eval()
        for bt, rt in ((65536, 1024), (65536, 2048), (32768, 1024)):
            score_groups(m2, tok, prefix, groups, batch_tokens=bt, row_tokens=rt)
            st: dict = {}
            t, _ = _timed(lambda: score_groups(m2, tok, prefix, groups, batch_tokens=bt, row_tokens=rt, stats=st), sync)
            print(f"mc score_groups batch_tokens={bt} row_tokens={rt}: {t:.2f}s for {len(groups)} q; stats {st}", flush=True)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            score_groups(m2, tok, prefix, groups)
            sync()
        print(_table(prof, a.profile_rows), flush=True)
        # tokenisation share of the time
        t0 = time.perf_counter()
        for g in groups:
            tok(g.context)
            for c in g.continuations:
                tok(g.context + c)
        print(f"tokenisation alone: {time.perf_counter() - t0:.2f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
