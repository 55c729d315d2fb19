"""The probe step's fast path: raw-chunk HDF5 reads, staged float32 activations, the batched solver's
per-problem stopping and batching, and torch accuracy / com against their numpy definitions."""

from __future__ import annotations

import h5py
import numpy as np
import pytest


@pytest.mark.parametrize("kw", [{"chunks": (512, 1, 48)}, {"chunks": (100, 2, 16)}, {},
                                {"chunks": (512, 1, 48), "compression": "gzip"}])
def test_read_all_matches_h5py(tmp_path, kw):
    from itictl.extract.h5 import _raw_chunks, read_all

    a = np.random.RandomState(0).randn(1300, 5, 48).astype(np.float16)  # 1300 rows: a partial last chunk
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("x", data=a, **kw)
    with h5py.File(tmp_path / "a.h5", "r") as f:
        raw = _raw_chunks(f["x"]) is not None
        got = read_all(f["x"], threads=3)
    assert raw == ("chunks" in kw and "compression" not in kw)  # raw reads only for unfiltered chunks
    assert got.dtype == a.dtype and np.array_equal(got, a)


def test_read_all_unwritten_chunks_fall_back(tmp_path):
    from itictl.extract.h5 import _raw_chunks, read_all

    with h5py.File(tmp_path / "a.h5", "w") as f:
        d = f.create_dataset("x", shape=(1000, 2, 8), dtype=np.float32, chunks=(256, 1, 8), fillvalue=7.0)
        d[:256, 0] = 1.0  # one chunk written, the rest only exist as the fill value
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert _raw_chunks(f["x"]) is None
        got = read_all(f["x"])
    assert (got[:256, 0] == 1).all() and (got[256:] == 7).all() and (got[:, 1] == 7).all()


