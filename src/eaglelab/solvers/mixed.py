"""Mixed-precision EAGLE: float32 EAGLE iterations, float64 accuracy by residual refinement.

EAGLE's arithmetic is all matrix products, which run about twice as fast in float32 on a
CPU (and far faster on GPUs with weak float64).  But a float32 run cannot simply be
finished in float64: the invariant D_l + B_l A_l^+ C_l = B A^+ C that makes EAGLE exact is
carried by float32-rounded blocks, so more float64 iterations converge to the rounded
answer (error ~ kappa eps32).  Instead the estimation form is refined (classical
mixed-precision iterative refinement, with EAGLE as the inner solver):

    W_0 = 0;  R_k = B - W_k A            (float64)
    W_{k+1} = W_k + EAGLE_estimate32(A, R_k)   (float32: ~ R_k A^+)
    D_k = W_k C                          (float64)

Each round multiplies the error by about kappa times the inner solve's accuracy (~1e-6
relative here), so for moderate kappa a few rounds reach 1e-10; when kappa eps32 is near 1
the rounds stop contracting and the result says so (max_iter / stagnated, never a wrong
"converged").  Every round repeats the float32 A-phase (it does not depend on B), so one
round costs one float32 estimation solve; `benchmarks/bench_mixed.py` measures whether that
beats float64 EAGLE (docs/devices.md).  Brief section 4 (UPDATE) and section 6 (estimation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eaglelab.solvers._inputs import (
    check_int,
    check_positive,
    check_reference,
    prepare,
    scale_pow2,
    wrap_like,
)
from eaglelab.solvers._result import SolveResult, StopRule, Timer
from eaglelab.solvers._xp import device_of, namespace
from eaglelab.solvers.estimation import eagle_estimate

__all__ = ["eagle_mixed"]


def _exponent(xp, M) -> int:
    """The binary exponent of max |M| (0 for an all-zero M)."""
    m = float(xp.max(xp.abs(M)))
    return int(np.frexp(m)[1]) if m > 0 and np.isfinite(m) else 0


def eagle_mixed(A, B, C, *, tol: float = 1e-10, max_iter: int = 20, inner_tol: float = 1e-6,
                eta: float = 1 / 3, gamma: float = 1.0, reference=None) -> SolveResult:
    """Complete D = B A^+ C with float32 EAGLE rounds refined in float64.

    Parameters
    ----------
    A, B, C : numpy / scipy.sparse / torch (computed on a tensor's device), shapes d x n,
        d' x n, d x n'.  The refinement runs in float64, the inner solves in float32.
    tol : stop when a round changes D by <= tol ||D||_F (the shared stop rule).
    max_iter : the most refinement rounds.
    inner_tol : the stop rule of each float32 estimation solve.
    eta, gamma : EAGLE's step constants of the inner solves.
    reference : D* for the per-round error history.

    Returns
    -------
    SolveResult (float64 D and W in the input's array type); iterations are refinement
    rounds, info["inner_iterations"] the float32 iterations of each round.
    """
    timer = Timer()
    tol = check_positive("tol", tol)
    max_iter = check_int("max_iter", max_iter)
    inner_tol = check_positive("inner_tol", inner_tol)
    prep = prepare(A, B, C, dtype=np.float64, native=True)
    d, n, dp, nq = prep.shape
    ref = check_reference(reference, dp, nq)
    xp = namespace(prep.C)
    # powers of two (exact) bring A and every residual into float32's range: W(s A) = W / s
    ea = _exponent(xp, prep.A)
    A64, B64, C64 = scale_pow2(prep.A, -ea), prep.B, prep.C
    A32 = xp.astype(A64, xp.float32)
    W = xp.zeros((dp, d), dtype=xp.float64, device=device_of(C64))
    D = xp.zeros((dp, nq), dtype=xp.float64, device=device_of(C64))
    R = B64
    stop = StopRule(tol, max_iter, ref, timer)
    inner_iterations: list[int] = []
    for _ in range(max_iter):
        er = _exponent(xp, R)
        inner = eagle_estimate(A32, xp.astype(scale_pow2(R, -er), xp.float32), tol=inner_tol,
                               eta=eta, gamma=gamma)
        inner_iterations.append(inner.iterations)
        W = W + scale_pow2(xp.astype(inner.W, xp.float64), er)
        D_old, D = D, scale_pow2(W, -ea) @ C64
        R = B64 - W @ A64
        if stop.record(D, D_old):
            break
    D_out = D_old if stop.diverged else D
    W = scale_pow2(W, -ea)
    info: dict[str, Any] = {"eta": eta, "gamma": gamma, "inner_tol": inner_tol,
                            "inner_iterations": inner_iterations,
                            "precision": "float32 inner solves, float64 refinement"}
    return SolveResult(D=wrap_like(D_out, prep), W=None if stop.diverged else wrap_like(W, prep),
                       method="eagle_mixed", iterations=len(stop.history.change),
                       code=stop.code(), status=stop.status(), history=stop.history,
                       seconds=timer(), info=info)
