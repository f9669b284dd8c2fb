"""EAGLE as a solver: dense (S = I), sketched (fresh sketch each step), or a fixed schedule.

See brief section 4 and `_update.py` for the UPDATE itself.  The invariant behind it: in
the noiseless case D_l + B_l A_l^+ C_l = B A^+ C at every step, while A_l is driven towards
a partial isometry (Newton-Schulz) and C_l's component in range(A) to zero, so D_l -> D*.
Iterations to error eps grow like log(kappa) + log log(1/eps) (Theorem 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from eaglelab.solvers._inputs import check_int, check_positive, check_reference, prepare, wrap_like
from eaglelab.solvers._result import SolveResult, StopRule, Timer
from eaglelab.solvers._update import (
    DenseWorkspace,
    dense_update,
    sketched_update,
)
from eaglelab.solvers._xp import asarray_like, copy, device_of, namespace, to_numpy, traps
from eaglelab.solvers.schedule import Schedule

__all__ = ["eagle", "draw_sketch", "SKETCHES"]

SKETCHES = ("orthogonal", "rows")
Callback = Callable[[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any]


def check_eagle_options(tol, max_iter, eta, gamma, freeze_tol):
    """Validate the options every EAGLE variant shares (ValueError naming the option)."""
    return (check_positive("tol", tol), check_int("max_iter", max_iter),
            check_positive("eta", eta, allow_zero=True), check_positive("gamma", gamma),
            None if freeze_tol is None else check_positive("freeze_tol", freeze_tol))


def draw_sketch(kind: str, n: int, r: int, rng: np.random.Generator, dtype=np.float64):
    """A random n x r sketch with orthonormal columns: Haar ("orthogonal", QR of a Gaussian
    with the sign fix) or a uniform column subset of the identity ("rows": returned as the
    index array)."""
    if kind == "rows":
        return np.sort(rng.choice(n, size=r, replace=False))
    if kind == "orthogonal":
        from eaglelab.tasks.haar import haar

        return haar(rng, n, r).astype(dtype, copy=False)
    raise ValueError(f"sketch={kind!r} is not known; use one of {SKETCHES} or None (dense)")


def _settled(ws: DenseWorkspace, dt) -> bool:
    """Whether a dense, rescaled run may stop: its last normalised A_l is a partial isometry
    to rounding, ||A_l - A_l A_l^T A_l||_F^2 <= min(d, n) eps (a mean per singular value of
    at most eps, so the many rounding-level modes of a rank-deficient A do not add up past
    it).  A singular value still growing from below (sigma -> 1.5 sigma per step) has not
    yet put its share into D, however little D changes (Maragal_4: the change test alone
    stopped at 24 iterations with error 3.5e-6).  Rounding-level singular values grow at
    the same rate, so a mode below about sqrt(min(d, n) eps) sigma_max cannot be told from
    them: that is EAGLE's effective rank cut-off.  Sketched, scheduled, unnormalised and
    frozen runs have no such measure and are not held back."""
    if ws.is_frozen or not np.isfinite(ws.iso):
        return True
    return ws.iso <= ws.modes * float(np.finfo(dt).eps)


def eagle(A, B, C, *, eta: float = 1 / 3, gamma: float = 1.0, tol: float = 1e-10,
          max_iter: int = 1000, reference=None, sketch: str | None = None, r: int | None = None,
          seed: int | None = None, schedule: Schedule | None = None, rescale: bool = True,
          freeze_tol: float | None = None, dtype=None,
          callback: Callback | None = None) -> SolveResult:
    """Complete D = B A^+ C with EAGLE.

    Parameters
    ----------
    A, B, C : array-like (numpy, scipy.sparse, torch), shapes d x n, d' x n, d x n'.  With
        any torch tensor among them EAGLE runs in torch on that tensor's device (CPU or
        CUDA), in its dtype; otherwise in numpy.  Sketches are drawn by numpy from `seed`
        either way (the same sketches on every device) and moved to the device.
    eta, gamma : step constants relative to rho = 1/||A_l S||_2^2 (proof defaults 1/3 and 1).
    tol : stop when ||D_l - D_{l-1}||_F <= tol * ||D_l||_F and - dense, rescaled - the
        last normalised A_l is a partial isometry to sqrt(eps) (otherwise a small singular
        value still growing would be missing from D; see `_settled`).
    max_iter : iteration limit (max_iter = 1 runs exactly one UPDATE).
    reference : D* (d' x n') to record the relative error per iteration.
    sketch, r, seed : None for dense EAGLE; "orthogonal" (Haar n x r, fresh each step) or
        "rows" (r random columns of the identity, the paper's fast variant).
    schedule : a fixed `Schedule` (absolute steps and sketches per iteration); runs exactly
        len(schedule) steps (fewer if max_iter is smaller), no norms are computed.
    rescale : divide A and B by ||A_l||_2 every step (rho = 1; with eta = 1/3 this is the
        brief's factor 3/2) - sketched: by ||A_l S_l||_2 before the step - so long runs
        never under/overflow (unnormalised, a sketched A_l shrinks by up to 1 - eta per
        step: from A ~ 1e-150 it underflowed and "converged" with error 0.5).  B A^+ C is
        invariant under this, so it changes rounding only.
    freeze_tol : dense only; once ||A_l - A_l A_l^T A_l||_F^2 < freeze_tol (A_l a partial
        isometry) stop updating A and B (the accelerated variant; later steps cost O(d^2 n')).
    callback : called as callback(l, A_l, B_l, C_l, D_l) after every step (views in the
        computing array type, do not keep).

    Returns
    -------
    SolveResult with D (d' x n') in the input's array type; W is None.
    """
    timer = Timer()
    prep = prepare(A, B, C, dtype=dtype, native=True)
    d, n, dp, np_ = prep.shape
    tol, max_iter, eta, gamma, freeze_tol = check_eagle_options(tol, max_iter, eta, gamma,
                                                                freeze_tol)
    ref = check_reference(reference, dp, np_)
    if schedule is not None:
        if sketch is not None:
            raise ValueError("pass either schedule= (fixed steps and sketches) or sketch=, not both")
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be an eaglelab Schedule, got {type(schedule).__name__}")
        schedule.check_columns(n)
        max_iter = min(max_iter, len(schedule))
    if sketch is not None:
        if sketch not in SKETCHES:
            raise ValueError(f"sketch={sketch!r} is not known; use one of {SKETCHES} or None")
        if r is None:
            raise ValueError("sketch needs its size r (1 <= r <= n)")
        r = check_int("r", r, maximum=n)
    elif r is not None:
        raise ValueError("r is a sketch size; pass sketch='orthogonal' or 'rows' with it")

    dt = prep.dtype
    A_, B_, C_ = copy(prep.A), copy(prep.B), copy(prep.C)
    xp = namespace(A_)
    D_ = xp.zeros((dp, np_), dtype=A_.dtype, device=device_of(A_))
    ws = DenseWorkspace(d, n)
    # the amplified-rounding guard needs the settled test: dense, rescaled runs only (a
    # sketch, an unnormalised or scheduled run has none, and its growth may be a slow mode)
    dense_guard = schedule is None and sketch is None and rescale
    stop = StopRule(tol, max_iter, ref, timer,
                    guard=(lambda: _settled(ws, dt)) if dense_guard else False,
                    patience=1 if sketch is None else -(-n // r))   # ceil(n / r) for a sketch
    rng = np.random.default_rng(seed)
    frozen_at = None
    unsettled = 0               # change tests met while A_l was not yet a partial isometry
    seen = np.zeros(n, dtype=bool)   # rows sketch: columns sampled in the current small streak
    method = "eagle" if sketch is None else f"eagle_sketched_{sketch}"
    for l in range(max_iter):
        D_old = copy(D_)
        try:
            with traps(xp):
                if schedule is not None:
                    S = schedule.sketches[l]
                    step = (schedule.step_A[l], schedule.step_C[l])
                    if S is None:
                        dense_update(A_, B_, C_, D_, step[0], step[1], ws, rho=1.0, normalise=False)
                    else:
                        sketched_update(A_, B_, C_, D_, asarray_like(S, A_), step[0], step[1],
                                        rho=1.0)
                elif sketch is not None:
                    S = asarray_like(draw_sketch(sketch, n, r, rng, dt), A_)
                    sketched_update(A_, B_, C_, D_, S, eta, gamma, normalise=rescale)
                else:
                    _, iso = dense_update(A_, B_, C_, D_, eta, gamma, ws, normalise=rescale,
                                          want_iso=True)
                    if freeze_tol is not None and not ws.freeze_requested and iso < freeze_tol:
                        ws.freeze_requested = True
                        frozen_at = l + 1
        except FloatingPointError as exc:
            D_[...] = float("nan")
            stop.fail(f"diverged at iteration {l + 1}: {exc}; reduce eta/gamma")
        if callback is not None:
            callback(l, A_, B_, C_, D_)
        done = stop.failure is not None or stop.record(D_, D_old)
        if sketch == "rows" and schedule is None:
            if stop.small_streak == 0:
                seen[:] = False
            else:
                seen[to_numpy(S)] = True
        if done:
            if (stop.converged or stop.stagnated) and not _settled(ws, dt):
                stop.reopen()          # D stopped changing, but A_l is no isometry yet
                unsettled += 1
                if l + 1 < max_iter:
                    continue           # (at the limit: max_iter, never "converged")
            elif sketch == "rows" and stop.converged and not seen.all():
                # small changes in a row, but some column was never sampled in the streak:
                # its share of D may be missing (r = 2 of n = 6 converged with error 0.4)
                stop.reopen(keep_streak=True)
                if l + 1 < max_iter:
                    continue
            break
    status = stop.status()
    D_out = stop.final(D_) if not stop.diverged else D_old
    info: dict[str, Any] = {"eta": eta, "gamma": gamma}
    if sketch is not None:
        info.update(r=r, sketch=sketch)
    if frozen_at is not None:
        info["frozen_at"] = frozen_at
    if unsettled:
        info["unsettled_stops"] = unsettled
    if schedule is not None:
        method = "eagle_schedule"
    return SolveResult(D=wrap_like(D_out, prep), method=method, iterations=len(stop.history.change),
                       code=stop.code(), status=status, history=stop.history,
                       seconds=timer(), info=info)
