"""Logistic-probe solvers: the batched Newton trainer (all heads at once, sklearn's C = 1 objective)
and the reference's per-head scikit-learn loop; accuracy of many probes at once."""

from __future__ import annotations

import numpy as np


def fit_logreg_batched(X_PnD, y_n, C: float = 1.0, max_iter: int = 100, tol: float = 1e-10, device=None):
    """L2 logistic regression (sklearn's objective, intercept unpenalised) for P problems sharing y.

    X_PnD: [P, n, D] features (numpy or torch), y_n: [n] in {0, 1}. Returns (w [P, D], b [P], iters)
    as float64 torch tensors on CPU. Newton's method with per-problem backtracking.
    """
    import torch
    import torch.nn.functional as F

    dev = torch.device(device) if device is not None else torch.device("cpu")
    X = torch.as_tensor(X_PnD, device=dev)
    P, n, D = X.shape
    Xa = torch.cat([X.to(torch.float64), torch.ones(P, n, 1, device=dev, dtype=torch.float64)], dim=2)  # [P, n, D+1]
    # The Hessian (the costly product, P·n·(D+1)²) is formed in float32: Newton steps with an
    # approximate Hessian still converge to the exact optimum because gradients stay float64.
    Xa32 = Xa.to(torch.float32)
    y = torch.as_tensor(y_n, device=dev, dtype=torch.float64).view(1, n)
    reg = torch.ones(D + 1, device=dev, dtype=torch.float64)
    reg[-1] = 0.0  # intercept not penalised
    w = torch.zeros(P, D + 1, device=dev, dtype=torch.float64)

    def objective(w_PD1, z_Pn):
        return 0.5 * (w_PD1.square() * reg).sum(1) + C * (F.softplus(z_Pn) - y * z_Pn).sum(1)

    z = torch.zeros(P, n, device=dev, dtype=torch.float64)
    f = objective(w, z)
    it = 0
    active = torch.ones(P, dtype=torch.bool, device=dev)
    for it in range(1, max_iter + 1):
        p = torch.sigmoid(z)
        g = C * torch.einsum("pnd,pn->pd", Xa, p - y) + reg * w  # [P, D+1]
        s = (p * (1 - p)).clamp_min(1e-12).to(torch.float32)  # [P, n]
        Hs = (C * torch.bmm(Xa32.transpose(1, 2), Xa32 * s.unsqueeze(-1))).to(torch.float64) + torch.diag(reg)
        Lc, info = torch.linalg.cholesky_ex(Hs)
        step = torch.cholesky_solve(g.unsqueeze(-1), Lc).squeeze(-1)
        bad = info != 0
        if bad.any():  # numerically singular: fall back to a gradient step
            step[bad] = g[bad] / (Hs[bad].diagonal(dim1=1, dim2=2).abs() + 1e-12)
        decrement = (g * step).sum(1)  # Newton decrement² ≥ 0
        active = decrement > tol * (1 + f.abs())
        if not active.any():
            break
        t = torch.ones(P, device=dev, dtype=torch.float64)
        accepted = torch.zeros(P, dtype=torch.bool, device=dev)
        new_w, new_z, new_f = w.clone(), z.clone(), f.clone()
        for _ in range(30):
            cand = w - t.unsqueeze(1) * step
            cz = torch.einsum("pnd,pd->pn", Xa, cand)
            cf = objective(cand, cz)
            ok = (cf <= f - 1e-4 * t * decrement) & ~accepted & active
            new_w[ok], new_z[ok], new_f[ok] = cand[ok], cz[ok], cf[ok]
            accepted |= ok
            if bool((accepted | ~active).all()):
                break
            t = torch.where(accepted, t, t * 0.5)
        w, z, f = new_w, new_z, new_f
    return w[:, :D].cpu(), w[:, D].cpu(), it


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


