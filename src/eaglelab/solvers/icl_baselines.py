"""Baselines of the family's in-context regression tasks (related brief, sections 1-3).

Every function takes prompts X (B, N + 1, d + 1) in the row layout of `tasks.icl` (context
rows [x_j, y_j], the query last; its answer is ignored) and returns the query predictions
(B,).  In block terms A = the context x's, C = their y's, B = the query x, so

    OLS:    y_hat = B A^+ C                    (eaglelab's D* = B A^+ C, d' = n' = 1)
    ridge:  y_hat = B (A^T A + lam I)^-1 A^T C

- `ridge_predict(X, lam)`: lam a number or one per prompt; lam = 0 is OLS (the
  minimum-norm answer when N < d);
- `oracle_ridge_predict(batch)`: lam = sigma_tau^2, the prompt's true noise level (the
  posterior mean for w ~ N(0, I): the reference of Vladymyrov et al.'s adjusted loss);
- `ada_ridge_predict(X)`: AdaRR, lam = sigma_hat^2 from the OLS residuals / (N - d);
- `tuned_ridge_predict(X, multiplier, cap)`: TunedRR, lam = min(multiplier sigma_hat^2, cap);
- `tune_const_ridge`, `tune_ada_ridge`, `tune_gd_step`: the tuned constants, chosen on a
  VALIDATION batch by grid search (never on the batch a loss is reported on);
- `gd_predict(X, eta, steps)`: `steps` GD steps from w = 0 on (1 / 2N) sum (y - x^T w)^2;
- `optimal_one_step_preconditioner(cov, N, w_cov)`: the best one-step preconditioner for
  x ~ N(0, Sigma), w ~ N(0, W) (Ahn et al.'s Theorem 1 at W = I);
- `adjusted_loss(pred, batch)`: the loss minus the oracle ridge's (1/2 squared error).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["ridge_predict", "oracle_ridge_predict", "ada_ridge_predict", "tuned_ridge_predict",
           "noise_estimate", "tune_const_ridge", "tune_ada_ridge", "tune_gd_step",
           "gd_predict", "optimal_one_step_preconditioner", "adjusted_loss", "mse"]


def _parts(X):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3 or X.shape[1] < 2 or X.shape[2] < 2:
        raise ValueError(f"prompts must be (B, N + 1, d + 1) with N, d >= 1, got {X.shape}")
    return X[:, :-1, :-1], X[:, :-1, -1], X[:, -1, :-1]


def ridge_predict(X, lam) -> np.ndarray:
    """Ridge (lam > 0) or OLS / minimum-norm (lam = 0) predictions for the queries."""
    x, y, xq = _parts(X)
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), (x.shape[0],))
    if np.any(lam < 0) or not np.all(np.isfinite(lam)):
        raise ValueError("ridge strengths must be finite and >= 0")
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        if lam[i] == 0:
            w = np.linalg.lstsq(x[i], y[i], rcond=None)[0]
        else:
            d = x.shape[2]
            w = np.linalg.solve(x[i].T @ x[i] + lam[i] * np.eye(d), x[i].T @ y[i])
        out[i] = xq[i] @ w
    return out


def oracle_ridge_predict(batch) -> np.ndarray:
    """Ridge with lam = the prompt's true noise variance (`ICLBatch.noise`)."""
    return ridge_predict(batch.X, np.asarray(batch.noise) ** 2)


def noise_estimate(X) -> np.ndarray:
    """sigma_hat^2 per prompt: the OLS residual sum of squares / (N - d) (needs N > d)."""
    x, y, _ = _parts(X)
    N, d = x.shape[1], x.shape[2]
    if N <= d:
        raise ValueError(f"the OLS noise estimate needs N > d, got N = {N}, d = {d}")
    res = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        w = np.linalg.lstsq(x[i], y[i], rcond=None)[0]
        res[i] = np.sum((y[i] - x[i] @ w) ** 2)
    return res / (N - d)


def ada_ridge_predict(X) -> np.ndarray:
    """AdaRR: ridge with lam = sigma_hat^2 (`noise_estimate`)."""
    return ridge_predict(X, noise_estimate(X))


