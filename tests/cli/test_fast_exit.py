"""cli.app.fast_exit: after a command that started CUDA, os._exit once background threads and the
output are done (skipping seconds of teardown); a no-op otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import atexit, sys, types
torch = types.ModuleType("torch")
torch.cuda = types.SimpleNamespace(is_initialized=lambda: {cuda})
sys.modules["torch"] = torch
from itictl.cli.app import fast_exit
atexit.register(lambda: print("atexit ran", flush=True))
print("output", end="")
fast_exit({code})
print(" returned", end="")
"""


def _run(cuda: bool, code, env_extra=None):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "ITICTL_FAST_EXIT")}
    env.update({"PYTHONPATH": str(ROOT / "src"), **(env_extra or {})})
    return subprocess.run([sys.executable, "-c", SCRIPT.format(cuda=cuda, code=code)], capture_output=True,
                          text=True, env=env, timeout=60)


def test_exits_at_once_with_the_code_and_flushed_output_when_cuda_started():
    p = _run(True, 3)
    assert p.returncode == 3 and p.stdout == "output"  # flushed; no atexit handlers, no return


def test_normal_exit_otherwise():
    for cuda, code, env in ((False, 0, None), (True, 0, {"ITICTL_FAST_EXIT": "0"}), (True, "'message'", None),
                            (True, 0, {"WORLD_SIZE": "2"})):
        p = _run(cuda, code, env)
        assert p.returncode == 0 and p.stdout == "output returnedatexit ran\n", (cuda, code, env, p.stdout)
