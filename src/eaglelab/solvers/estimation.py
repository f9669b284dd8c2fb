"""EAGLE in estimation form (brief section 6): iterate W_k ~ B A^+ directly.

EAGLE's D recursion telescopes.  With P_0 = I (d x d) and, at step k,
    C_k = P_k C,  P_{k+1} = (I - gamma rho_k A_k A_k^T) P_k,
    D_{k+1} = D_k + gamma rho_k B_k A_k^T C_k,
so D_k = W_k C for
    W_{k+1} = W_k + gamma rho_k B_k A_k^T P_k,   W_0 = 0.
(A_k, B_k) follow the same update as in EAGLE.  W_k -> W* = B A^+ at EAGLE's second-order
rate; the paper's extracted constants rho_k = 1/(3||A_k||^2), eta = 1, gamma = 3 are the
same steps as EAGLE's eta = 1/3, gamma = 1 written with another rho.  C is optional: when it
is given the result also holds D = W C, and the identity W_k C = D_k holds at every k.
One step costs O(d^2 (n + d)) (the P update is d x d x d).
"""

from __future__ import annotations

import numpy as np

from eaglelab.solvers._inputs import check_int, check_positive, check_reference, prepare, wrap_like
from eaglelab.solvers._result import SolveResult, StopRule, Timer
from eaglelab.solvers._update import lambda_max
from eaglelab.solvers._xp import copy, device_of, eps, namespace

__all__ = ["eagle_estimate"]


def eagle_estimate(A, B, C=None, *, eta: float = 1 / 3, gamma: float = 1.0, tol: float = 1e-10,
                   max_iter: int = 1000, reference=None, dtype=None,
                   callback=None) -> SolveResult:
    """Estimate W = B A^+ (d' x d) with EAGLE's estimation iteration.

    reference : W* (d' x d) to record the relative error of W per iteration.
    The stopping rule is the shared one applied to W (||W_k - W_{k-1}||_F <= tol ||W_k||_F).
    callback(k, W_k, P_k) is called after every step.
    Returns a SolveResult whose W is the estimate and D = W C (None without C).  Torch
    input computes in torch on its device, as `eagle` does.
    """
    timer = Timer()
    C_in = C if C is not None else np.zeros((np.shape(A)[0], 1))
    prep = prepare(A, B, C_in, dtype=dtype, native=True)
    d, n, dp, _ = prep.shape
    tol = check_positive("tol", tol)
    max_iter = check_int("max_iter", max_iter)
    eta = check_positive("eta", eta, allow_zero=True)
    gamma = check_positive("gamma", gamma)
    ref = check_reference(reference, dp, d, name="reference W*", shape_name="d' x d")
    A_, B_ = copy(prep.A), copy(prep.B)
    xp = namespace(A_)
    P = xp.eye(d, dtype=A_.dtype, device=device_of(A_))
    W = xp.zeros((dp, d), dtype=A_.dtype, device=device_of(A_))
    stop = StopRule(tol, max_iter, ref, timer)
    v = None
    for k in range(max_iter):
        W_old = copy(W)
        G = A_ @ A_.T
        lam, v = lambda_max(G, v)
        if not np.isfinite(lam) or lam <= 0:
            stop.diverged = True
            break
        s = 1.0 / np.sqrt(lam)  # normalise: rho = 1, as in dense EAGLE
        A_ *= s
        B_ *= s
        G *= 1.0 / lam
        BAt = B_ @ A_.T
        W += gamma * (BAt @ P)
        P -= gamma * (G @ P)
        GA = G @ A_
        iso = float(xp.linalg.vector_norm(A_ - GA)) ** 2     # A_l's isometry defect
        B_ -= eta * (BAt @ A_)
        A_ -= eta * GA
        if callback is not None:
            callback(k, W, P)
        if stop.record(W, W_old):
            # as dense EAGLE (`eagle._settled`): no stop while a singular value still grows
            if (stop.converged or stop.stagnated) and iso > min(d, n) * eps(A_):
                stop.reopen()
                if k + 1 < max_iter:
                    continue
            break
    D = W @ prep.C if C is not None else None
    return SolveResult(D=wrap_like(D, prep), W=wrap_like(W, prep), method="eagle_estimate",
                       iterations=len(stop.history.change),
                       code=stop.code(), status=stop.status(),
                       history=stop.history, seconds=timer(), info={"eta": eta, "gamma": gamma})
