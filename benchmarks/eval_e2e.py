"""End-to-end `itictl eval` time with a per-phase breakdown (issue 14 item 4).

Runs `itictl eval` on a model folder in a cold temporary store (a fresh store: no model, digest,
activations, probes or interventions cached) and prints the per-phase table the eval recorded in its
artifact's manifest meta (`timings`, evaluate/timings.py) next to the command's wall clock.

Variants (--variants, comma list, each in its own store, one after the other):
  plain   --metrics mc,ce,kl                                     (goal on one H200, 7B shape: <= 30 s)
  judges  --metrics mc,judge,info,ce,kl --judge local --info-judge local: two probe judges are first
          trained on the same model into the same store (`itictl judge train --kind truth|info
          --limit N`, timed separately, not part of the eval), then the eval is timed (goal <= 90 s).
          The judge training records the model and its digests in that store, so this eval's store
          is cold for everything but the model identity and the judges.

  # the lead's GPU run (a Llama-2-7B-shaped random fp16 folder, made once; all 817 questions):
  python benchmarks/eval_e2e.py --make-model --model /tmp/m7b --device cuda --data DIR --text FILE
  # CPU check with a mid-sized random model (hidden 1024, 8 layers, ~0.8 GB fp32) on 40 questions:
  python benchmarks/eval_e2e.py --make-model --shape mid --model /tmp/mmid --device cpu --limit-questions 40 \\
      --data DIR --text FILE --variants plain

Bytecode: time a Python whose packages have their .pyc files, as `pip install` leaves them. The GPU
host sets PYTHONDONTWRITEBYTECODE=1 and its torch ships without .pyc, which added ~10 s of
compiling to every run's imports; there, first `export PYTHONPYCACHEPREFIX=/tmp/pyc` and
`python -m compileall -q -j 0 SITE_PACKAGES src` (docs/benchmarks.md).

The random model takes its tokenizer from --tokenizer, else from the embedded SmolLM2 model
(vocabulary 49,152). Each command's stderr tail is printed when it fails; the next variant still runs.
--out FILE writes every number as JSON.
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
SHAPES = {  # hidden, layers, heads, intermediate
    "7b": (4096, 32, 32, 11008),
    "mid": (1024, 8, 16, 2816),
}


def make_model(path: Path, shape: str, device: str, tokenizer: str | None) -> None:
    """A random Llama model folder of `shape` (fp16 on a GPU, fp32 on the CPU) with a real tokenizer:
    benchmarks/dp_extract.py's make_model with this script's shapes."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from dp_extract import make_model as build

    build(path, SHAPES[shape][1], False, device, tokenizer, dims=SHAPES[shape])


def _env() -> dict[str, str]:
    # the CLI's environment as a user has it: no TOKENIZERS_PARALLELISM=false (the tokenizer's threads
    # halve MC scoring's time on the GPU host: MC 7.5 s against 14.7 s with it set, 2026-12-02)
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)}
    env.pop("ITICTL_TEST_STORE", None)
    return env


def itictl(store: Path, args: list[str]) -> tuple[dict | None, float, str]:
    """(--json document or None on failure, wall seconds, stderr tail)."""
    cmd = [sys.executable, "-m", "itictl", "--store", str(store), *args, "--json", "-q"]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        return None, wall, f"exit {p.returncode}: {' '.join(cmd)}\n{p.stderr[-3000:]}"
    return json.loads(p.stdout), wall, ""


def eval_args(a, metrics: str, judges: bool) -> list[str]:
    args = ["eval", "--model", a.model, "--heads", str(a.heads), "--alpha", a.alpha, "--metrics", metrics,
            "--text", a.text, "--device", a.device]
    if a.data:
        args += ["--data", a.data]
    if a.limit_questions:
        args += ["--limit-questions", str(a.limit_questions)]
    if judges:
        args += ["--judge", "local", "--info-judge", "local"]
    return args


ORDER = ("plan", "identity_hash", "model_artifact", "model_load", "extract_tqa_mc2", "extract_tuning", "probes",
         "interventions", "eval_setup", "mc", "generation", "judge_truth", "judge_info", "bleu_rouge", "ce_kl",
         "write", "other")  # evaluate/timings.py's order (the manifest stores its keys sorted)


def _ordered(timings: dict) -> list[tuple[str, object]]:
    rank = {f"{n}_s": i for i, n in enumerate(ORDER)}
    return sorted(((k, v) for k, v in timings.items() if k.endswith("_s") and k != "total_s"),
                  key=lambda kv: rank.get(kv[0], len(ORDER)))


