"""Conjugate gradient on the normal equations (CGNR): a baseline of the brief, section 5.

W = B A^+ solves the normal equations W (A A^T) = B A^T.  Transposed, every row w_j of W
(j = 1..d') solves the d x d symmetric positive semi-definite system

    (A A^T) w_j^T = A b_j^T,

and CG is run on all d' systems at once as a block: one CG per column of X = W^T, each
with its own step alpha_j and conjugation coefficient beta_j (no coupling between
columns).  A A^T is never formed; it is applied as v -> A (A^T v), two products with A
per iteration, which keeps a scipy.sparse A sparse.

Starting from W_0 = 0 every iterate lies in range(A) (Krylov space of A A^T started at
A B^T), so for rank-deficient A CG still converges to the minimum-norm solution B A^+.
In exact arithmetic CG terminates after at most rank(A) iterations; in floating point the
error falls like ((kappa - 1) / (kappa + 1))^k with kappa = cond(A) (the normal equations
square the condition number, CG takes its square root back).

The iterate D_k = W_k C goes through the shared `StopRule` every iteration (relative
change of D), exactly as EAGLE's does, so iteration counts are comparable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eaglelab.solvers._inputs import (
    balance,
    check_int,
    check_positive,
    check_reference,
    prepare,
    to_dense,
    wrap_like,
)
from eaglelab.solvers._kernels import matmat
from eaglelab.solvers._result import SolveResult, StopRule, Timer
from eaglelab.solvers._xp import copy, device_of, namespace, to_numpy

__all__ = ["cg_normal"]



def cg_normal(A: Any, B: Any, C: Any, *, tol: float = 1e-10, max_iter: int = 1000,
              reference: Any = None, dtype: Any = None) -> SolveResult:
    """Complete D = B A^+ C with block conjugate gradient on W (A A^T) = B A^T.

    Parameters
    ----------
    A, B, C : array-like
        Blocks of shapes d x n, d' x n and d x n' (numpy arrays, scipy.sparse matrices
        -- A stays sparse -- or torch tensors of dtype float32/float64).
    tol : float
        Stop when ||D_k - D_{k-1}||_F <= tol * ||D_k||_F (the shared `StopRule`).
    max_iter : int
        Iteration limit; one iteration is one CG step for all d' rows of W at once
        (two products with A).
    reference : array-like, optional
        D* (d' x n'); the relative error of every iterate is recorded.
    dtype : optional
        float32 or float64 to force a precision (default: the inputs' common precision).

    Returns
    -------
    SolveResult
        method "cg", W = W_k, D = W_k C; info holds the final normal-equation residual
        norms per row of W (`normal_residuals`) and the number of products with A or A^T
        (`products`).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((6, 9)); W = rng.standard_normal((2, 6))
    >>> res = cg_normal(A, W @ A, A, tol=1e-12)
    >>> res.converged, bool(np.allclose(res.D, W @ A))
    (True, True)
    """
    timer = Timer()
    tol = check_positive("tol", tol)
    max_iter = check_int("max_iter", max_iter)
    prep = prepare(A, B, C, dtype=dtype, keep_sparse=True, native=True)
    d, n, dp, nq = prep.shape
    bal = balance(prep)                  # unit-scale blocks: exact, undone at the end
    ref = bal.reference(check_reference(reference, dp, nq))
    A_ = bal.A
    At = A_.T
    Bt = copy(to_dense(bal.B).T)         # n x d'
    C_ = bal.C
    xp = namespace(C_)

    X = xp.zeros((d, dp), dtype=C_.dtype, device=device_of(C_))  # X = W^T
    R = xp.astype(matmat(A_, Bt), C_.dtype)  # residual of the normal equations at X = 0
    P = copy(R)
    rr = xp.sum(R * R, axis=0)
    R0_norm = float(xp.sqrt(xp.sum(rr)))
    products = 1
    D = xp.zeros((dp, nq), dtype=C_.dtype, device=device_of(C_))
    stop = StopRule(tol, max_iter, ref, timer)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(max_iter):
            T = matmat(At, P)  # A^T P, n x d'
            pq = xp.sum(T * T, axis=0)  # p^T A A^T p >= 0 by construction
            Q = matmat(A_, T)
            products += 2
            alpha = _ratio(xp, rr, pq)  # pq = 0 only when p = 0 (that row is done)
            X += P * alpha
            R -= Q * alpha
            rr_new = xp.sum(R * R, axis=0)
            beta = _ratio(xp, rr_new, rr)
            P *= beta
            P += R
            rr = rr_new
            D_old, D = D, X.T @ C_
            if stop.record(D, D_old):
                break
    if stop.converged:
        _certify(stop, xp, A_, At, Bt, X, R0_norm, float(np.finfo(prep.dtype).eps))
    if stop.diverged:  # keep the last finite iterate; the status says what happened
        D, W = D_old, None
    else:
        W = wrap_like(bal.W(copy(X.T)), prep)
    stop.history.change[:] = [np.ldexp(c, bal.d_exponent) for c in stop.history.change]
    rr = to_numpy(rr).astype(np.float64)
    return SolveResult(
        D=wrap_like(bal.D(D), prep), W=W, method="cg", iterations=len(stop.history.change),
        code=stop.code(), status=stop.status(),
        history=stop.history, seconds=timer(), floats_sent_per_worker=0,
        info={"products": products, "normal_residuals": np.sqrt(np.maximum(rr, 0)).tolist()})


def _certify(stop, xp, A_, At, Bt, X, R0_norm: float, eps: float) -> None:
    """A stop of the change test is a convergence only if the TRUE normal-equations residual
    A (B^T - A^T X) is small: at most sqrt(eps) of its start (a solution's is at rounding
    level, eps kappa, so this is lenient).  In low precision on a rank-deficient A the
    recursion can lose conjugacy, the step fall to zero and the change test stop far from
    the answer (float32, rank 4 of 25: "converged" with relative error 3.5)."""
    true = matmat(A_, Bt - matmat(At, X))
    rel = float(xp.sqrt(xp.sum(true * true))) / R0_norm if R0_norm > 0 else 0.0
    limit = float(np.sqrt(eps))
    if not rel <= limit:
        stop.breakdown(f"breakdown: the change test stopped at iteration "
                       f"{len(stop.history.change)}, but the true normal-equations residual is "
                       f"{rel:.1e} of its start "
                       f"(above sqrt(eps) = {limit:.1e}): CG lost conjugacy to rounding (a "
                       "rank-deficient or ill-conditioned A at this precision); use lstsq or "
                       "float64")


def _ratio(xp, num, den):
    """num / den entrywise, 0 where den is 0 (no division by zero is evaluated)."""
    ok = den > 0
    return xp.where(ok, num / xp.where(ok, den, xp.ones_like(den)), xp.zeros_like(num))


