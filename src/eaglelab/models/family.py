"""The family's linear-attention layer in its own (P, Q) form, and its map onto eaglelab's
transformer (related brief, conventions and sections 1-2).

The family writes tokens as columns, Z_cols ((d + 1) x (N + 1)), and one layer as

    Z_cols <- Z_cols + (1/N) P Z_cols M (Z_cols^T Q Z_cols),   M = diag(1, ..., 1, 0),

M keeping the query out of the keys and values; the prediction is minus the query's y
entry.  Transposed, with tokens as rows (Z = Z_cols^T, eaglelab's block layout with
d' = n' = 1; `tasks.icl`) this is Z <- Z + (Z Q^T Z^T) M Z P^T / N, i.e. eaglelab's layer
with W_QK = Q^T / N and W_VP = P^T: `family_model` builds that LinearTransformer, and the
tests hold it to `family_reference` (this formula, float64, columns) to 1e-12.

Constructions (hand-set, float64; section 1 of the brief for preconditioned GD, section 2
for GD++):

* `preconditioned_gd`: L layers with P_l = [[0, 0], [0, -1]] and Q_l = [[Gamma_l, 0],
  [0, 0]] (Ahn et al.'s sparse form, x-block of P zero) leave the x's alone and turn the
  y's into residuals: after l layers a context token holds y_j - x_j^T w_l and the query
  -x_q^T w_l, with w_{l+1} = w_l - Gamma_l grad L(w_l), L(w) = (1 / 2N) sum (y_i - x_i^T w)^2,
  w_0 = 0 (Gamma_l symmetric).  Gamma_l = eta I is plain GD (von Oswald et al.'s one step
  at L = 1).
* `gd_plus_plus`: P = [[-gamma_family I, 0], [0, -eta]], Q = [[I, 0], [0, 0]]: one GD step
  on the y's and, in the same layer, the input transform x <- (I - (gamma_family / N) X^T X) x
  of every token (X the N x d context) - the shrink-the-large-directions step EAGLE applies
  to A.  gamma_family is the family layer's (1/N-normalised) coefficient; the paper's gamma
  (von Oswald et al. Section 4, un-normalised: x <- x - gamma X^T X x, the one
  `solvers.icl_baselines.gd_plus_plus_predict` and the reports use) is gamma_family / N.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from eaglelab.models.config import ModelConfig
from eaglelab.models.transformer import LinearTransformer

__all__ = ["family_reference", "family_model", "preconditioned_gd", "gd_plus_plus",
           "preconditioned_gd_reference", "gd_plus_plus_reference", "diag_reference"]


def family_reference(Z_cols: np.ndarray, Ps: Sequence[np.ndarray], Qs: Sequence[np.ndarray]
                     ) -> np.ndarray:
    """The family's L-layer forward in its own convention (float64 loops): Z_cols
    (B, d + 1, N + 1) -> the final Z_cols."""
    Z = np.array(Z_cols, dtype=np.float64)
    N = Z.shape[-1] - 1
    M = np.diag(np.r_[np.ones(N), 0.0])
    for P, Q in zip(Ps, Qs, strict=True):
        Z = Z + (P @ Z @ M @ np.swapaxes(Z, -1, -2) @ Q @ Z) / N
    return Z


def family_model(Ps: Sequence[np.ndarray], Qs: Sequence[np.ndarray], N: int,
                 dtype: torch.dtype = torch.float64) -> LinearTransformer:
    """The one-head, one-seed eaglelab LinearTransformer (unconstrained regime, n = d
    features, d = N context tokens, n' = d' = 1) whose layer l is the family's layer
    (P_l, Q_l): Wq = Q_l^T / N, Wk = I, Wv = P_l^T, Wp = I."""
    Ps = [np.asarray(P, dtype=np.float64) for P in Ps]
    Qs = [np.asarray(Q, dtype=np.float64) for Q in Qs]
    if not Ps or len(Ps) != len(Qs):
        raise ValueError(f"give one P and one Q per layer, got {len(Ps)} and {len(Qs)}")
    W = Ps[0].shape[0]
    if any(M.shape != (W, W) for M in Ps + Qs):
        raise ValueError(f"every P and Q must be (d + 1) x (d + 1) = {(W, W)}")
    cfg = ModelConfig(regime="unconstrained", n=W - 1, d=int(N), n_prime=1, d_prime=1,
                      layers=len(Ps), heads=1)
    model = LinearTransformer(cfg, [0], dtype=dtype)
    eye = torch.eye(W, dtype=torch.float64)
    with torch.no_grad():
        p = model.params()
        for l, (P, Q) in enumerate(zip(Ps, Qs, strict=True)):
            p["wq"][0, l, 0] = torch.as_tensor(Q.T / N).to(dtype)
            p["wk"][0, l, 0] = eye.to(dtype)
            p["wv"][0, l, 0] = torch.as_tensor(P.T).to(dtype)
            p["wp"][0, l, 0] = eye.to(dtype)
    return model


def _block(xx: np.ndarray, yy: float) -> np.ndarray:
    d = xx.shape[0]
    out = np.zeros((d + 1, d + 1))
    out[:d, :d] = xx
    out[d, d] = yy
    return out


def preconditioned_gd(gammas: Sequence[np.ndarray]) -> tuple[list, list]:
    """(Ps, Qs) of L layers = L steps of preconditioned GD with the symmetric d x d step
    matrices gammas[l] (see the module docstring)."""
    Ps, Qs = [], []
    for G in gammas:
        G = np.asarray(G, dtype=np.float64)
        if G.ndim != 2 or G.shape[0] != G.shape[1] or not np.allclose(G, G.T):
            raise ValueError("each step matrix Gamma_l must be symmetric d x d")
        Ps.append(_block(np.zeros_like(G), -1.0))
        Qs.append(_block(G, 0.0))
    return Ps, Qs


def gd_plus_plus(gamma_family: float, eta: float, d: int) -> tuple[list, list]:
    """(Ps, Qs) of one GD++ layer (see the module docstring; gamma_family = N x the paper's
    gamma)."""
    return [_block(-float(gamma_family) * np.eye(d), -float(eta))], [_block(np.eye(d), 0.0)]


def preconditioned_gd_reference(X: np.ndarray, gammas: Sequence[np.ndarray]) -> np.ndarray:
    """Predictions x_q^T w_L of L preconditioned GD steps from w_0 = 0 on each prompt's
    context, X (B, N + 1, d + 1) rows [x, y] with the query last: (B,)."""
    X = np.asarray(X, dtype=np.float64)
    x, y, xq = X[:, :-1, :-1], X[:, :-1, -1], X[:, -1, :-1]
    N = x.shape[1]
    w = np.zeros((X.shape[0], x.shape[2]))
    for G in gammas:
        grad = -np.einsum("bnd,bn->bd", x, y - np.einsum("bnd,bd->bn", x, w)) / N
        w = w - grad @ np.asarray(G, dtype=np.float64).T
    return np.einsum("bd,bd->b", xq, w)


def gd_plus_plus_reference(X: np.ndarray, gamma_family: float, eta: float) -> np.ndarray:
    """The tokens after one GD++ step, rows (B, N + 1, d + 1): every x <- x - (gamma_family
    / N) X^T X x, every y <- y - (eta / N) sum_i y_i x_i^T x (the context X, y before it)."""
    X = np.asarray(X, dtype=np.float64)
    N = X.shape[1] - 1
    x, y = X[:, :, :-1], X[:, :, -1]
    Xc, yc = x[:, :-1], y[:, :-1]
    gram = np.einsum("bnd,bne->bde", Xc, Xc)
    x_new = x - gamma_family / N * np.einsum("bde,bte->btd", gram, x)
    y_new = y - eta / N * np.einsum("bn,bnd,btd->bt", yc, Xc, x)
    return np.concatenate([x_new, y_new[..., None]], axis=2)


def diag_reference(X: np.ndarray, q: Sequence[Sequence[float]], p: Sequence[Sequence[float]]
                   ) -> np.ndarray:
    """The tokens (B, N + 1, d + 1) after len(q) DIAG layers (one head each; see the module
    docstring) on prompts X in rows: q[l] = (q_x, q_y), p[l] = (p_x, p_y)."""
    Z = np.array(X, dtype=np.float64)
    if len(q) != len(p) or not len(q):
        raise ValueError(f"give one (q_x, q_y) and one (p_x, p_y) per layer, got {len(q)} "
                         f"and {len(p)}")
    for (qx, qy), (px, py) in zip(q, p, strict=True):
        x, y = Z[:, :, :-1], Z[:, :, -1]
        xc, yc = x[:, :-1], y[:, :-1]
        S = qx * np.einsum("bid,bjd->bij", x, xc) + qy * np.einsum("bi,bj->bij", y, yc)
        dx = px * np.einsum("bij,bjd->bid", S, xc)
        dy = py * np.einsum("bij,bj->bi", S, yc)
        Z = Z + np.concatenate([dx, dy[..., None]], axis=2)
    return Z
