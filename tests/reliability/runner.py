"""Subprocess entry for reliability tests: `python -m tests.reliability.runner ARGS` runs the real
`itictl ARGS` (itictl.cli.app.main) with optional pause points, so a test can SIGKILL it at a
chosen moment instead of racing a timer. Nothing is faked: the pauses only sleep.

Environment (all optional):
  H7_PAUSE_KIND   artifact kind whose build to pause (e.g. probes)
  H7_PAUSE_AT     start    - inside the build, before it writes anything (tmp dir exists)
                  built    - payload complete in tmp/, no manifest yet
                  sealed   - manifest written in tmp/, just before the rename into objects/
                  chunk:N  - extract only: after the N-th resumable chunk was saved in tmp/KEY.work
                  between  - probe only: after activations exist, before the probes step starts
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


def install() -> None:
    kind = os.environ.get("H7_PAUSE_KIND")
    at = os.environ.get("H7_PAUSE_AT", "")
    if os.environ.get("H7_CHUNK"):
        import itictl.extract.chunks as X

        X.CHUNK_PROMPTS = int(os.environ["H7_CHUNK"])
    if not at:
        return
    import itictl.store.core as core

    active = {"on": False}
    if at in ("start", "built", "sealed"):
        orig_produce = core.Store.produce

        def produce(self, k, params, parents, build, **kw):
            if k != kind:
                return orig_produce(self, k, params, parents, build, **kw)

            def wrapped(ctx):
                if at == "start":
                    _pause("start")
                build(ctx)
                if at == "built":
                    _pause("built")
                active["on"] = at == "sealed"

            try:
                return orig_produce(self, k, params, parents, wrapped, **kw)
            finally:
                active["on"] = False

        core.Store.produce = produce
        orig_ro = core._make_read_only

        def make_read_only(root):
            if active["on"]:
                _pause("sealed")
            orig_ro(root)

        core._make_read_only = make_read_only
    elif at.startswith("chunk:"):
        import itictl.extract.chunks as X

        n = int(at.split(":")[1])
        orig_save = X.save_chunk
        count = {"n": 0}

        def save_chunk(*a, **kw):
            p = orig_save(*a, **kw)
            count["n"] += 1
            if count["n"] == n:
                _pause(f"chunk{n}")
            return p

        X.save_chunk = save_chunk
    elif at == "between":
        import itictl.probe.step as P

        orig_run_probe = P.run_probe

        def run_probe(*a, **kw):
            _pause("between")
            return orig_run_probe(*a, **kw)

        P.run_probe = run_probe


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
