"""A cold model folder loads in the background while it is hashed (models/preload.py): the loaded
model is handed to load_model's memo only when the files did not change in between, and nothing
starts when the digests are already cached."""

from __future__ import annotations

import os

import torch

from itictl.models import ensure_model, load_model
from itictl.models import preload as P
from tests.models.tiny import tiny_folder


def test_preloaded_model_is_adopted_and_equals_a_plain_load(tmp_path, store):
    folder = tiny_folder(tmp_path / "m", seed=0)
    pre = P.start(store, str(folder), "float32", "cpu")
    assert pre is not None
    art = ensure_model(store, str(folder))  # hashes while the thread loads
    pre.thread.join()
    loaded = pre.lm
    assert pre.adopt(store, art) is True and pre.error is None and pre.why is None
    lm = load_model(store, art, dtype="float32", device="cpu")
    assert lm is loaded and lm.art.key == art.key and lm.dtype == "float32"  # from the memo
    plain = load_model(store, art, dtype="float32", device="cpu", fresh=True)
    ids = torch.tensor([[1, 5, 7, 9]])
    assert torch.equal(lm.model(ids).logits, plain.model(ids).logits)
    assert P.start(store, str(folder), "float32", "cpu") is None  # digests cached now: nothing to overlap


def test_changed_folder_is_not_adopted(tmp_path, store):
    folder = tiny_folder(tmp_path / "m", seed=1)
    pre = P.start(store, str(folder), "float32", "cpu")
    pre.thread.join()
    w = folder / "model.safetensors"
    st = w.stat()
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched after the load began
    art = ensure_model(store, str(folder))
    assert pre.adopt(store, art) is False and pre.why == "the folder's files changed while it was loaded"
    lm = load_model(store, art, dtype="float32", device="cpu")  # the normal path
    assert lm.art.key == art.key


def test_not_a_folder_starts_nothing(tmp_path, store):
    assert P.start(store, None, "auto", "cpu") is None
    assert P.start(store, "org/name", "auto", "cpu") is None
    assert P.start(store, str(tmp_path), "auto", "cpu") is None


def test_a_failed_background_load_says_why(tmp_path, store):
    """The eval's timings record why a preload was not adopted (here: weights that do not load)."""
    folder = tiny_folder(tmp_path / "m", seed=2)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    pre = P.start(store, str(folder), "float32", "cpu")
    art = ensure_model(store, str(folder))
    assert pre.adopt(store, art) is False and pre.error is not None
    assert pre.why.startswith("load failed: ")


def test_adopted_in_a_fresh_process_where_both_threads_import_transformers(tmp_path):
    """In a fresh process the preload thread and ensure_model's config read (main thread) both import
    transformers for the first time (the main thread starts while the thread is importing it);
    unserialised, the thread failed with "cannot import name 'AutoModelForCausalLM'" (models/tf_imports.py)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    folder = tiny_folder(tmp_path / "m", seed=4)
    code = f"""
import json, sys, time
from pathlib import Path
from itictl.store import Store
from itictl.models import preload as P, ensure_model
store = Store(Path({str(tmp_path / 'store')!r})); store.ensure()
pre = P.start(store, {str(folder)!r}, "float32", "cpu")
while "transformers" not in sys.modules and pre.thread.is_alive():  # the thread is importing it now
    time.sleep(0.0005)
art = ensure_model(store, {str(folder)!r})
ok = pre.adopt(store, art)
print(json.dumps({{"adopted": ok, "why": pre.why}}))
"""
    root = Path(__file__).resolve().parents[2]
    env = {**__import__("os").environ, "PYTHONPATH": f"{root / 'src'}:{root}"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["adopted"] is True, got["why"]
