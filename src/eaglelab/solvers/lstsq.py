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
import torch

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
        LAPACK driver of `scipy.linalg.lstsq` for numpy input; all three are rank
        revealing.  Torch input is solved on its device by the thin SVD of A
        (`torch.linalg.svd`, the GPU's "SVD solver") with the same cut-off.
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
    prep = prepare(A, B, C, dtype=dtype, native=True)
    d, n, dp, nq = prep.shape
    ref = check_reference(reference, dp, nq)
    dt = prep.dtype
    rcond = max(d, n) * float(np.finfo(dt).eps)
    if isinstance(prep.A, torch.Tensor):
        W, rank = _svd_solve(prep.A, prep.B, rcond)
        driver = "svd (torch.linalg)"
        D = W @ prep.C
        finite = bool(torch.isfinite(D).all())
    else:
        Wt, _, rank, _ = scipy.linalg.lstsq(prep.A.T, prep.B.T, cond=rcond,
                                             lapack_driver=driver, check_finite=False)
        W = np.ascontiguousarray(Wt.T, dtype=dt)
        D = (W @ prep.C).astype(dt, copy=False)
        finite = bool(np.all(np.isfinite(D)))
    history = final_history(D, ref, timer)
    return SolveResult(
        D=wrap_like(D, prep), W=wrap_like(W, prep), method="lstsq", iterations=1,
        code=Status.CONVERGED if finite else Status.NONFINITE,
        status="converged (direct solve)" if finite else
        "failed: the LAPACK solve produced non-finite values; rescale A and B",
        history=history, seconds=timer(), floats_sent_per_worker=0,
        info={"driver": driver, "rcond": rcond, "rank": int(rank)})


def _svd_solve(A: torch.Tensor, B: torch.Tensor, rcond: float) -> tuple[torch.Tensor, int]:
    """W = B A^+ from the thin SVD of A on A's device, singular values below
    rcond * sigma_max treated as zero (gelsd's rule): (W (d' x d), numerical rank)."""
    U, s, Vh = torch.linalg.svd(A, full_matrices=False)
    keep = s > rcond * s[0]
    inv = torch.where(keep, 1.0 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
    W = ((B @ Vh.T) * inv) @ U.T
    return W, int(keep.sum())


