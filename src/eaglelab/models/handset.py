"""Hand-set weights that make every layer one fixed-step EAGLE UPDATE (brief sections 2-4).

With absolute steps s_A = eta * rho and s_C = gamma * rho (rho given, not recomputed):

* unconstrained / estimation: W_QK = diag(a1 I_n, 0), W_VP = diag(a2 I_n, a3 I_n'),
  realised as Wq = diag(a1 I_n, 0), Wk = Wv = I_W, Wp = diag(a2 I_n, a3 I_n');
* compute-limited with a sketch S (n x r): W_QK = diag(a1 S S^T, 0) and
  W_VP = diag(a2 S S^T, a3 I_n'), realised as Wq = a1 [S; 0], Wk = [S; 0],
  Wv = [[S, 0], [0, I_n']], Wp = [[a2 S, 0], [0, a3 I_n']];
  then (Z W_QK Z_keys^T) Z_keys W_VP gives A' = A - s_A At At^T At S^T, C' = C - s_C At At^T C,
  B' = B - s_A Bt At^T At S^T and D_slot' = D_slot - s_C Bt At^T C (At = A S, Bt = B S);
* distributed (see `layout.py`): head mu reads its local columns R_mu = J_mu + N' only:
  Wq = diag(a1 I_{n_mu}, 0), Wk = Wv = I on R_mu, and Wp writes a2 I on J_mu and (a3 / M) I
  on the shared columns, so W_QK = a1 I on J_mu x J_mu and W_VP = a2 I on J_mu -> J_mu and
  (a3 / M) I on N' -> N'; per-machine steps allowed.

In every case a1 a2 = -s_A and a1 a3 = -s_C (a1 = 1 here), and the D slot holds minus
EAGLE's D, which is why the model's prediction is -Z_L[d:, n:].  Extra heads are zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from eaglelab.models.config import ModelConfig
from eaglelab.models.transformer import LinearTransformer

__all__ = ["eagle_weights"]


def _per_layer(steps, L: int, M: int, name: str) -> np.ndarray:
    a = np.asarray(steps, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(L, float(a))
    if a.ndim == 1:
        if a.shape[0] != L:
            raise ValueError(f"{name} has {a.shape[0]} entries for {L} layers")
        a = np.repeat(a[:, None], M, axis=1)
    if a.shape != (L, M):
        raise ValueError(f"{name} must be a number, a sequence of L={L} numbers or an (L, M) "
                         f"array of per-machine steps; got shape {a.shape}")
    return a


def eagle_weights(config: ModelConfig, step_A, step_C, *,
                  sketch: np.ndarray | Sequence[np.ndarray] | None = None,
                  value_map: np.ndarray | None = None,
                  dtype: torch.dtype = torch.float64, a1: float = 1.0) -> LinearTransformer:
    """A one-seed model whose layer l is UPDATE with steps step_A[l], step_C[l].

    step_A, step_C : a number, one per layer, or (distributed regime) an (L, M) array of
        per-machine steps.
    sketch : compute-limited regime only: an n x r matrix (or one per layer).
    value_map : compute-limited regime only: an n x n matrix R of rank <= r used on the value
        side in every layer (A <- A - step_A (A S)(A S)^T A R) instead of S S^T.
    a1 : the query/key scale; the value/projection scales are a2 = -step_A / a1 and
        a3 = -step_C / a1.
    """
    c = config
    L, n, np_, W = c.layers, c.n, c.n_prime, c.width
    M = c.machines if c.regime == "distributed" else 1
    sA, sC = _per_layer(step_A, L, M, "step_A"), _per_layer(step_C, L, M, "step_C")
    if c.regime == "compute-limited":
        if sketch is None:
            raise ValueError("the compute-limited regime needs sketch= (an n x r matrix)")
        sketches = [sketch] * L if isinstance(sketch, np.ndarray) else list(sketch)
        if len(sketches) != L or any(np.shape(S) != (n, c.r) for S in sketches):
            raise ValueError(f"sketch must be one n x r = {(n, c.r)} matrix or L={L} of them")
        if value_map is not None:
            U, sv, Vt = np.linalg.svd(np.asarray(value_map, dtype=np.float64))
            if np.shape(value_map) != (n, n) or (sv[c.r:] > 1e-12 * sv[0]).any():
                raise ValueError(f"value_map must be an n x n = {(n, n)} matrix of rank <= "
                                 f"r = {c.r}")
            value_factors = (U[:, :c.r], Vt[:c.r].T * sv[:c.r])
    elif sketch is not None or value_map is not None:
        raise ValueError(f"sketch= and value_map= are only meaningful in the compute-limited "
                         f"regime, not {c.regime!r}")
    model = LinearTransformer(c, 1, dtype=dtype)
    p = {k: np.zeros(v.shape[1:]) for k, v in model.params().items()}
    for l in range(L):
        if c.regime == "compute-limited":
            S = np.asarray(sketches[l], dtype=np.float64)
            a2, a3 = -sA[l, 0] / a1, -sC[l, 0] / a1
            p["wq"][l, 0, :n, :] = a1 * S
            p["wk"][l, 0, :n, :] = S
            vU, vV = (S, S) if value_map is None else value_factors
            p["wv"][l, 0, :n, : c.r] = vU
            p["wv"][l, 0, n:, c.r:] = np.eye(np_)
            p["wp"][l, 0, :n, : c.r] = a2 * vV
            p["wp"][l, 0, n:, c.r:] = a3 * np.eye(np_)
        elif c.regime == "distributed":
            n_mu = n // M
            for mu in range(M):
                h = mu * c.heads
                a2, a3 = -sA[l, mu] / a1, -sC[l, mu] / a1
                J, own = np.arange(mu * n_mu, (mu + 1) * n_mu), np.arange(n_mu)
                shared = np.arange(n_mu, n_mu + np_)        # local index of N'
                p["wq"][l, h][own, own] = a1
                p["wk"][l, h] = np.eye(n_mu + np_)
                p["wv"][l, h] = np.eye(n_mu + np_)
                p["wp"][l, h][J, own] = a2
                p["wp"][l, h][np.arange(n, W), shared] = a3 / M
        else:
            a2, a3 = -sA[l, 0] / a1, -sC[l, 0] / a1
            p["wq"][l, 0][np.arange(n), np.arange(n)] = a1
            p["wk"][l, 0] = np.eye(W)
            p["wv"][l, 0] = np.eye(W)
            p["wp"][l, 0] = np.diag(np.r_[np.full(n, a2), np.full(np_, a3)])
    with torch.no_grad():
        model.theta.copy_(torch.cat([torch.from_numpy(p[k]).reshape(-1)
                                     for k in model.shapes]).to(dtype)[None])
    return model
