"""Matrix-property tests on weight products (brief section 3, step 3).

- `block_structure`: how much of W lives in each block of the (n, n') split, how diagonal
  the diagonal blocks are and how close they are to a multiple of the identity;
- `numerical_rank`: singular values above a relative threshold (learned weights are noisy,
  so the threshold is a few percent, not machine precision);
- `sketch_comparison`: is a learned n x n block distributed like S S^T for a random n x r
  orthogonal S?  Wasserstein distances between the learned block's (normalised) eigenvalues
  and entries and those of random S S^T, against a null distribution of distances between
  independent random S S^T pairs.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance

__all__ = ["block_structure", "numerical_rank", "sketch_comparison", "random_projector"]


def _rel(x: np.ndarray, total: float) -> float:
    return float(np.linalg.norm(x) / total) if total > 0 else 0.0


def block_structure(W: np.ndarray, n: int, columns: np.ndarray | None = None) -> dict:
    """Block statistics of a (n + n') x (n + n') product.

    columns: restrict the top-left block to these rows/columns (a machine's J_mu); its
    complement inside the n x n block is reported as `tl_outside`.
    """
    total = float(np.linalg.norm(W))
    TL, TR, BL, BR = W[:n, :n], W[:n, n:], W[n:, :n], W[n:, n:]
    out = {"tl": _rel(TL, total), "tr": _rel(TR, total), "bl": _rel(BL, total),
           "br": _rel(BR, total)}
    if columns is not None:
        inside = np.zeros((n, n), dtype=bool)
        inside[np.ix_(columns, columns)] = True
        out["tl_outside"] = _rel(np.where(inside, 0.0, TL), total)
        TL = TL[np.ix_(columns, columns)]
    for name, blk in (("tl", TL), ("br", BR)):
        nb = float(np.linalg.norm(blk))
        diag = np.diag(blk)
        out[f"{name}_diag_fraction"] = float(np.linalg.norm(diag) / nb) if nb > 0 else 0.0
        out[f"{name}_mean_diag"] = float(diag.mean()) if diag.size else 0.0
        iden = blk - diag.mean() * np.eye(blk.shape[0])
        out[f"{name}_identity_defect"] = float(np.linalg.norm(iden) / nb) if nb > 0 else 0.0
    return out


def numerical_rank(M: np.ndarray, rtol: float = 0.05) -> int:
    s = np.linalg.svd(M, compute_uv=False)
    return int(np.sum(s > rtol * s[0])) if s.size and s[0] > 0 else 0


def random_projector(n: int, r: int, rng: np.random.Generator) -> np.ndarray:
    from eaglelab.tasks.haar import haar

    Q = haar(rng, n, r)
    return Q @ Q.T


def _normalised(P: np.ndarray, r: int) -> np.ndarray:
    """Symmetrise and scale so the trace is r (the trace of S S^T)."""
    P = 0.5 * (P + P.T)
    tr = float(np.trace(P))
    return P * (r / tr) if tr != 0 else P


def sketch_comparison(P: np.ndarray, r: int, draws: int = 200, seed: int = 0) -> dict:
    """Compare a learned n x n block P with S S^T, S random n x r orthogonal.

    Eigenvalues: S S^T has r unit eigenvalues and n - r zeros, so the spectrum test is the
    spread of P's top r normalised eigenvalues and the size of the rest relative to them.
    Entries: the Wasserstein distance between P's entries and a random S S^T's (mean over
    draws), against the null of distances between independent random S S^T pairs;
    p_entries is the fraction of null distances at least as large as P's (near 0: unlike a
    random sketch; above 0.05: indistinguishable at that level).
    """
    n = P.shape[0]
    if not 1 <= r <= n:
        raise ValueError(f"sketch rank r must lie in [1, {n}], got {r}")
    rng = np.random.default_rng(seed)
    Pn = _normalised(P, r)
    ev_P, ent_P = np.linalg.eigvalsh(Pn), Pn.ravel()
    # S S^T is a rank-r projector: eigenvalues exactly r ones and n - r zeros
    proj_ev = np.r_[np.zeros(n - r), np.ones(r)]
    d_ent, null_ent = [], []
    for _ in range(draws):
        R1, R2 = random_projector(n, r, rng), random_projector(n, r, rng)
        d_ent.append(wasserstein_distance(ent_P, R1.ravel()))
        null_ent.append(wasserstein_distance(R1.ravel(), R2.ravel()))
    d_ent_m = float(np.mean(d_ent))
    null = np.asarray(null_ent)
    top = np.sort(ev_P)[::-1][:r]
    return {
        "r": r, "eigenvalues": np.sort(ev_P)[::-1].tolist(),
        "distance_eigenvalues": float(wasserstein_distance(ev_P, proj_ev)),
        "top_r_spread": float(top.std() / abs(top.mean())) if top.mean() != 0 else float("inf"),
        "rest_over_top": float(np.abs(np.sort(ev_P)[::-1][r:]).max() / abs(top.mean()))
        if r < n else 0.0,
        "distance_entries": d_ent_m,
        "null_entries_mean": float(null.mean()),
        "null_entries_q95": float(np.quantile(null, 0.95)),
        "p_entries": float(np.mean(null >= d_ent_m)),
    }
