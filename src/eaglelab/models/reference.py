"""Plain float64 reference forward: the layer of brief section 2 written literally.

Loops over prompts, layers and heads; builds the full T x T scores and multiplies by the
mask M (ones in the first d columns); embeds the distributed regime's compact query/key/value
factors with an explicit loop over each machine's local columns.  No products are
precomputed and nothing is truncated, so the fast path in `transformer.py` can be held to
it (tests: 1e-10 in float64).
"""

from __future__ import annotations

import numpy as np

from eaglelab.models.config import ModelConfig

__all__ = ["reference_layers", "reference_prediction", "full_read_factor"]


def full_read_factor(compact: np.ndarray, config: ModelConfig, h: int) -> np.ndarray:
    """Head h's query, key or value factor with W rows (the distributed one embedded on its
    machine's columns J_mu followed by the n' shared columns)."""
    if config.regime != "distributed":
        return compact
    n_mu = config.n // config.machines
    mu = h // config.heads
    full = np.zeros((config.width, compact.shape[1]))
    for i in range(n_mu):
        full[mu * n_mu + i, :] = compact[i, :]
    for j in range(config.n_prime):
        full[config.n + j, :] = compact[n_mu + j, :]
    return full


def reference_layers(weights: dict[str, np.ndarray], config: ModelConfig, Z0: np.ndarray,
                     head_mask: np.ndarray | None = None) -> list[np.ndarray]:
    """[Z_0, ..., Z_L] (each (B, T, W), float64) for one model's weights (as returned by
    `LinearTransformer.weights(k)`) on prompts Z0 (B, T, W)."""
    Z0 = np.asarray(Z0, dtype=np.float64)
    T, d, L, H = config.tokens, config.d, config.layers, config.total_heads
    mask = np.zeros((T, T))
    mask[:, :d] = 1.0
    outs = [Z0.copy()]
    Zs = [Z0[b].copy() for b in range(Z0.shape[0])]
    for layer in range(L):
        l = 0 if config.tied else layer             # tied: one stored layer, used by all
        for b, Z in enumerate(Zs):
            update = np.zeros_like(Z)
            for h in range(H):
                Wq = full_read_factor(weights["wq"][l, h], config, h)
                Wk = full_read_factor(weights["wk"][l, h], config, h)
                Wv = full_read_factor(weights["wv"][l, h], config, h)
                Wp = weights["wp"][l, h]
                Q = Z @ Wq
                if "bq" in weights:
                    Q[:d] += weights["bq"][l, h, 0]
                    Q[d:] += weights["bq"][l, h, 1]
                scores = (Q @ (Z @ Wk).T) * mask
                head = scores @ (Z @ Wv) @ Wp.T
                if head_mask is not None:
                    head = head * head_mask[layer, h]
                update += head
            Zs[b] = Z + update
        outs.append(np.stack(Zs))
    return outs


def reference_prediction(weights: dict[str, np.ndarray], config: ModelConfig,
                         Z0: np.ndarray, head_mask: np.ndarray | None = None) -> np.ndarray:
    """The read-out -Z_L[d:, n:] of `reference_layers`, shape (B, d', n')."""
    Z = reference_layers(weights, config, Z0, head_mask)[-1]
    return -Z[:, config.d:, config.n:]
