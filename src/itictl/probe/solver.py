"""Logistic-probe solvers: the batched Newton trainer (all heads at once, sklearn's C = 1 objective;
itictl.probe.newton) and the reference's per-head scikit-learn loop; accuracy of many probes at once
(numpy, and torch for the staged float32 activations)."""

from __future__ import annotations

import numpy as np

from itictl.probe.newton import fit_logreg_batched  # noqa: F401 (re-exported)


def fit_logreg_sklearn(X_PnD: np.ndarray, y_n: np.ndarray, seed: int):
    """The reference's per-head loop: LogisticRegression(random_state=seed, max_iter=1000) each."""
    from sklearn.linear_model import LogisticRegression

    P, _, D = X_PnD.shape
    w = np.zeros((P, D))
    b = np.zeros(P)
    for i in range(P):
        clf = LogisticRegression(random_state=seed, max_iter=1000).fit(X_PnD[i], y_n)
        w[i], b[i] = clf.coef_[0], clf.intercept_[0]
    return w, b


def accuracy(X_PmD: np.ndarray, y_m: np.ndarray, w_PD: np.ndarray, b_P: np.ndarray) -> np.ndarray:
    if X_PmD.shape[1] == 0:
        return np.full(X_PmD.shape[0], np.nan)
    pred = (np.einsum("pmd,pd->pm", X_PmD.astype(np.float64), w_PD) + b_P[:, None]) > 0
    return (pred == (y_m[None, :] == 1)).mean(1)


def accuracy_torch(XT_PDm, y_m, w_PD, b_P) -> np.ndarray:
    """accuracy() on torch features laid out [P, D, m] (float32, any device) -> [P] float64 numpy;
    one bmm."""
    import torch

    P, _, m = XT_PDm.shape
    if m == 0:
        return np.full(P, np.nan)
    dev = XT_PDm.device
    w = torch.as_tensor(np.asarray(w_PD, dtype=np.float32), device=dev).unsqueeze(1)  # [P, 1, D]
    b = torch.as_tensor(np.asarray(b_P, dtype=np.float32), device=dev)
    y = torch.as_tensor(np.asarray(y_m) == 1, device=dev)
    pred = (torch.bmm(w, XT_PDm).squeeze(1) + b[:, None]) > 0  # [P, m]
    return (pred == y).double().mean(1).cpu().numpy()


def class_sums(XT_PDm, y_m):
    """Sums of [P, D, m] features over the true and over the false samples -> (sum_true [P, D],
    sum_false [P, D]) float64 torch, n_true, n_false; one matrix product (float32)."""
    import torch

    P, D, m = XT_PDm.shape
    y = torch.as_tensor(np.asarray(y_m) == 1, device=XT_PDm.device)
    onehot = torch.stack([y, ~y], 1).to(torch.float32)  # [m, 2]
    sums = (XT_PDm.reshape(P * D, m) @ onehot).to(torch.float64)  # [P·D, 2]
    return sums[:, 0].view(P, D), sums[:, 1].view(P, D), int(y.sum()), int((~y).sum())
