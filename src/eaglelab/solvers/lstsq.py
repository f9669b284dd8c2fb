"""Direct SVD least squares: the "SVD solver" baseline of the brief, section 5.

D* = B A^+ C = W C with W = B A^+, the minimum-norm solution of W A ~ B.  Transposed,
W^T solves the (tall when n > d) least-squares problem

    min_{W^T} || A^T W^T - B^T ||_F        A^T: n x d,  B^T: n x d'

which LAPACK solves for all d' right-hand sides at once.  The default driver gelsd uses
an SVD (divide and conquer) and is rank revealing: singular values below
rcond * sigma_max are treated as zero, with rcond = max(d, n) * eps (numpy's matrix-rank
convention, the same cut-off as `eaglelab.tasks.nystrom_reference`), so rank-deficient A
gives the minimum-norm answer.  gelsy (complete orthogonal factorisation with pivoted QR)
and gelss (plain SVD) are also rank revealing and return the same minimum-norm solution.

This module also holds the two small helpers the other baselines share: checking the
`reference` argument and building the one-entry history of a non-iterative solve.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from eaglelab.solvers._inputs import check_reference, prepare, wrap_like
from eaglelab.solvers._kernels import final_history
from eaglelab.solvers._result import SolveResult, Status, Timer

__all__ = ["lstsq", "LSTSQ_DRIVERS"]

LSTSQ_DRIVERS = ("gelsd", "gelsy", "gelss")


def lstsq(A: Any, B: Any, C: Any, *, reference: Any = None, driver: str = "gelsd",
          dtype: Any = None) -> SolveResult:
    """Complete D = B A^+ C with a direct, rank-revealing least-squares solve.

    Parameters
    ----------
    A, B, C : array-like
        Blocks of shapes d x n, d' x n and d x n' (numpy arrays, scipy.sparse matrices,
        which are densified, or torch tensors of dtype float32/float64).
    reference : array-like, optional
        D* (d' x n'); when given, the relative error ||D - D*||_F / ||D*||_F is recorded.
    driver : {"gelsd", "gelsy", "gelss"}
        LAPACK driver of `scipy.linalg.lstsq`; all three are rank revealing.
    dtype : optional
        float32 or float64 to force a precision (default: the inputs' common precision).

    Returns
    -------
    SolveResult
        method "lstsq", iterations 1, converged True, a one-entry history, W = B A^+ and
        info with the driver, the relative cut-off `rcond` and the numerical `rank` of A.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((5, 8)); W = rng.standard_normal((2, 5))
    >>> res = lstsq(A, W @ A, A)
    >>> bool(np.allclose(res.D, W @ A))
    True
    """
    timer = Timer()
    if driver not in LSTSQ_DRIVERS:
        raise ValueError(f"driver={driver!r} is not a rank-revealing LAPACK driver; "
                         f"use one of {LSTSQ_DRIVERS}")
    prep = prepare(A, B, C, dtype=dtype)
    d, n, dp, nq = prep.shape
    ref = check_reference(reference, dp, nq)
    dt = prep.dtype
    rcond = max(d, n) * float(np.finfo(dt).eps)
    Wt, _, rank, _ = scipy.linalg.lstsq(prep.A.T, prep.B.T, cond=rcond, lapack_driver=driver,
                                         check_finite=False)
    W = np.ascontiguousarray(Wt.T, dtype=dt)
    D = (W @ prep.C).astype(dt, copy=False)
    history = final_history(D, ref, timer)
    finite = bool(np.all(np.isfinite(D)))
    return SolveResult(
        D=wrap_like(D, prep), W=wrap_like(W, prep), method="lstsq", iterations=1,
        code=Status.CONVERGED if finite else Status.NONFINITE,
        status="converged (direct solve)" if finite else
        "failed: the LAPACK solve produced non-finite values; rescale A and B",
        history=history, seconds=timer(), floats_sent_per_worker=0,
        info={"driver": driver, "rcond": rcond, "rank": int(rank)})