def mixed_problems(seed=0, P=7, n=300, D=5):
    """P problems sharing y, from nearly separable (many Newton steps) to pure noise (a few)."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    strength = np.linspace(0, 3, P)[:, None, None]
    X = rng.randn(P, n, D) * rng.uniform(0.3, 3, (P, 1, D)) + (2 * y - 1)[None, :, None] * strength * rng.randn(P, 1, D)
    return X.astype(np.float32), y


def test_batched_solver_problems_are_independent():
    """Problems that stop early and leave the batch get what they get when solved alone."""
    from itictl.probe.newton import fit_logreg_batched

    X, y = mixed_problems()
    w, b, iters = fit_logreg_batched(X, y)
    assert iters > 3
    for i in range(len(X)):
        wi, bi, _ = fit_logreg_batched(X[i:i + 1], y)
        assert np.allclose(w[i].numpy(), wi[0].numpy(), rtol=1e-6, atol=1e-7), i
        assert abs(float(b[i] - bi[0])) < 1e-6
    wc, _, _ = fit_logreg_batched(X, y, max_batch_bytes=2 * 4 * X.shape[1] * (X.shape[2] + 2))  # 2 per batch
    assert np.allclose(w.numpy(), wc.numpy(), rtol=1e-6, atol=1e-7)


def test_batched_solver_reaches_sklearn_optimum_on_hard_problems():
    """On nearly separable problems (large weights, where lbfgs needs many iterations) the Newton
    solution matches sklearn run to convergence, and its gradient vanishes."""
    from sklearn.linear_model import LogisticRegression

    from itictl.probe.newton import fit_logreg_batched

    X, y = mixed_problems(seed=1)
    w, b, _ = fit_logreg_batched(X, y)
    for i in range(len(X)):
        clf = LogisticRegression(C=1.0, tol=1e-12, max_iter=100000).fit(X[i].astype(np.float64), y)
        scale = 1 + np.abs(clf.coef_[0]).max()
        assert np.abs(w[i].numpy() - clf.coef_[0]).max() < 1e-5 * scale, i
        assert abs(float(b[i]) - clf.intercept_[0]) < 1e-5 * scale, i


def test_in_place_compaction_matches_copies():
    import torch

    from itictl.probe.newton import fit_logreg_heads

    X, y = mixed_problems(seed=2, P=40)
    XT = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 2, 1)))
    w0, b0, _ = fit_logreg_heads(XT, y, overwrite=False)
    assert np.array_equal(XT.numpy(), X.transpose(0, 2, 1))  # the caller's features are left alone
    w1, b1, _ = fit_logreg_heads(XT.clone(), y, overwrite=True)
    assert np.array_equal(w0.numpy(), w1.numpy()) and np.array_equal(b0.numpy(), b1.numpy())


def write_acts(path, hw_NLW, label, qidx, L, H, D, chunks):
    with h5py.File(path, "w") as f:
        f.create_dataset("head_wise", data=hw_NLW, chunks=chunks)
        f.create_dataset("label", data=label.astype(np.int8))
        f.create_dataset("question_index", data=qidx.astype(np.int32))
        f.create_dataset("answer_index", data=np.zeros(len(label), np.int32))
        f.create_dataset("n_tokens", data=np.full(len(label), 5, np.int32))
        f.attrs.update({"model": "m", "L": L, "H": H, "D": D, "format": "tqa_mc2"})


@pytest.mark.parametrize("chunks", [(64, 1, 8), None])
def test_stage_from_h5_matches_numpy_layout(tmp_path, chunks):
    """Raw chunks (written straight into each part's columns) and h5py blocks give the same Staged
    as the in-memory path, and each part holds its rows in ascending order, as float32."""
    from itictl.extract.h5 import open_activations_file
    from itictl.probe.staging import stage, stage_h5

    rng = np.random.RandomState(5)
    N, L, H, D = 300, 3, 2, 4
    hw = rng.randn(N, L, H * D).astype(np.float16)
    label, qidx = rng.randint(0, 2, N), np.arange(N) // 3
    write_acts(tmp_path / "a.h5", hw, label, qidx, L, H, D, chunks)
    perm = rng.permutation(N)
    rows = {"train": perm[:150], "val": perm[150:200], "test": perm[200:290]}  # 10 rows in no part
    with open_activations_file(tmp_path / "a.h5") as acts:
        got = stage_h5(acts, rows, threads=3)
    want = stage(hw.reshape(N, L, H, D), label, rows)
    for k, r in rows.items():
        ref = hw[np.sort(r)].reshape(-1, L * H, D).transpose(1, 2, 0).astype(np.float32)
        assert np.array_equal(want.heads(k).numpy(), ref)
        assert np.array_equal(got.heads(k).numpy(), ref) and np.array_equal(got.labels(k), label[np.sort(r)])


def test_staged_scores_match_numpy_definitions():
    from itictl.probe.solver import accuracy
    from itictl.probe.staging import com_staged, score_staged, stage

    rng = np.random.RandomState(3)
    N, L, H, D = 90, 3, 2, 4
    hw = rng.randn(N, L, H, D).astype(np.float16)
    label = rng.randint(0, 2, N)
    rows = {"train": np.arange(0, 50, 2), "val": np.arange(1, 61, 2), "test": np.arange(70, 90)}
    st = stage(hw, label, rows)
    w, b = rng.randn(L, H, D), rng.randn(L, H)
    X_val = hw[rows["val"]].astype(np.float64).transpose(1, 2, 0, 3).reshape(L * H, -1, D)
    want = accuracy(X_val, label[rows["val"]], w.reshape(-1, D), b.reshape(-1)).reshape(L, H)
    assert np.allclose(score_staged(st, "val", w, b), want)
    tv = np.concatenate([rows["train"], rows["val"]])
    x, yy = hw[tv].astype(np.float64), label[tv]
    assert np.allclose(com_staged(st, ("train", "val")), x[yy == 1].mean(0) - x[yy == 0].mean(0), atol=1e-5)
