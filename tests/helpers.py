"""Test helpers: run the CLI in-process, as a subprocess or under torchrun, build tiny random models."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def run_cli(*args: str) -> CliResult:
    """Run `itictl ARGS` in this process through the real entry point (error mapping included)."""
    from itictl.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


def run_cli_subprocess(*args: str, env: dict | None = None, timeout: float = 600) -> CliResult:
    full_env = {**os.environ, **(env or {})}
    p = subprocess.run([sys.executable, "-m", "itictl", *args], capture_output=True, text=True,
                       env=full_env, timeout=timeout, cwd=ROOT)
    return CliResult(p.returncode, p.stdout, p.stderr)


TORCHRUN_ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                "PYTHONPATH": str(ROOT), "ITICTL_HUB_TIMEOUT": "2"}


def run_torchrun(args: list[str], *, runner: bool = False, env: dict[str, str] | None = None,
                 timeout: float = 240) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node 2` of `itictl ARGS` (or of tests/distributed_runner.py
    ARGS when runner=True). Tests reach this through the `torchrun` fixture (the `slow` tier)."""
    target = [str(ROOT / "tests" / "distributed_runner.py")] if runner else ["-m", "itictl"]
    full_env = {k: v for k, v in os.environ.items() if k not in ("ITICTL_TEST_STORE", "ITICTL_DEBUG")}
    full_env.update(TORCHRUN_ENV, **(env or {}))
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *target, *args], capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=timeout,
                          check=False)


def tiny_llama(seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, head_dim: int = 8,
               vocab: int = 128):
    """A random Llama-architecture causal LM small enough for unit tests (GQA, explicit head_dim)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=heads * head_dim + 8, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      head_dim=head_dim, num_hidden_layers=layers, intermediate_size=64, vocab_size=vocab,
                      max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()
