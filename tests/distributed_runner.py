"""Test-only torchrun entry point: optionally injects a failure on one rank, then runs the real CLI.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed_runner.py ARGS

Environment (all optional):
  DIST_TEST_CHUNK       prompts per resumable extract chunk (itictl.extract.CHUNK_PROMPTS)
  DIST_TEST_FAIL_RANK   the rank that misbehaves
  DIST_TEST_FAIL_MODE   raise: RuntimeError after its first chunk is saved; kill: SIGKILL itself
                        there (both from an `extract.chunk_saved` hook, itictl.hooks); args:
                        append DIST_TEST_EXTRA_ARGS to its command line
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    argv = sys.argv[1:]
    rank = int(os.environ.get("RANK", "0"))
    import itictl.extract.chunks as X

    if os.environ.get("DIST_TEST_CHUNK"):
        X.CHUNK_PROMPTS = int(os.environ["DIST_TEST_CHUNK"])
    fail = os.environ.get("DIST_TEST_FAIL_RANK")
    mode = os.environ.get("DIST_TEST_FAIL_MODE", "raise")
    if fail is not None and int(fail) == rank:
        if mode == "args":
            argv = argv + os.environ.get("DIST_TEST_EXTRA_ARGS", "").split()
        else:
            from itictl import hooks

            def after_first_chunk(path, **_) -> None:
                if mode == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError("injected failure after the first chunk")

            hooks.register("extract.chunk_saved", after_first_chunk)
    from itictl.cli.app import main as itictl_main

    itictl_main(argv)


if __name__ == "__main__":
    main()
