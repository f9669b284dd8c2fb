"""Quantities from the paper's analysis: conditioning, diversity index, iteration bounds.

The bounds are ours, derived from EAGLE's scalar recursion (brief section 4), and have the
form of the paper's Theorems 1-2: iterations ~ log(kappa) + log log(1/eps) centrally, and
~ log(kappa_max) + alpha^{-1} log(1/eps) distributed.

Derivation (normalised iteration, ||A_l||_2 = 1, eta <= 1/3 so the top singular value stays
on top): a singular value s of A_l maps to s (1 - eta s^2) / (1 - eta) and, along its singular
direction, C_l's component is multiplied by (1 - gamma s^2).  The completion error
D_l - D* = -W C_l (noiseless case, W = B A^+) along direction i is therefore the product of
those factors, and the worst direction is the smallest singular value s_min = 1/kappa (both
maps are monotone).  `eagle_iterations_bound` runs this scalar recursion exactly; it bounds
||D_l - D*||_F / (||W||_2 ||P C||_F), P the projector onto range(A).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = [
    "condition_number",
    "numerical_rank",
    "diversity_index",
    "eagle_iterations_bound",
    "theorem1_bound",
    "theorem2_bound",
    "gd_rounds_bound",
    "cg_iterations_bound",
]


def _dense(A) -> np.ndarray:
    if sp.issparse(A):
        return A.toarray()
    if hasattr(A, "detach"):
        return A.detach().cpu().numpy()
    return np.asarray(A, dtype=np.float64)


def _positive_singular_values(A, rtol: float | None = None) -> np.ndarray:
    A = _dense(A).astype(np.float64, copy=False)
    if A.size == 0:
        raise ValueError("A is empty")
    s = np.linalg.svd(A, compute_uv=False)
    if rtol is None:
        rtol = max(A.shape) * np.finfo(np.float64).eps
    if s[0] == 0:
        raise ValueError("A is all zero; its condition number is undefined")
    return s[s > rtol * s[0]]


def numerical_rank(A, rtol: float | None = None) -> int:
    """Number of singular values above rtol * sigma_max (numpy's default rtol)."""
    return int(_positive_singular_values(A, rtol).size)


def condition_number(A, rtol: float | None = None) -> float:
    """sigma_max / sigma_min over the nonzero (numerically positive) spectrum of A."""
    s = _positive_singular_values(A, rtol)
    return float(s[0] / s[-1])


def diversity_index(A, partition: Sequence[Sequence[int]], rtol: float | None = None) -> float:
    """alpha = smallest positive eigenvalue of (1/M) sum_mu P_mu, P_mu the orthogonal
    projector onto range(A[:, J_mu]).  alpha = 1 when every block spans range(A); it is small
    when the blocks' ranges are nearly disjoint or nearly parallel in some direction.
    """
    A = _dense(A).astype(np.float64, copy=False)
    bases = []
    for J in partition:
        block = A[:, np.asarray(J, dtype=np.int64)]
        if block.size == 0:
            raise ValueError("partition has an empty block")
        U, s, _ = np.linalg.svd(block, full_matrices=False)
        tol = (max(block.shape) * np.finfo(np.float64).eps if rtol is None else rtol) * s[0]
        bases.append(U[:, s > tol] if s[0] > 0 else U[:, :0])
    U = np.concatenate(bases, axis=1)
    M = len(bases)
    small = U.T @ U if U.shape[1] <= U.shape[0] else U @ U.T
    ev = np.linalg.eigvalsh(small) / M
    pos = ev[ev > 1e-10]
    if pos.size == 0:
        raise ValueError("every block of A is zero; alpha is undefined")
    return float(pos.min())


def eagle_iterations_bound(kappa: float, eps: float, eta: float = 1 / 3, gamma: float = 1.0,
                           max_iter: int = 100_000) -> int:
    """Smallest l with prod_{j<l} |1 - gamma x_j| <= eps for the worst singular value
    (x_0 = 1/kappa^2, x_{j+1} = x_j (1 - eta x_j)^2 / (1 - eta)^2): the iterations dense,
    normalised EAGLE needs for relative error eps in the sense of the module docstring.
    Valid for 0 < eta <= 1/3 and 0 < gamma < 2."""
    if not (0 < eta <= 1 / 3):
        raise ValueError(f"the bound assumes 0 < eta <= 1/3, got {eta}")
    if not (0 < gamma < 2) or kappa < 1 or not (0 < eps < 1):
        raise ValueError("need 0 < gamma < 2, kappa >= 1 and 0 < eps < 1")
    x, log_err, target = 1.0 / kappa**2, 0.0, np.log(eps)
    for l in range(1, max_iter + 1):
        f = abs(1.0 - gamma * x)
        if f == 0.0:
            return l
        log_err += np.log(f)
        if log_err <= target:
            return l
        x = min(1.0, x * (1 - eta * x) ** 2 / (1 - eta) ** 2)
    return max_iter


def theorem1_bound(kappa: float, eps: float, eta: float = 1 / 3) -> float:
    """Closed form with Theorem 1's shape: log(kappa) / log(1/(1-eta)) + log2(log(1/eps))
    + 2 (growth phase of the smallest singular value at rate 1/(1 - eta), then quadratic)."""
    return float(np.log(kappa) / -np.log1p(-eta) + np.log2(max(np.log(1 / eps), 1.0)) + 2)


def theorem2_bound(kappa_max: float, alpha: float, eps: float, eta: float = 1 / 3,
                   gamma: float = 1.0) -> float:
    """A bound with Theorem 2's shape, O(log kappa_max + alpha^-1 log(1/eps)) (Section 5.2;
    the paper states the order, the constants are ours): Theorem 1's closed form for the
    local conditioning with the worst local kappa, then log(1/eps) / -log(1 - gamma alpha)
    rounds of the averaged C update (a contraction by 1 - gamma alpha per round, about
    (gamma alpha)^-1 log(1/eps) for small alpha)."""
    if not (0 < alpha <= 1):
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
    local = theorem1_bound(kappa_max, eps, eta)
    return float(local + np.log(1 / eps) / -np.log1p(-min(gamma * alpha, 1 - 1e-16)))


def gd_rounds_bound(kappa_mean: float, eps: float) -> float:
    """Gradient descent (central or distributed with EAGLE's communication): the slowest
    direction contracts by 1 - 1/kappa_mean per round, kappa_mean the condition number of
    (the mean of) rho_mu A^mu A^mu^T."""
    return float(np.log(1 / eps) * kappa_mean)


def cg_iterations_bound(kappa: float, eps: float) -> float:
    """CG on the normal equations (A A^T, condition kappa^2): ~ kappa/2 log(2/eps)."""
    return float(0.5 * kappa * np.log(2 / eps))