def print_table(name: str, wall: float, timings: dict, extra: dict[str, float]) -> None:
    total = float(timings.get("total_s") or 0.0)
    print(f"\n== {name}: wall {wall:.2f} s (run_eval {total:.2f} s; process start, imports and exit "
          f"{wall - total:.2f} s) ==")
    for k, v in extra.items():
        print(f"  (not in the eval) {k:<28} {v:8.2f} s")
    print(f"  {'phase':<30} {'seconds':>8} {'share':>6}")
    for k, v in _ordered(timings):
        s = float(sum(v)) if isinstance(v, list) else float(v)
        parts = f"  [{', '.join(f'{x:.2f}' for x in v)}]" if isinstance(v, list) else ""
        print(f"  {k[:-2]:<30} {s:8.2f} {100 * s / total if total else 0:5.0f}%{parts}")
    print(f"  {'total':<30} {total:8.2f}   100%")
    if timings.get("background"):
        print(f"  overlapped in a background thread (not in the total): {timings['background']}")
    before = (timings.get("process") or {}).get("before_s")
    if before is not None:
        print(f"  process: start to run_eval {before:.2f} s, run_eval end to exit {wall - total - before:.2f} s")


def _manifest(store: Path, key: str) -> dict:
    return json.loads((store / "objects" / key[:2] / key[2:] / "manifest.json").read_text())


def print_steps(store: Path, eval_manifest: dict) -> dict:
    """The extraction and probe steps' own meta (compute / warm-up / write seconds; probe phases)."""
    got = {}
    for role, key in sorted(eval_manifest.get("parents", {}).items()):
        if role in ("activations", "tuning"):
            m = _manifest(store, key)["meta"]
            got[role] = {k: m.get(k) for k in ("compute_s", "warmup_s", "write_s", "fuse", "batch_tokens",
                                               "prompts_per_s", "tokens_real") if k in m}
            print(f"  {role} extraction meta: {got[role]}")
    return got


def run_variant(a, name: str, work: Path) -> dict:
    store = work / f"store-{name}"
    shutil.rmtree(store, ignore_errors=True)
    extra: dict[str, float] = {}
    res: dict = {"variant": name, "store": str(store)}
    if name == "judges":
        for kind in ("truth", "info"):
            args = ["judge", "train", "--kind", kind, "--model", a.model, "--limit", str(a.judge_limit),
                    "--device", a.device]
            if a.data:
                args += ["--data", a.data]
            doc, wall, err = itictl(store, args)
            if doc is None:
                print(f"judge train --kind {kind} failed\n{err}", file=sys.stderr)
                return {**res, "error": err}
            extra[f"judge train --kind {kind}"] = wall
    metrics = "mc,judge,info,ce,kl" if name == "judges" else "mc,ce,kl"
    doc, wall, err = itictl(store, eval_args(a, metrics, judges=(name == "judges")))
    if doc is None:
        print(f"eval ({name}) failed\n{err}", file=sys.stderr)
        return {**res, "error": err}
    manifest = _manifest(store, doc["key"])
    timings = dict(manifest["meta"].get("timings") or doc.get("timings") or {})
    timings["process"] = (doc.get("timings") or {}).get("process")  # the CLI's: start to run_eval
    print_table(f"{name} ({metrics})", wall, timings, extra)
    res["steps"] = print_steps(store, manifest)
    means = {f"{s['heads']}/{s['alpha']:g}": s["mean"] for s in doc["settings"]}
    print(f"  means (K/alpha): {json.dumps(means, default=float)[:600]}")
    res.update(wall_s=round(wall, 3), timings=timings, cli_timings=doc.get("timings"), extra_s=extra,
               key=doc["key"], cached=doc["cached"], means=means)
    if not a.keep:
        shutil.rmtree(store, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder (made first with --make-model when it has no config)")
    ap.add_argument("--make-model", action="store_true", help="write a random model to --model unless it exists")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="7b", help="--make-model: Llama-2-7B or mid-sized")
    ap.add_argument("--tokenizer", default=None, help="--make-model: tokenizer folder (default: the embedded model's)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", default=os.environ.get("ITICTL_DATA"), help="TruthfulQA folder (default $ITICTL_DATA)")
    ap.add_argument("--text", required=True, help="natural text for CE/KL (wikitext-2-raw-test.txt)")
    ap.add_argument("--variants", default="plain,judges", help="plain,judges")
    ap.add_argument("--heads", type=int, default=48)
    ap.add_argument("--alpha", default="0,15")
    ap.add_argument("--limit-questions", type=int, default=None, help="first N questions (default: all 817)")
    ap.add_argument("--judge-limit", type=int, default=2000, help="labelled answers per judge (judge train --limit)")
    ap.add_argument("--work", default=None, help="folder for the stores (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the stores")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args()
    model = Path(a.model)
    if a.make_model and not (model / "config.json").is_file():
        t = time.perf_counter()
        sys.path.insert(0, str(ROOT / "src"))
        make_model(model, a.shape, a.device if a.device != "auto" else "cpu", a.tokenizer)
        print(f"wrote a random {a.shape} model to {model} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    size = sum(p.stat().st_size for p in model.iterdir() if p.is_file())
    print(f"model folder {model}: {size / 1e9:.2f} GB in {sum(1 for _ in model.iterdir())} files")
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="eval-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    results = [run_variant(a, v.strip(), work) for v in a.variants.split(",") if v.strip()]
    if a.out:
        Path(a.out).write_text(json.dumps({"model_bytes": size, "results": results}, indent=1, default=float))
    if not a.work and not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    if any("error" in r for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
