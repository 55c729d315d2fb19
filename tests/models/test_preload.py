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
    assert pre.adopt(store, art) is True and pre.error is None
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
    assert pre.adopt(store, art) is False
    lm = load_model(store, art, dtype="float32", device="cpu")  # the normal path
    assert lm.art.key == art.key


def test_not_a_folder_starts_nothing(tmp_path, store):
    assert P.start(store, None, "auto", "cpu") is None
    assert P.start(store, "org/name", "auto", "cpu") is None
    assert P.start(store, str(tmp_path), "auto", "cpu") is None