def tuned_ridge_predict(X, multiplier: float, cap: float) -> np.ndarray:
    """TunedRR: ridge with lam = min(multiplier * sigma_hat^2, cap)."""
    return ridge_predict(X, np.minimum(multiplier * noise_estimate(X), cap))


def mse(pred, X) -> float:
    """Mean squared error of query predictions against the answers in X's D slot."""
    return float(np.mean((np.asarray(pred) - np.asarray(X)[:, -1, -1]) ** 2))


def _best(grid, loss):
    losses = [loss(g) for g in grid]
    i = int(np.nanargmin(losses))
    return grid[i], losses[i]


def tune_const_ridge(X_val, grid: Sequence[float] = tuple(np.logspace(-3, 2, 41))):
    """ConstRR's one ridge strength for all prompts, by validation MSE: (lam, val MSE)."""
    return _best(list(grid), lambda lam: mse(ridge_predict(X_val, lam), X_val))


def tune_ada_ridge(X_val, multipliers: Sequence[float] = tuple(np.linspace(0.25, 3, 12)),
                   caps: Sequence[float] = tuple(np.logspace(-1, 2, 13))):
    """TunedRR's (multiplier, cap) by validation MSE: ((multiplier, cap), val MSE)."""
    grid = [(m, c) for m in multipliers for c in caps]
    return _best(grid, lambda mc: mse(tuned_ridge_predict(X_val, *mc), X_val))


def gd_predict(X, eta: float, steps: int = 1, preconditioner=None) -> np.ndarray:
    """`steps` (preconditioned) GD steps from w = 0 with step eta; the query prediction."""
    x, y, xq = _parts(X)
    N, d = x.shape[1], x.shape[2]
    G = np.eye(d) if preconditioner is None else np.asarray(preconditioner, dtype=np.float64)
    w = np.zeros((x.shape[0], d))
    for _ in range(int(steps)):
        grad = -np.einsum("bnd,bn->bd", x, y - np.einsum("bnd,bd->bn", x, w)) / N
        w = w - eta * grad @ G.T
    return np.einsum("bd,bd->b", xq, w)


def tune_gd_step(X_val, steps: int = 1, grid: Sequence[float] = tuple(np.logspace(-2, 1.5, 36)),
                 preconditioner=None):
    """GD's step size on a grid, by validation MSE: (eta, val MSE)."""
    return _best(list(grid), lambda eta: mse(gd_predict(X_val, eta, steps, preconditioner),
                                             X_val))


def optimal_one_step_preconditioner(cov, N: int, w_cov=None) -> np.ndarray:
    """The preconditioner Gamma minimising the expected loss of one preconditioned GD step
    from w = 0, x ~ N(0, Sigma) (Sigma = cov), w ~ N(0, W) (W = w_cov, identity if None):

        Gamma* = W Sigma [((N + 1) / N) Sigma W Sigma + (tr(W Sigma) / N) Sigma]^-1,

    from E[Sigma_hat W Sigma_hat] = ((N + 1) / N) Sigma W Sigma + (tr(W Sigma) / N) Sigma for
    the context moment Sigma_hat = X^T X / N.  W = I gives Ahn et al.'s Theorem 1,
    [((N + 1) / N) Sigma + (tr Sigma / N) I]^-1; their experiments' task has
    W = Sigma^-1, where it is N / (N + d + 1) Sigma^-1 - exactly a multiple of Sigma^-1."""
    S = np.asarray(cov, dtype=np.float64)
    W = np.eye(S.shape[0]) if w_cov is None else np.asarray(w_cov, dtype=np.float64)
    moment = (N + 1) / N * S @ W @ S + np.trace(W @ S) / N * S
    return W @ S @ np.linalg.inv(moment)


def adjusted_loss(pred, batch, half: bool = True) -> float:
    """Vladymyrov et al.'s adjusted loss: the loss of `pred` minus the oracle ridge's, with
    loss = 1/2 squared error (half=True, the convention of von Oswald et al.'s group: with
    it our baselines land on their Table 1 - see tests/test_family.py - while the plain
    MSE gives twice their numbers) or the plain MSE (half=False)."""
    gap = mse(pred, batch.X) - mse(oracle_ridge_predict(batch), batch.X)
    return 0.5 * gap if half else gap
