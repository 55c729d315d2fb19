"""Subprocess entry for reliability tests: `python -m tests.reliability.runner ARGS` runs the real
`itictl ARGS` (itictl.cli.app.main) with optional pause points, so a test can SIGKILL it at a
chosen moment instead of racing a timer. The pauses are callbacks on itictl.hooks points; nothing
is replaced or faked, the pauses only sleep.

Environment (all optional):
  H7_PAUSE_KIND   artifact kind whose build to pause (e.g. probes)
  H7_PAUSE_AT     start    - store.build_start: before the build writes anything (tmp dir exists)
                  built    - store.built: payload complete in tmp/, no manifest yet
                  sealed   - store.sealing: manifest written in tmp/, before the rename into objects/
                  chunk:N  - extract.chunk_saved: after the N-th resumable chunk was saved
                  between  - probe.start: activations exist, the probes build is starting
  H7_PAUSE_S      how long to sleep at the pause (default 120: the test kills us meanwhile)
  H7_SIGNAL_DIR   a file `<stage>.<pid>` is created here when a pause is reached
  H7_CHUNK        prompts per resumable extract chunk (itictl.extract.CHUNK_PROMPTS)
"""

from __future__ import annotations

import os
import sys
import time


def _pause(stage: str) -> None:
    sig = os.environ.get("H7_SIGNAL_DIR")
    if sig:
        path = os.path.join(sig, f"{stage}.{os.getpid()}")
        with open(path + ".tmp", "w") as f:
            f.write(stage)
        os.replace(path + ".tmp", path)
    time.sleep(float(os.environ.get("H7_PAUSE_S", "120")))


STORE_POINTS = {"start": "store.build_start", "built": "store.built", "sealed": "store.sealing"}


def install() -> None:
    """Register the pause named by H7_PAUSE_AT at its itictl.hooks point (nothing is replaced)."""
    from itictl import hooks

    at = os.environ.get("H7_PAUSE_AT", "")
    if os.environ.get("H7_CHUNK"):
        import itictl.extract.chunks as X

        X.CHUNK_PROMPTS = int(os.environ["H7_CHUNK"])
    if at in STORE_POINTS:
        only = os.environ.get("H7_PAUSE_KIND")  # unset: every kind's build pauses

        def pause_build(kind: str, key: str, **_) -> None:
            if only is None or kind == only:
                _pause(at)

        hooks.register(STORE_POINTS[at], pause_build)
    elif at.startswith("chunk:"):
        n = int(at.split(":")[1])
        count = {"n": 0}

        def after_chunk(path, **_) -> None:
            count["n"] += 1
            if count["n"] == n:
                _pause(f"chunk{n}")

        hooks.register("extract.chunk_saved", after_chunk)
    elif at == "between":
        hooks.register("probe.start", lambda key, **_: _pause("between"))


def run_many() -> None:
    """`--many`: run several itictl command lines (a JSON list of argv lists on stdin) in this one
    process and print one JSON list of {code, stdout, stderr}; saves interpreter start-ups."""
    import contextlib
    import io
    import json

    from itictl.cli.app import main

    results = []
    for argv in json.loads(sys.stdin.read()):
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        results.append({"argv": argv, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
        if code != 0:
            break
    sys.stdout.write(json.dumps(results))


if __name__ == "__main__":
    install()
    if sys.argv[1:2] == ["--many"]:
        run_many()
    else:
        from itictl.cli.app import main

        sys.argv[0] = "itictl"
        main()
