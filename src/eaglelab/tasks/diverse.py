"""Distributed problems with a prescribed diversity index alpha and local conditioning: the
one alpha-controlled construction (the distributed experiment, the Theorem 2 experiment, the
engine's tests and benchmarks all draw from it).

A full-rank square A cut into column blocks narrower than d has a tiny alpha (each block
spans only n_mu of the d directions), so the paper's "alpha ~ 1 at n = d = 1000" needs a
low-rank A.  `diverse_problem` builds A block by block from its ranges:

* Cells.  Take `cells` mutually orthogonal q-dimensional subspaces of R^d (a Haar-random
  orthonormal Q, d x q*cells).  Inside every cell, block mu's range is the hyperplane
  orthogonal to the unit normal

      n_mu = (a, b f_mu),   a^2 + b^2 = 1,

  where the f_mu are a centred tight frame of R^k: f_mu = (cos 2 pi mu/M, sin 2 pi mu/M)
  (k = 2) for M >= 3, f_mu = +-1 (k = 1) for M = 2 with alpha < 1; q = k + 1.  Then
  (1/M) sum_mu n_mu n_mu^T = diag(a^2, b^2/k I_k), so the mean of the projectors onto the
  block ranges, I - that, has eigenvalues 1 - a^2 and 1 - b^2/k on every cell:

      alpha = 1 - a^2    for a^2 >= 1/(k + 1),  i.e. any alpha in (0, k/(k+1)].

  alpha = 1 is the limit case a = 1 done exactly: every block spans the same k-dimensional
  subspace per cell.  (No construction reaches alpha in (2/3, 1) at M = 3 - or in
  ((M-1)/M, 1) for any M: a vector of the sum of the ranges orthogonal to one block's range
  has a Rayleigh quotient of at most (M-1)/M - so alpha = 2/3 is the closest to the paper's
  0.83 that M = 3 allows; see docs/distributed.md.)
* Conditioning.  A^mu = U_mu diag(s) V_mu^T with U_mu the orthonormal basis of block mu's
  range (k per cell, cell by cell), V_mu Haar (n_mu x k cells), and s the geometric profile
  1 .. 1/kappa: every block has condition number exactly kappa, so kappa_max = kappa.  The
  profile is aligned across blocks (block mu's large singular values sit in the same cells
  as block nu's), as when the blocks are column samples of one ill-conditioned matrix; this
  leaves GD's operator (1/M) sum rho_mu A^mu A^mu^T as ill-conditioned as the blocks, for
  every M (shuffling the profile per block would let averaging improve GD as M grows).
  Within each cell every block's k singular directions are turned by a Haar rotation of its
  own, so no two blocks share singular vectors (at alpha = 1 they would otherwise be copies of
  one matrix, and distributed EAGLE would be dense EAGLE).  Needs n_mu >= k * cells.
* Noiseless completion: B = W A, C = A G, D* = W A G = B A^+ C, with W (d' x d) and
  G (n x n') Gaussian scaled by 1/sqrt(d), 1/sqrt(n) (as in eaglelab.tasks.conditioned).

Columns are laid out block after block, so the partition is contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eaglelab.tasks._checks import check_int
from eaglelab.tasks.haar import haar

__all__ = ["DiverseProblem", "diverse_problem", "max_alpha_below_one"]


@dataclass
class DiverseProblem:
    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray
    partition: list[np.ndarray]
    alpha: float
    kappa_max: float


def max_alpha_below_one(workers: int) -> float:
    """Largest alpha < 1 that `diverse_problem` can build for `workers` blocks."""
    workers = check_int("workers", workers)
    return 0.0 if workers == 1 else (0.5 if workers == 2 else 2.0 / 3.0)


def diverse_problem(n: int = 1000, d: int = 1000, workers: int = 3, *, alpha: float = 1.0,
                    kappa: float = 1e3, cells: int = 50, d_prime: int = 2, n_prime: int = 2,
                    seed: int | None = 0) -> DiverseProblem:
    """A noiseless completion problem whose contiguous M-block partition has diversity index
    exactly `alpha` and local condition numbers exactly `kappa` (module docstring)."""
    n, d, M = check_int("n", n), check_int("d", d), check_int("workers", workers)
    cells, d_prime, n_prime = check_int("cells", cells), check_int("d_prime", d_prime), \
        check_int("n_prime", n_prime)
    kappa = float(kappa)
    if not (np.isfinite(kappa) and kappa >= 1):
        raise ValueError(f"kappa must be finite and >= 1, got {kappa!r}")
    top = max_alpha_below_one(M)
    alpha = float(alpha)
    if not (alpha == 1.0 or 0.0 < alpha <= top + 1e-12):
        raise ValueError(f"alpha={alpha!r} cannot be built with {M} workers: use 1 or a value in "
                         f"(0, {top:.4g}] (no partition of {M} blocks has alpha in "
                         f"({(M - 1) / M:.4g}, 1))")
    k = 1 if (M == 2 and alpha < 1.0) else 2
    q = k + 1
    blocks = np.array_split(np.arange(n), M)     # = solvers.partition_columns(n, M)
    if min(J.size for J in blocks) < k * cells:
        raise ValueError(f"each block needs at least k * cells = {k * cells} columns; reduce "
                         f"cells (now {cells}) or workers")
    if q * cells > d:
        raise ValueError(f"q * cells = {q * cells} exceeds d = {d}; reduce cells")
    rng = np.random.default_rng(seed)
    Q = haar(rng, d, q * cells).reshape(d, cells, q)
    a = 1.0 if alpha == 1.0 else float(np.sqrt(1.0 - alpha))
    b = float(np.sqrt(max(0.0, 1.0 - a * a)))
    profile = np.geomspace(1.0, 1.0 / kappa, k * cells)
    A = np.empty((d, n))
    for mu, J in enumerate(blocks):
        f = np.array([1.0 if mu == 0 else -1.0]) if k == 1 else \
            np.array([np.cos(2 * np.pi * mu / M), np.sin(2 * np.pi * mu / M)])
        normal = np.concatenate([[a], b * f])
        basis = np.linalg.svd(normal[None, :])[2][1:].T          # q x k, orthogonal to normal
        # a rotation of the block's own within each cell's k-plane: the ranges (so alpha)
        # and the profile per cell stay, but no two blocks share their singular vectors -
        # at alpha = 1 the blocks would otherwise be one matrix and distributed EAGLE dense
        R = np.stack([haar(rng, k, k) for _ in range(cells)])    # cells x k x k
        U = np.einsum("dcq,qk,ckj->dcj", Q, basis, R).reshape(d, cells * k)
        V = haar(rng, J.size, k * cells)
        A[:, J] = (U * profile) @ V.T
    W = rng.standard_normal((d_prime, d)) / np.sqrt(d)
    G = rng.standard_normal((n, n_prime)) / np.sqrt(n)
    return DiverseProblem(A=A, B=W @ A, C=A @ G, D=W @ A @ G, partition=blocks, alpha=alpha,
                          kappa_max=kappa)
