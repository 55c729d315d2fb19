"""The probe step's mapped CPU path (itictl.probe.blockwise, itictl.probe.mapped) against the staged
path: same probes, com and accuracies from the same file, whatever the chunking."""

from __future__ import annotations

import h5py
import numpy as np
import pytest


def write_acts(path, hw_NLW, label, qidx, L, H, D, chunks):
    with h5py.File(path, "w") as f:
        f.create_dataset("head_wise", data=hw_NLW, chunks=chunks)
        f.create_dataset("label", data=label.astype(np.int8))
        f.create_dataset("question_index", data=qidx.astype(np.int32))
        f.create_dataset("answer_index", data=np.zeros(len(label), np.int32))
        f.create_dataset("n_tokens", data=np.full(len(label), 5, np.int32))
        f.attrs.update({"model": "m", "L": L, "H": H, "D": D, "format": "tqa_mc2"})


@pytest.mark.parametrize("threads", [1, 2])  # 2: groups solved concurrently on a pool
@pytest.mark.parametrize("chunks", [(64, 1, 24), (100, 2, 24), (37, 5, 24)])
def test_mapped_path_matches_staged_path(tmp_path, chunks, threads, monkeypatch):
    import torch

    from itictl.extract.h5 import open_activations_file
    from itictl.probe import blockwise
    from itictl.probe.staging import Laps, com_staged, fit_staged, score_staged, stage_h5

    rng = np.random.RandomState(7)
    N, L, H, D = 333, 5, 3, 8  # 333 rows: partial last chunks
    label, qidx = rng.randint(0, 2, N), np.arange(N) // 3
    signal = rng.randn(L, H * D) * rng.uniform(0, 1.5, (L, 1))
    hw = (rng.randn(N, L, H * D) + (2 * label - 1)[:, None, None] * signal).astype(np.float32)
    write_acts(tmp_path / "a.h5", hw, label, qidx, L, H, D, chunks)
    perm = rng.permutation(N)
    rows = {"train": perm[:170], "val": perm[170:230], "test": perm[230:320]}  # 13 rows in no part
    monkeypatch.setattr(blockwise, "GROUP_BYTES", 1)  # every chunk's layers solved as a group of their own
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with open_activations_file(tmp_path / "a.h5") as acts:
            plan = blockwise.plan(acts, "torch")
            assert plan is not None and blockwise.plan(acts, "sklearn") is None
            laps = Laps()
            w, b, com, val_acc, test_acc = blockwise.fit_mapped(acts, plan, rows, laps)
            assert torch.get_num_threads() == threads  # restored after the pool
            st = stage_h5(acts, rows)
    finally:
        torch.set_num_threads(before)
    assert set(laps) == {"read", "stage", "solve", "accuracy"}
    want_com = com_staged(st, ("train", "val"))
    ws, bs = fit_staged(st, backend="torch", seed=0, overwrite=False)
    assert np.allclose(w, ws, rtol=1e-6, atol=1e-7) and np.allclose(b, bs, rtol=1e-6, atol=1e-7)
    assert np.allclose(com, want_com, atol=1e-5)
    assert np.array_equal(val_acc, score_staged(st, "val", ws, bs))
    assert np.array_equal(test_acc, score_staged(st, "test", ws, bs))
    assert val_acc.max() > 0.8  # the planted signal is found


def test_mapped_path_declines_what_it_cannot_map(tmp_path):
    from itictl.extract.h5 import open_activations_file
    from itictl.probe import blockwise

    rng = np.random.RandomState(0)
    hw = rng.randn(50, 2, 8).astype(np.float32)
    for name, chunks in (("contiguous", None), ("narrow", (10, 1, 4))):  # narrow: chunks not spanning a row
        write_acts(tmp_path / f"{name}.h5", hw, rng.randint(0, 2, 50), np.arange(50), 2, 2, 4, chunks)
        with open_activations_file(tmp_path / f"{name}.h5") as acts:
            assert blockwise.plan(acts, "torch") is None
            assert blockwise.plan(acts, "torch", device="cpu") is None


def test_populated_buffers_are_plain_writable_arrays():
    from itictl.probe.mapped import populated

    for shape in ((3, 4), (300, 1024, 5)):  # below and above the size that gets its own mapping
        a = populated(shape)
        a[...] = 1.5
        assert a.shape == shape and a.dtype == np.float32 and a.flags.writeable and float(a.sum()) == 1.5 * a.size
