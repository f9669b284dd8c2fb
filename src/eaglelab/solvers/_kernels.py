"""Kernels the baseline solvers share (private): one home, so that no solver borrows
another's helpers.

- `matmat`: M @ X for dense or scipy.sparse M.
- `power_sigma_max`: sigma_max(A) by power iteration (GD's and SGD's step size).
- `finish_w_iteration`: the SolveResult of an iteration on W (GD, SGD).
- `final_history`: the one-entry history of a solve without per-iteration access.
- `row_solver_status`: code and status of scipy's LSQR/LSMR run once per row of B.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from eaglelab.solvers._inputs import wrap_like
from eaglelab.solvers._result import History, SolveResult, Status, StopRule, Timer, fro_norm
from eaglelab.solvers._xp import asarray_like, copy, namespace

THIN_COLUMNS = 4              # dense products with at most this many columns go column-wise
CONVERGED_ISTOP = (0, 1, 2, 4, 5)   # scipy LSQR/LSMR istop values that mean solved
ITERATION_LIMIT_ISTOP = 7


def matmat(M: Any, X: np.ndarray) -> np.ndarray:
    """M @ X for a dense or scipy.sparse M, or a tensor; thin dense numpy products go
    column by column."""
    if hasattr(M, "detach"):
        return M @ X
    if sp.issparse(M):
        return np.asarray(M @ X)
    if X.shape[1] <= THIN_COLUMNS:
        out = np.empty((M.shape[0], X.shape[1]), dtype=np.result_type(M, X))
        for j in range(X.shape[1]):
            out[:, j] = M @ X[:, j]
        return out
    return M @ X


def power_sigma_max(A: Any, iters: int, rng: np.random.Generator) -> tuple[float, int]:
    """Estimate sigma_max(A) by power iteration on A A^T from a Gaussian start (A numpy or
    a tensor, iterated on its device; the start is drawn by numpy from rng either way).

    Returns (estimate, iterations used); stops early when the Rayleigh quotient
    ||A^T v||^2 changes by less than 1e-12 relatively.  The estimate never exceeds
    sigma_max (up to round-off) and approaches it from below.
    """
    xp = namespace(A)
    v = asarray_like(rng.standard_normal(A.shape[0]), A)
    v = v / float(xp.linalg.vector_norm(v))
    lam = 0.0
    k = 0
    def norm(x) -> float:
        # scaled by the largest entry first: ||x||^2 of float32 entries ~1e20 overflows
        m = float(xp.max(xp.abs(x)))
        return m * float(xp.linalg.vector_norm(x / m)) if m > 0 and np.isfinite(m) else m

    for k in range(1, iters + 1):  # noqa: B007 - k is reported
        u = A.T @ v
        lam_new = norm(u) ** 2
        w = A @ u
        nw = norm(w)
        if nw == 0.0 or not np.isfinite(nw):  # A^T v = 0: restart is pointless, keep lam
            lam = max(lam, lam_new)
            break
        v = w / nw
        done = abs(lam_new - lam) <= 1e-12 * lam_new
        lam = lam_new
        if done:
            break
    return float(np.sqrt(lam)), k


def finish_w_iteration(stop: StopRule, D: np.ndarray, D_old: np.ndarray, Wt: np.ndarray, prep: Any,
            timer: Timer, method: str, info: dict[str, Any]) -> SolveResult:
    """The result of an iteration on W (D = W C): the last iterate, or the last finite one
    when it diverged, with the stop rule's code and status."""
    if stop.diverged:  # keep the last finite iterate; the status says what happened
        D, W = D_old, None
    else:
        W = wrap_like(copy(Wt.T), prep)
    return SolveResult(
        D=wrap_like(D, prep), W=W, method=method, iterations=len(stop.history.change),
        code=stop.code(), status=stop.status(),
        history=stop.history, seconds=timer(), floats_sent_per_worker=0, info=info)


def final_history(D: Any, ref: np.ndarray | None, timer: Timer) -> History:
    """One-entry history for a solve without per-iteration access: the change from D_0 = 0,
    the error against the reference, and the time so far (D numpy or a tensor on any
    device, measured there)."""
    h = History()
    with np.errstate(over="ignore", invalid="ignore"):
        h.change.append(fro_norm(D))
        if ref is not None:
            ref_norm = fro_norm(ref)
            err = fro_norm(D - asarray_like(ref, D, dtype=namespace(D).float64))
            h.error.append(err / ref_norm if ref_norm > 0 else err)
    h.seconds.append(timer())
    return h


def row_solver_status(name: str, D: np.ndarray, stops: list[int], limit: int, tol: float,
                      hint: str) -> tuple[Status, str]:
    """(code, status) for solvers that run scipy's LSQR/LSMR once per row of B.

    istop 0, 1, 2, 4, 5 mean solved (4 and 5: the same tests at machine precision); 7 is the
    iteration limit, reported as non-convergence with the advice `hint`."""
    dp = len(stops)
    bad = [j for j, s in enumerate(stops) if s not in CONVERGED_ISTOP]
    if not bool(np.all(np.isfinite(D))):
        return Status.NONFINITE, f"failed: {name} produced non-finite values; rescale A and B"
    if not bad:
        return Status.CONVERGED, "converged"
    if all(stops[j] == ITERATION_LIMIT_ISTOP for j in bad):
        return Status.MAX_ITER, (f"iteration limit max_iter={limit} reached by {name} for {len(bad)} of "
                       f"{dp} rows of B before tol={tol:g}; {hint}")
    return Status.BREAKDOWN, (f"{name} stopped early (istop={[stops[j] for j in bad]}) for {len(bad)} of "
                   f"{dp} rows of B; see scipy.sparse.linalg.{name.lower()}")
