"""Helpers for the reliability suite: start real `itictl` subprocesses (with optional pause points,
see runner.py), wait for a pause and SIGKILL, list and fingerprint store contents, flip bytes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import ROOT, CliResult

SECRET_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "ITICTL_OPENAI_API_KEY", "ITICTL_DEBUG")


def base_env(store: Path | None = None, **extra: str) -> dict[str, str]:
    """A clean environment: offline, one thread (deterministic float sums), no secrets, no debug."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS and not k.startswith("H7_")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(ROOT), ITICTL_HUB_TIMEOUT="2")
    env.pop("ITICTL_TEST_STORE", None)
    if store is not None:
        env["ITICTL_HOME"] = str(store)
    env.update(extra)
    return env


def spawn(store: Path, *args: str, pause_kind: str | None = None, pause_at: str | None = None,
          pause_s: float = 120, chunk: int | None = None, signal_dir: Path | None = None,
          env: dict[str, str] | None = None, preexec_fn=None) -> subprocess.Popen:
    """Start `itictl ARGS` (through runner.py) as a real subprocess on `store`."""
    e = base_env(store, **(env or {}))
    if pause_at:
        e.update(H7_PAUSE_AT=pause_at, H7_PAUSE_S=str(pause_s))
        if pause_kind:
            e["H7_PAUSE_KIND"] = pause_kind
    if chunk:
        e["H7_CHUNK"] = str(chunk)
    if signal_dir is not None:
        signal_dir.mkdir(parents=True, exist_ok=True)
        e["H7_SIGNAL_DIR"] = str(signal_dir)
    return subprocess.Popen([sys.executable, "-m", "tests.reliability.runner", *args], cwd=ROOT, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)


def finish(p: subprocess.Popen, timeout: float = 300) -> CliResult:
    out, err = p.communicate(timeout=timeout)
    return CliResult(p.returncode, out, err)


def run(store: Path, *args: str, timeout: float = 300, **kw) -> CliResult:
    return finish(spawn(store, *args, **kw), timeout)


def run_many(store: Path, commands: list[list[str]], timeout: float = 600, **kw) -> list[dict]:
    """Several itictl command lines in one subprocess (one interpreter start-up)."""
    e = base_env(store, **kw.get("env", {}))
    p = subprocess.run([sys.executable, "-m", "tests.reliability.runner", "--many"], cwd=ROOT, env=e,
                       input=json.dumps(commands), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads(p.stdout)
    for r in results:
        assert r["code"] == 0, f"{r['argv']}: {r['stderr'][-2000:]}"
    assert len(results) == len(commands)
    return results


def wait_signal(signal_dir: Path, stage: str, p: subprocess.Popen, timeout: float = 240) -> Path:
    """Block until the subprocess reached pause `stage` (fails if it exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hits = [f for f in signal_dir.glob(f"{stage}.*") if not f.name.endswith(".tmp")]
        if hits:
            return hits[0]
        if p.poll() is not None:
            out, err = p.communicate()
            raise AssertionError(f"process exited ({p.returncode}) before reaching {stage}: {err[-2000:]}")
        time.sleep(0.05)
    p.kill()
    raise AssertionError(f"timed out waiting for {stage}")


def kill9(p: subprocess.Popen) -> None:
    os.kill(p.pid, signal.SIGKILL)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL


def objects_listing(store: Path) -> list[str]:
    """Every path under objects/ (relative), to compare a store before and after a command."""
    root = store / "objects"
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def refs_listing(store: Path) -> dict[str, str]:
    d = store / "refs"
    return {p.name: p.read_text() for p in sorted(d.iterdir())} if d.is_dir() else {}


def object_dir(store: Path, key: str) -> Path:
    return store / "objects" / key[:2] / key[2:]


def payload_digests(store: Path, key: str) -> dict[str, str]:
    m = json.loads((object_dir(store, key) / "manifest.json").read_text())
    return {name: f["sha256"] for name, f in m["files"].items()}


def copy_store(src: Path, dst: Path, drop: tuple[str, ...] = ()) -> Path:
    """A private copy of a store (objects stay read-only), without the objects whose keys are in
    `drop` and without refs, tmp and locks."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tmp", "locks", "refs"))
    for k in drop:
        d = object_dir(dst, k)
        for p in [d, *d.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(d)
    for sub in ("tmp", "locks", "refs"):
        (dst / sub).mkdir(exist_ok=True)
    return dst


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Invert one byte of a (read-only) file in place: in the middle unless `offset` is given."""
    mode = path.stat().st_mode
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    path.chmod(mode)


def one_error_line(r: CliResult) -> str:
    """The stderr of a failed command must be exactly one `error: …` line without a traceback."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{r.stderr[-3000:]}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]
