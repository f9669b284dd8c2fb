"""LSMR, row by row: the baseline of the brief's SuiteSparse comparison (section 5).

Row j of W = B A^+ is the minimum-norm solution of the least-squares problem

    min_w || A^T w - b_j^T ||_2        (A^T: n x d, b_j the j-th row of B),

which `scipy.sparse.linalg.lsmr` (Fong and Saunders' Krylov method, equivalent to MINRES
on the normal equations) solves matrix-free, so a scipy.sparse A stays sparse.  Started at
w = 0 its iterates stay in range(A), hence the minimum-norm solution for rank-deficient A.

Stopping: atol = btol = tol (LSMR's tests on the residual and on the normal-equation
residual), maxiter = max_iter, and conlim = 0 -- no early exit on a large condition
estimate, so ill-conditioned problems are solved to tol or reported as not converged.
LSMR has no per-iteration callback, so the history holds one entry (the final D).
LSMR works in float64 (scipy promotes); the result is cast to the requested dtype.

Outcome codes of LSMR (`istop`) and how they are reported:
  0   b_j = 0, so w = 0 is exact                 -> converged
  1/2 residual / normal-equation test met        -> converged
  4/5 the same tests met at machine precision    -> converged (tol below round-off)
  7   the iteration limit was reached            -> NOT converged, status says so
  3/6 condition limit (cannot occur: conlim = 0) -> NOT converged
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from eaglelab.solvers._inputs import (
    balance,
    check_int,
    check_positive,
    check_reference,
    prepare,
    to_dense,
    wrap_like,
)
from eaglelab.solvers._kernels import final_history, row_solver_status
from eaglelab.solvers._result import SolveResult, Timer

__all__ = ["lsmr"]



def lsmr(A: Any, B: Any, C: Any, *, tol: float = 1e-10, max_iter: int | None = None,
         reference: Any = None, dtype: Any = None) -> SolveResult:
    """Complete D = B A^+ C with one LSMR solve per row of B.

    Parameters
    ----------
    A, B, C : array-like
        Blocks of shapes d x n, d' x n and d x n' (numpy arrays, scipy.sparse matrices
        -- A stays sparse -- or torch tensors of dtype float32/float64).
    tol : float
        LSMR's atol and btol.
    max_iter : int, optional
        LSMR iteration limit per row (default: scipy's, min(n, d)).
    reference : array-like, optional
        D* (d' x n'); the relative error of the final D is recorded.
    dtype : optional
        float32 or float64 for the returned D and W (the solve itself runs in float64).

    Returns
    -------
    SolveResult
        method "lsmr"; iterations = the largest LSMR iteration count over the rows; info
        holds iterations_per_row, total_iterations, istop_per_row.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((6, 9)); W = rng.standard_normal((2, 6))
    >>> res = lsmr(A, W @ A, A, tol=1e-12, max_iter=100)
    >>> res.converged, bool(np.allclose(res.D, W @ A))
    (True, True)
    """
    timer = Timer()
    tol = check_positive("tol", tol)
    if max_iter is not None:
        max_iter = check_int("max_iter", max_iter)
    prep = prepare(A, B, C, dtype=dtype, keep_sparse=True)
    d, n, dp, nq = prep.shape
    ref = check_reference(reference, dp, nq)
    bal = balance(prep)                  # unit-scale blocks: exact, undone below
    dt = prep.dtype
    A64 = bal.A.astype(np.float64, copy=False)
    At = A64.T.tocsr() if sp.issparse(A64) else A64.T
    B64 = np.asarray(to_dense(bal.B), dtype=np.float64)

    W = np.empty((dp, d), dtype=np.float64)
    its: list[int] = []
    stops: list[int] = []
    for j in range(dp):
        x, istop, itn = spla.lsmr(At, B64[j], atol=tol, btol=tol, conlim=0.0,
                                  maxiter=max_iter)[:3]
        W[j] = x
        stops.append(int(istop))
        its.append(int(itn))
    D = bal.D(W @ bal.C.astype(np.float64, copy=False)).astype(dt)
    W = bal.W(W).astype(dt)

    limit = max_iter if max_iter is not None else min(n, d)
    code, status = row_solver_status("LSMR", D, stops, limit, tol, "increase max_iter")
    history = final_history(D, ref, timer)
    return SolveResult(
        D=wrap_like(D, prep), W=wrap_like(W, prep), method="lsmr", iterations=max(its),
        code=code, status=status, history=history, seconds=timer(),
        floats_sent_per_worker=0,
        info={"iterations_per_row": its, "total_iterations": int(sum(its)),
              "istop_per_row": stops})


