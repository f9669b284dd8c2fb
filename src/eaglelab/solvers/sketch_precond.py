"""Sketch-and-precondition LSQR (Blendenpik / LSRN style): the strongest CPU baseline for
dense least squares among the brief's comparisons (section 5).

Row j of W = B A^+ solves the tall least-squares problem min_w ||A^T w - b_j^T|| with
A^T of size n x d.  The method:

1. Sketch.  A sparse CountSketch S (s x n, s = ceil(oversample * d)): row i of A^T is
   hashed to one of s rows with a random sign, so S A^T costs O(nnz(A)).  When s >= n a
   sketch cannot be smaller than A^T and S = I is used instead (the method then becomes a
   QR least-squares solve refined by LSQR).
2. Factor.  Column-pivoted QR, S A^T P = Q R, and the numerical rank
   k = #{i : |R_ii| > max(d, n) * eps * |R_11|} (the cut-off of `lstsq` and of the
   reference `nystrom_reference`).
3. Precondition.  A right preconditioner N (d x k) with S A^T N = Q_k orthonormal:
     k = d:  N = P R^{-1}                         (two triangular solves per product);
     k < d:  complete orthogonal decomposition.  T = [R_11 R_12] P^T (k x d) spans the
             row space of S A^T; T^T = Z L (thin QR), N = Z L^{-T}.
   Because S is a subspace embedding of range(A^T), A^T N has singular values in
   [1 - e, 1 + e] for a modest e, so LSQR on min_y ||A^T N y - b|| needs only a few tens
   of iterations whatever cond(A) is; w = N y.
4. Warm start.  y_0 = Q_k^T S b is the sketch-and-solve solution; for a consistent
   system (B = W* A, the noiseless case) it is already exact up to round-off.
5. LSQR (`scipy.sparse.linalg.lsqr`, atol = btol = tol, conlim off) on every row of B,
   one after another.

Rank deficiency.  w = N y always lies in range(N) = row space of S A^T.  If the sketch
preserves the rank of A (it does with high probability for dense, incoherent A), that row
space is range(A), and the least-squares solution inside range(A) is the MINIMUM-NORM
solution: the returned D is B A^+ C, not a basic solution.  A CountSketch can lose rank on
coherent (e.g. very sparse) A when hash collisions merge rows.  That only matters when
k < d, so in that case the result is verified: every row must have a small residual or a
small normal-equation residual ||A (A^T w - b)|| (relative tolerance sqrt(max(tol, eps)));
if not, the solve is repeated with S = I (exact, O(n d^2)), and `info["fallback"]` says
why.  A loss along a direction with a tiny singular value can slip through this check.

All arithmetic is float64 (scipy's LSQR promotes); D and W are cast to the requested dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from eaglelab.solvers._inputs import (
    check_int,
    check_positive,
    check_reference,
    prepare,
    to_dense,
    wrap_like,
)
from eaglelab.solvers._kernels import final_history, matmat, row_solver_status
from eaglelab.solvers._result import SolveResult, Timer

__all__ = ["sketch_precond_lsqr"]



def sketch_precond_lsqr(A: Any, B: Any, C: Any, *, oversample: float = 4.0,
                        tol: float = 1e-12, max_iter: int | None = None,
                        reference: Any = None, seed: int | None = None,
                        dtype: Any = None) -> SolveResult:
    """Complete D = B A^+ C with CountSketch-preconditioned LSQR, one solve per row of B.

    Parameters
    ----------
    A, B, C : array-like
        Blocks of shapes d x n, d' x n and d x n' (numpy arrays, scipy.sparse matrices
        -- A stays sparse for the sketch and the products -- or torch tensors of dtype
        float32/float64).  Best suited to n >> d.
    oversample : float
        Sketch rows per column of A^T, >= 1: s = ceil(oversample * d).  Larger s gives a
        better preconditioner (fewer LSQR iterations) at a higher QR cost.
    tol : float
        LSQR's atol and btol.
    max_iter : int, optional
        LSQR iteration limit per row (default: scipy's, twice the rank).
    reference : array-like, optional
        D* (d' x n'); the relative error of the final D is recorded.
    seed : int or None
        Seed of the CountSketch.
    dtype : optional
        float32 or float64 for the returned D and W (the solve itself runs in float64).

    Returns
    -------
    SolveResult
        method "sketch_precond"; iterations = the largest LSQR iteration count over the
        rows of B; info holds sketch ("countsketch" or "identity"), sketch_rows, rank,
        iterations_per_row, istop_per_row, setup_seconds and, if it happened, fallback.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((5, 400)); W = rng.standard_normal((2, 5))
    >>> res = sketch_precond_lsqr(A, W @ A, A[:, :3], seed=0)
    >>> res.converged, res.info["sketch"], bool(np.allclose(res.D, W @ A[:, :3]))
    (True, 'countsketch', True)
    """
    timer = Timer()
    oversample = check_positive("oversample", oversample)
    if oversample < 1:
        raise ValueError(f"oversample must be >= 1 (sketch rows per column of A^T), "
                         f"got {oversample!r}")
    tol = check_positive("tol", tol)
    if max_iter is not None:
        max_iter = check_int("max_iter", max_iter)
    prep = prepare(A, B, C, dtype=dtype, keep_sparse=True)
    d, n, dp, nq = prep.shape
    ref = check_reference(reference, dp, nq)
    if sp.issparse(prep.A):
        A64 = prep.A.astype(np.float64, copy=False).tocsr()
    else:
        A64 = np.ascontiguousarray(prep.A, dtype=np.float64)  # both A u and A^T v are fast
    At = A64.T
    B64 = np.ascontiguousarray(to_dense(prep.B), dtype=np.float64)
    s = math.ceil(oversample * d)
    rng = np.random.default_rng(seed)
    rtol = max(d, n) * float(np.finfo(np.float64).eps)
    info: dict[str, Any] = {"oversample": oversample}

    kind = "countsketch" if s < n else "identity"
    W, solve_info = _solve(A64, At, B64, kind, s, rtol, tol, max_iter, rng)
    if solve_info["rank"] < d and solve_info["sketch"] == "countsketch":
        failed = _not_optimal(A64, At, B64, W, math.sqrt(max(tol, np.finfo(np.float64).eps)))
        if failed:
            info["fallback"] = (f"the CountSketch had rank {solve_info['rank']} < d and rows "
                                f"{failed} of W failed the optimality check; re-solved "
                                f"with S = I")
            W, solve_info = _solve(A64, At, B64, "identity", s, rtol, tol, max_iter, rng)
    info.update(solve_info)

    D = (W @ prep.C.astype(np.float64, copy=False)).astype(prep.dtype)
    W = W.astype(prep.dtype)
    stops, its = info["istop_per_row"], info["iterations_per_row"]
    limit = max_iter if max_iter is not None else 2 * info["rank"]
    code, status = row_solver_status("LSQR", D, stops, limit, tol,
                                          "increase max_iter or oversample")
    history = final_history(D, ref, timer)
    return SolveResult(
        D=wrap_like(D, prep), W=wrap_like(W, prep), method="sketch_precond",
        iterations=max(its), code=code, status=status, history=history,
        seconds=timer(), floats_sent_per_worker=0, info=info)


def _solve(A64: Any, At: Any, B64: np.ndarray, kind: str, s: int, rtol: float, tol: float,
           max_iter: int | None, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Sketch, factor, and run preconditioned LSQR on every row of B; returns (W, info)."""
    t0 = Timer()
    d, n = A64.shape
    if kind == "countsketch":
        S = _countsketch(s, n, rng)
        SAt = S @ At
        SAt = SAt.toarray() if sp.issparse(SAt) else SAt
    else:
        S = None
        SAt = At.toarray() if sp.issparse(At) else At
    # geqp3 on a Fortran-ordered private copy (C order made it ~10x slower; for S = I,
    # SAt is a view of A and must not be overwritten)
    Q, R, piv = scipy.linalg.qr(np.array(SAt, order="F"), mode="economic", pivoting=True,
                                overwrite_a=True, check_finite=False)
    diag = np.abs(np.diag(R))
    k = int(np.count_nonzero(diag > rtol * diag[0])) if diag[0] > 0 else 0
    if k == 0:  # S annihilated A^T (cannot happen for S = I since A != 0)
        return _solve(A64, At, B64, "identity", s, rtol, tol, max_iter, rng)
    N, Nt = _preconditioner(R, piv, k, d)
    Qk_t = np.ascontiguousarray(Q[:, :k].T)
    op = spla.LinearOperator((n, k), dtype=np.float64,
                             matvec=lambda y: At @ N(np.ravel(y)),
                             rmatvec=lambda u: Nt(A64 @ np.ravel(u)))
    setup = t0()
    W = np.empty((B64.shape[0], d))
    its: list[int] = []
    stops: list[int] = []
    for j, b in enumerate(B64):
        Sb = S @ b if S is not None else b
        y0 = Qk_t @ Sb  # sketch-and-solve start: exact when b is in range(A^T)
        y, istop, itn = spla.lsqr(op, b, atol=tol, btol=tol, conlim=0.0, iter_lim=max_iter,
                                  x0=y0)[:3]
        W[j] = N(y)
        stops.append(int(istop))
        its.append(int(itn))
    return W, {"sketch": kind, "sketch_rows": s if S is not None else n, "rank": k,
               "iterations_per_row": its, "istop_per_row": stops, "setup_seconds": setup}


def _countsketch(s: int, n: int, rng: np.random.Generator) -> sp.csr_matrix:
    """s x n CountSketch: column i has a single entry +-1 in a uniformly random row."""
    rows = rng.integers(0, s, size=n)
    signs = rng.choice(np.array([-1.0, 1.0]), size=n)
    return sp.csc_matrix((signs, rows, np.arange(n + 1)), shape=(s, n)).tocsr()


Apply = Callable[[np.ndarray], np.ndarray]


def _preconditioner(R: np.ndarray, piv: np.ndarray, k: int, d: int) -> tuple[Apply, Apply]:
    """(y -> N y, v -> N^T v) for the preconditioner N of the module docstring.

    Triangular solves call BLAS dtrsv directly: scipy.linalg.solve_triangular's checks
    cost ~4x the solve itself at d = 200, a visible share of an LSQR iteration."""
    trsv = scipy.linalg.blas.dtrsv
    if k == d:
        Rf = np.asfortranarray(R)

        def N(y: np.ndarray) -> np.ndarray:
            w = np.empty(d)
            w[piv] = trsv(Rf, y)
            return w

        def Nt(v: np.ndarray) -> np.ndarray:
            return trsv(Rf, np.ascontiguousarray(v[piv]), trans=1)

        return N, Nt
    T = np.zeros((k, d))
    T[:, piv] = R[:k, :]
    Z, L = scipy.linalg.qr(T.T, mode="economic", check_finite=False)
    Lf = np.asfortranarray(L)

    def N_cod(y: np.ndarray) -> np.ndarray:
        return Z @ trsv(Lf, np.ascontiguousarray(y), trans=1)

    def Nt_cod(v: np.ndarray) -> np.ndarray:
        return trsv(Lf, Z.T @ v)

    return N_cod, Nt_cod


def _not_optimal(A64: Any, At: Any, B64: np.ndarray, W: np.ndarray, tau: float) -> list[int]:
    """Rows j whose w_j is neither a near-exact fit (||r|| <= tau (||b|| + ||A|| ||w||))
    nor a least-squares solution (||A r|| <= tau ||A|| ||r||), r = b - A^T w."""
    norm_A = float(spla.norm(A64)) if sp.issparse(A64) else float(np.linalg.norm(A64))
    Rt = B64.T - matmat(At, np.ascontiguousarray(W.T))  # n x d'
    G = matmat(A64, Rt)
    bad = []
    for j in range(B64.shape[0]):
        r, g = np.linalg.norm(Rt[:, j]), np.linalg.norm(G[:, j])
        fits = r <= tau * (np.linalg.norm(B64[j]) + norm_A * np.linalg.norm(W[j]))
        if not (fits or g <= tau * norm_A * r):
            bad.append(j)
    return bad
