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
- `gd_plus_plus_predict(X, gamma, eta, steps)`: `steps` GD++ layers (von Oswald et al.):
  every token's x <- (I - gamma X^T X) x (gamma un-normalised, the paper's), its y a GD
  step of size eta; `tune_gd_plus_plus`: (gamma, eta) by validation MSE;
- `optimal_one_step_preconditioner(cov, N, w_cov)`: the best one-step preconditioner for
  x ~ N(0, Sigma), w ~ N(0, W) (Ahn et al.'s Theorem 1 at W = I);
- `adjusted_loss(pred, batch)`: the loss minus the oracle ridge's (1/2 squared error).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["ridge_predict", "oracle_ridge_predict", "ada_ridge_predict", "tuned_ridge_predict",
           "noise_estimate", "tune_const_ridge", "tune_ada_ridge", "tune_gd_step",
           "gd_predict", "gd_plus_plus_predict", "tune_gd_plus_plus",
           "optimal_one_step_preconditioner", "adjusted_loss", "mse"]


def _parts(X):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3 or X.shape[1] < 2 or X.shape[2] < 2:
        raise ValueError(f"prompts must be (B, N + 1, d + 1) with N, d >= 1, got {X.shape}")
    return X[:, :-1, :-1], X[:, :-1, -1], X[:, -1, :-1]


def ridge_predict(X, lam) -> np.ndarray:
    """Ridge (lam > 0) or OLS / minimum-norm (lam = 0) predictions for the queries (batched
    solves; lam = 0 through the SVD pseudo-inverse with lstsq's cut-off max(N, d) eps)."""
    x, y, xq = _parts(X)
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), (x.shape[0],))
    if np.any(lam < 0) or not np.all(np.isfinite(lam)):
        raise ValueError("ridge strengths must be finite and >= 0")
    w = np.empty((x.shape[0], x.shape[2]))
    zero = lam == 0
    if zero.any():
        w[zero] = _min_norm(x[zero], y[zero])
    if (~zero).any():
        xs, ys = x[~zero], y[~zero]
        gram = np.einsum("bnd,bne->bde", xs, xs) + lam[~zero, None, None] * np.eye(x.shape[2])
        w[~zero] = np.linalg.solve(gram, np.einsum("bnd,bn->bd", xs, ys)[..., None])[..., 0]
    return np.einsum("bd,bd->b", xq, w)


def _min_norm(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The minimum-norm least-squares w per prompt, x (B, N, d), y (B, N) -> (B, d)."""
    rtol = max(x.shape[1], x.shape[2]) * np.finfo(np.float64).eps
    return np.einsum("bdn,bn->bd", np.linalg.pinv(x, rtol=rtol), y)


def oracle_ridge_predict(batch) -> np.ndarray:
    """Ridge with lam = the prompt's true noise variance (`ICLBatch.noise`)."""
    return ridge_predict(batch.X, np.asarray(batch.noise) ** 2)


def noise_estimate(X) -> np.ndarray:
    """sigma_hat^2 per prompt: the OLS residual sum of squares / (N - d) (needs N > d)."""
    x, y, _ = _parts(X)
    N, d = x.shape[1], x.shape[2]
    if N <= d:
        raise ValueError(f"the OLS noise estimate needs N > d, got N = {N}, d = {d}")
    r = y - np.einsum("bnd,bd->bn", x, _min_norm(x, y))
    res = np.sum(r * r, axis=1)
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


def gd_plus_plus_predict(X, gamma: float, eta: float, steps: int = 1) -> np.ndarray:
    """`steps` GD++ layers on the prompts X (B, N + 1, d + 1): with the context's X^T X
    (d x d, un-normalised) and y's before the layer, every token (the query too) moves by
    x <- x - gamma X^T X x and y <- y - (eta / N) sum_j y_j x_j^T x; the prediction is
    minus the query's final y (which starts at 0)."""
    Z = np.array(X, dtype=np.float64)
    Z[:, -1, -1] = 0.0
    N = Z.shape[1] - 1
    for _ in range(int(steps)):
        x, y = Z[:, :, :-1], Z[:, :, -1]
        xc, yc = x[:, :-1], y[:, :-1]
        gram = np.swapaxes(xc, 1, 2) @ xc
        h = (yc[:, None, :] @ xc)[:, 0]
        y_new = y - eta / N * (x @ h[..., None])[..., 0]
        Z = np.concatenate([x - gamma * (x @ gram), y_new[..., None]], axis=2)
    return -Z[:, -1, -1]


def tune_gd_plus_plus(X_val, steps: int = 1, gammas: Sequence[float] | None = None,
                      etas: Sequence[float] = tuple(np.logspace(-1, 1.5, 13))):
    """GD++'s (gamma, eta) by validation MSE: a grid (gamma N in [0, 6] by default), then
    Nelder-Mead (scipy) from the best grid point: ((gamma, eta), val MSE)."""
    from scipy.optimize import minimize

    X_val = np.asarray(X_val, dtype=np.float64)
    N = X_val.shape[1] - 1
    gammas = tuple(np.linspace(0.0, 6.0, 13) / N) if gammas is None else tuple(gammas)
    loss = lambda ge: mse(gd_plus_plus_predict(X_val, ge[0], ge[1], steps), X_val)  # noqa: E731
    head = X_val[:2000]             # the grid on a part of the batch, the refinement on all
    start, _ = _best([(g, e) for g in gammas for e in etas],
                     lambda ge: mse(gd_plus_plus_predict(head, ge[0], ge[1], steps), head))
    res = minimize(loss, np.asarray(start), method="Nelder-Mead",
                   options={"xatol": 1e-5, "fatol": 1e-9, "maxiter": 200})
    best = tuple(float(v) for v in res.x) if res.fun <= loss(start) else start
    return best, loss(best)


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
