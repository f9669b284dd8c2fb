"""Gradient descent on an r-column sketch ("SGD"): the baseline of sketched EAGLE (brief,
section 5: r in {n/8, n/4, n/2, n}).

Each iteration draws J, r of the n columns uniformly without replacement, and steps along
the unbiased estimate of the full gradient (W A - B) A^T:

    g_k = (n / r) (W_k A_J - B_J) A_J^T,       W_{k+1} = W_k - step * g_k,     D_k = W_k C.

Step size.  sigma_max(A) is estimated once by power iteration on the full A.  The sampled
curvature (n / r) A_J A_J^T can have norm up to (n / r) sigma_max^2 (a column subset can
carry all of ||A||_2), so the full-gradient step 1/sigma_max^2 is not safe for the scaled
gradient.  The default is

    step = (r / n) / sigma_max^2,   i.e.   W <- W - (W A_J - B_J) A_J^T / sigma_max^2,

for which I - step (n / r) A_J A_J^T has eigenvalues in [1 - ||A_J||^2 / sigma_max^2, 1],
a contraction for EVERY draw, and the expected update is (r / n) times a full GD step:
iteration counts grow like n / r, as for sketched EAGLE.  With r = n this is exactly
`gradient_descent` with ridge = 0 and the same step.  In the noiseless case (B = W* A)
every sampled residual vanishes at W*, so the iteration converges linearly to B A^+;
with noise a constant step leaves a noise floor proportional to the step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eaglelab.solvers._inputs import check_int, check_positive, check_reference, prepare
from eaglelab.solvers._kernels import finish_w_iteration, matmat, power_sigma_max
from eaglelab.solvers._result import SolveResult, StopRule, Timer

__all__ = ["sgd_sketch"]

POWER_ITERS = 50


def sgd_sketch(A: Any, B: Any, C: Any, *, r: int, tol: float = 1e-10, max_iter: int = 1000,
               reference: Any = None, seed: int | None = None, step: float | None = None,
               dtype: Any = None) -> SolveResult:
    """Complete D = B A^+ C with gradient descent on r random columns per iteration.

    Parameters
    ----------
    A, B, C : array-like
        Blocks of shapes d x n, d' x n and d x n' (numpy arrays, scipy.sparse matrices,
        which are densified, or torch tensors of dtype float32/float64).
    r : int
        Columns sampled per iteration, 1 <= r <= n.
    tol : float
        Stop when ||D_k - D_{k-1}||_F <= tol * ||D_k||_F (the shared `StopRule`).
    max_iter : int
        Iteration limit (one sampled gradient per iteration).
    reference : array-like, optional
        D* (d' x n'); the relative error of every iterate is recorded.
    seed : int or None
        Seed of the column draws and of the power-iteration start (None: fresh entropy).
    step : float, optional
        Step applied to the unbiased gradient (n / r)(W A_J - B_J) A_J^T; default
        (r / n) / sigma_max^2 (see the module docstring).
    dtype : optional
        float32 or float64 to force a precision (default: the inputs' common precision).

    Returns
    -------
    SolveResult
        method "sgd", W = W_k; info holds r, sigma_max (the estimate), step.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = np.linalg.qr(rng.standard_normal((6, 6)))[0]; W = rng.standard_normal((2, 6))
    >>> res = sgd_sketch(A, W @ A, A, r=3, tol=1e-12, max_iter=5000, seed=1)
    >>> res.converged, bool(np.allclose(res.D, W @ A))
    (True, True)
    """
    timer = Timer()
    tol = check_positive("tol", tol)
    max_iter = check_int("max_iter", max_iter)
    if step is not None:
        step = check_positive("step", step)
    prep = prepare(A, B, C, dtype=dtype)
    d, n, dp, nq = prep.shape
    r = check_int("r", r, minimum=1, maximum=n)
    ref = check_reference(reference, dp, nq)
    dt = prep.dtype
    A_ = np.ascontiguousarray(prep.A)
    B_ = np.ascontiguousarray(prep.B)
    C_ = prep.C
    rng = np.random.default_rng(seed)

    sigma, p_iters = power_sigma_max(A_, POWER_ITERS, rng)
    if step is None:
        step = (r / n) / sigma**2
    scale = step * (n / r)  # multiplies the unscaled sketch gradient (W A_J - B_J) A_J^T
    info: dict[str, Any] = {"r": r, "sigma_max": sigma, "power_iterations": p_iters,
                            "step": step}

    Wt = np.zeros((d, dp), dtype=dt)  # W^T
    D = np.zeros((dp, nq), dtype=dt)
    full = r == n
    stop = StopRule(tol, max_iter, ref, timer, patience=1 if full else -(-n // r))
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(max_iter):
            if full:
                AJ, BJt = A_, B_.T
            else:
                J = np.sort(rng.choice(n, size=r, replace=False))  # sorted: contiguous reads
                AJ, BJt = A_[:, J], B_[:, J].T
            Rt = matmat(AJ.T, Wt) - BJt  # (W A_J - B_J)^T, r x d'
            Wt -= scale * matmat(AJ, Rt)
            D_old, D = D, Wt.T @ C_
            if stop.record(D, D_old):
                break
    return finish_w_iteration(stop, D, D_old, Wt, prep, timer, "sgd", info)
