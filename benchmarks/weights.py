"""Benchmark: moving a model folder's weights onto the device, itictl's fast loader vs transformers.

Same process, same folder (read from the page cache), alternating: transformers'
`AutoModelForCausalLM.from_pretrained(folder, dtype=…, device_map={"": device})` (the reference: what
load_model did before models/fast_load.py) and `fast_load.Loading(folder, device).model(dtype)`. The
first round of each is the one an eval pays (first CUDA allocations, lazy modules); both rounds are
printed. Then the two models are compared: every parameter and buffer bit-equal, same config and
generation config, same logits on a short input. Imports are timed apart and not in either number.

  python benchmarks/weights.py --make-model --model /tmp/m7b --device cuda        # Llama-2-7B shape, fp16
  python benchmarks/weights.py --make-model --shape mid --model /tmp/mmid --device cpu
Prints a table and, last, one JSON line (--out FILE writes it too).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sync(dev: str) -> None:
    import torch

    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def _free(dev: str) -> None:
    import torch

    gc.collect()
    if dev.startswith("cuda"):
        torch.cuda.empty_cache()


def timed_reference(folder: Path, dt, dev: str):
    from transformers import AutoModelForCausalLM

    t = time.perf_counter()
    m = AutoModelForCausalLM.from_pretrained(folder, dtype=dt, **({"device_map": {"": dev}} if dev != "cpu" else {}))
    _sync(dev)
    return m, time.perf_counter() - t


def timed_fast(folder: Path, dt_name: str, dev: str):
    from itictl.models import fast_load

    t = time.perf_counter()
    m = fast_load.Loading(folder, dev).model(dt_name)
    _sync(dev)
    return m, time.perf_counter() - t


def compare(a, b, dev: str) -> dict:
    """Bit-equality of parameters, buffers, configs and logits of two loaded models."""
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    same_keys = sa.keys() == sb.keys()
    unequal = [k for k in sa if k in sb and not (sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]))]
    ba, bb = dict(a.named_buffers()), dict(b.named_buffers())
    unequal += [k for k in ba if k in bb and not torch.equal(ba[k], bb[k])]
    torch.manual_seed(0)
    x = torch.randint(0, a.config.vocab_size, (2, 64), device=dev)
    with torch.no_grad():
        logits_equal = torch.equal(a(x).logits, b(x).logits)
    return {"same_keys": same_keys, "unequal_tensors": unequal[:5], "n_tensors": len(sa),
            "config_equal": a.config.to_dict() == b.config.to_dict(),
            "generation_config_equal": a.generation_config.to_dict() == b.generation_config.to_dict(),
            "logits_equal": bool(logits_equal)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model folder (safetensors)")
    ap.add_argument("--make-model", action="store_true", help="write a random model there first (eval_e2e.py's)")
    ap.add_argument("--shape", default="7b", help="--make-model: 7b or mid")
    ap.add_argument("--tokenizer", default=None, help="--make-model: tokenizer folder")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="auto", help="auto: float16 on a GPU, float32 on the CPU")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    # the loader alone: its GPU kernel warm-up (fast_load.warm_kernels, which an eval overlaps with
    # transformers' import) would otherwise be counted in fast_load's time
    os.environ.setdefault("ITICTL_WARM_KERNELS", "0")
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]
    folder = Path(a.model)
    if a.make_model and not (folder / "config.json").is_file():
        from eval_e2e import make_model

        make_model(folder, a.shape, a.device, a.tokenizer)
    t = time.perf_counter()
    import torch
    import transformers  # noqa: F401

    from itictl.models.devices import resolve_device, resolve_dtype, torch_dtype

    t_import = time.perf_counter() - t
    dev = resolve_device(a.device)
    dt_name = resolve_dtype(a.dtype, dev)
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    ref_s, fast_s = [], []
    for _ in range(a.rounds):
        m, s = timed_reference(folder, torch_dtype(dt_name), dev)
        ref_s.append(s)
        del m
        _free(dev)
        m, s = timed_fast(folder, dt_name, dev)
        fast_s.append(s)
        del m
        _free(dev)
    ref, _ = timed_reference(folder, torch_dtype(dt_name), dev)
    fast, _ = timed_fast(folder, dt_name, dev)
    checks = compare(ref, fast, dev)
    res = {"device": torch.cuda.get_device_name(0) if dev.startswith("cuda") else "cpu", "dtype": dt_name,
           "bytes": size, "import_s": round(t_import, 3), "reference_s": [round(x, 3) for x in ref_s],
           "fast_s": [round(x, 3) for x in fast_s], "speedup_first": round(ref_s[0] / fast_s[0], 2),
           "speedup_best": round(min(ref_s) / min(fast_s), 2),
           "fast_GBps_best": round(size / 1e9 / min(fast_s), 2), "checks": checks}
    print(f"{folder} ({size / 1e9:.2f} GB safetensors) on {res['device']}, {dt_name}")
    print(f"  {'round':<8} {'from_pretrained (s)':>20} {'fast_load (s)':>14} {'ratio':>6}")
    for i, (r, f) in enumerate(zip(ref_s, fast_s)):
        print(f"  {i + 1:<8} {r:20.2f} {f:14.2f} {r / f:6.1f}x")
    print(f"  checks: {checks}")
    print(json.dumps(res))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    ok = checks["same_keys"] and not checks["unequal_tensors"] and checks["logits_equal"] and checks["config_equal"]
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
