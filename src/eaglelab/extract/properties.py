"""Matrix-property tests on weight products (brief section 3, step 3).

- `block_structure`: how much of W lives in each block of the (n, n') split, how diagonal
  the diagonal blocks are and how close they are to a multiple of the identity;
- `numerical_rank`: singular values above a relative threshold (learned weights are noisy,
  so the threshold is a few percent, not machine precision);
- `eagle_structure`: how far one head's (W_QK, W_VP) is from EAGLE's form diag(a1 I_n, 0),
  diag(a2 I_n, a3 I_n') (the same test for the family's models: GD is a2 = 0, GD++ is the
  full form - its input transform x <- (I - gamma X^T X) x is EAGLE's A-update);
- `sketch_comparison`: is a learned n x n block distributed like S S^T for a random n x r
  orthogonal S?  Wasserstein distances between the learned block's (normalised) eigenvalues
  and entries and those of random S S^T, against a null distribution of distances between
  independent random S S^T pairs.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance

__all__ = ["block_structure", "numerical_rank", "sketch_comparison", "random_projector",
           "eagle_structure"]


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


def eagle_structure(W_QK: np.ndarray, W_VP: np.ndarray, n: int) -> dict:
    """One head's distance from EAGLE's structured form (brief section 4; related brief
    section 2 for GD / GD++): W_QK ~ diag(a1 I_n, 0), W_VP ~ diag(a2 I_n, a3 I_n').

    Returns the least-squares a1, a2, a3; the relative defects ||W - its EAGLE projection||_F
    / ||W||_F of each product (0 for an exactly EAGLE-shaped head; invariant under the gauge
    (c W_QK, W_VP / c)); `a_share` = ||a2 I_n||_F / ||W_VP's EAGLE projection||_F (0 for GD,
    which leaves A alone; > 0 when the head also applies EAGLE's A-update); and the steps
    s_A = -a1 a2, s_C = -a1 a3 (`scaling.head_steps` in the unconstrained regime)."""
    W_QK, W_VP = np.asarray(W_QK, dtype=np.float64), np.asarray(W_VP, dtype=np.float64)
    W = W_QK.shape[0]
    if W_QK.shape != (W, W) or W_VP.shape != (W, W) or not 0 < n < W:
        raise ValueError(f"need two square products of one size > n = {n}, got {W_QK.shape} "
                         f"and {W_VP.shape}")
    a1 = float(np.trace(W_QK[:n, :n])) / n
    a2 = float(np.trace(W_VP[:n, :n])) / n
    a3 = float(np.trace(W_VP[n:, n:])) / (W - n)
    E_qk = np.diag(np.r_[np.full(n, a1), np.zeros(W - n)])
    E_vp = np.diag(np.r_[np.full(n, a2), np.full(W - n, a3)])

    def defect(M, E):
        nm = float(np.linalg.norm(M))
        return float(np.linalg.norm(M - E) / nm) if nm > 0 else 1.0

    ev = float(np.linalg.norm(E_vp))
    return {"a1": a1, "a2": a2, "a3": a3, "defect_qk": defect(W_QK, E_qk),
            "defect_vp": defect(W_VP, E_vp),
            "a_share": float(abs(a2) * np.sqrt(n) / ev) if ev > 0 else 0.0,
            "s_A": -a1 * a2, "s_C": -a1 * a3}
