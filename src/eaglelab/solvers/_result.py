"""The one result type every solver returns, and the one stopping rule they share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from eaglelab.solvers import _xp

__all__ = ["SolveResult", "Status", "History", "StopRule", "Timer"]

AMPLIFIED_GROWTH = 1e3


class Status(StrEnum):
    """Why a solve ended, machine-readable (in the spirit of lineax's RESULTS and the istop
    of scipy's LSQR/LSMR); `SolveResult.status` is the human message derived from it.

    CONVERGED  the stopping rule was met (for a direct solve: the solve finished with
               finite values)
    MAX_ITER   the iteration limit came first
    DIVERGED   the iterate became non-finite or grew without bound (step sizes too large)
    NONFINITE  a direct solve produced non-finite values (badly scaled input)
    BREAKDOWN  an inner solver stopped for a reason of its own (e.g. LSQR's istop 3 or 6:
               the matrix looks ill-conditioned beyond its limit)
    STAGNATED  the iterate stopped changing at rounding level while tol lies below the
               working precision's resolution, so the change test cannot certify it (e.g.
               float32 with tol = 1e-10): the answer is not certified
    """

    CONVERGED = "converged"
    MAX_ITER = "max_iter"
    DIVERGED = "diverged"
    NONFINITE = "nonfinite"
    BREAKDOWN = "breakdown"
    STAGNATED = "stagnated"


@dataclass
class History:
    """Per-iteration records; index k holds the value after iteration k + 1.

    change:  ||D_k - D_{k-1}||_F (the stopping quantity)
    error:   ||D_k - D*||_F / ||D*||_F when a reference D* was given, else empty
    seconds: wall time since the start of the solve, after iteration k + 1
    """

    change: list[float] = field(default_factory=list)
    error: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[float]]:
        return {"change": list(self.change), "error": list(self.error), "seconds": list(self.seconds)}


@dataclass
class SolveResult:
    """What every solver returns.

    D: the completed block (d' x n'), same array type and dtype as the input.
    W: the estimated map W ~ B A^+ (d' x d) when the method computes one, else None.
    iterations: iterations (rounds for distributed methods; 1 for direct methods).
    code: why the solve ended (`Status`); `converged` is code == Status.CONVERGED.
    status: the sentence for the user derived from code ("converged", "max_iter=...
        reached; increase max_iter", ...).
    history: per-iteration change / error / time.
    seconds: total wall time of the solve (setup included).
    floats_sent_per_worker: floats each worker sent per round (0 for centralised methods);
        total_floats_sent is the sum over workers and rounds.
    info: method-specific extras (e.g. step sizes, frozen rounds, inner LSQR iterations).
    """

    D: Any
    method: str
    iterations: int
    code: Status
    status: str
    history: History
    seconds: float
    W: Any = None
    floats_sent_per_worker: int = 0
    total_floats_sent: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.code = Status(self.code)

    @property
    def converged(self) -> bool:
        """Whether the stopping rule was met within max_iter (code is CONVERGED)."""
        return self.code is Status.CONVERGED

    @property
    def relative_error(self) -> float | None:
        return self.history.error[-1] if self.history.error else None

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        return {
            "method": self.method,
            "iterations": self.iterations,
            "converged": self.converged,
            "code": self.code.value,
            "status": self.status,
            "seconds": self.seconds,
            "relative_error": self.relative_error,
            "floats_sent_per_worker": self.floats_sent_per_worker,
            "total_floats_sent": self.total_floats_sent,
            **{k: v for k, v in self.info.items() if isinstance(v, (int, float, str, bool))},
        }


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def fro_norm(M) -> float:
    """||M||_F without underflow or overflow in the squares: scaled by max |m_ij| first
    (np.linalg.norm squares the entries, so 1e-200 entries give 0 and 1e200 entries inf -
    and a stop rule reading those would call an untouched iterate converged).  A tensor is
    measured on its own device (`_xp.fro_norm`)."""
    if hasattr(M, "detach"):
        return _xp.fro_norm(M)
    a = np.abs(np.asarray(M, dtype=np.float64))
    m = float(a.max()) if a.size else 0.0
    if m == 0.0 or not np.isfinite(m):
        return m
    return m * float(np.sqrt(np.sum(np.square(a / m))))


class StopRule:
    """Shared stopping rule: stop when ||D_k - D_{k-1}||_F <= tol * max(||D_k||_F, tiny)
    (on `patience` iterations in a row: 1 for deterministic methods, n/r for a sketch of r
    of n columns), or when max_iter is reached; flag divergence when D becomes non-finite or explodes.

    The change is measured relative to ||D_k||_F so that tol means the same at every scale;
    `record` appends to the history and returns True when the iteration should stop.
    """

    def __init__(self, tol: float, max_iter: int, reference: np.ndarray | None, timer: Timer,
                 divergence_factor: float = 1e8, patience: int = 1,
                 guard: bool | Callable[[], bool] = False) -> None:
        self.tol = tol
        # guard (EAGLE's iterations): once the relative change has fallen to the attainable
        # accuracy (<= sqrt(eps)) and then grows AMPLIFIED_GROWTH-fold, rounding is being
        # amplified (Newton-Schulz drives rounding-level singular values of a rank-deficient
        # A to 1): stop and hand back the iterate of the smallest change (`final`).  A
        # callable guard says whether the iteration has settled (dense EAGLE: A_l a partial
        # isometry); growth counts only once it has - before, it is a slow mode arriving
        self.guard = guard
        self._best: tuple[float, int, Any] | None = None
        self._was_settled = False
        self.amplified = False
        # a randomised iteration (a sketch of r of n columns) can leave D unchanged for a
        # step by chance: it converges only after `patience` small changes in a row
        self.patience = max(int(patience), 1)
        self._small = 0
        self.stagnated = False
        self.max_iter = max_iter
        self.reference = reference
        self.ref_norm = fro_norm(reference) if reference is not None else None
        self._ref = None                        # the reference in D's namespace and device
        self.timer = timer
        self.history = History()
        self.converged = False
        self.diverged = False
        self.divergence_factor = divergence_factor
        self._first_norm: float | None = None
        self.failure: str | None = None

    def fail(self, message: str) -> None:
        """Stop with a divergence the caller detected itself (an overflow inside a step):
        the result reports `message` as its status and code DIVERGED."""
        self.diverged = True
        self.failure = message

    def record(self, D_new, D_old) -> bool:
        """Append iteration k's change (and error) for D_k = D_new (numpy, or a tensor on
        any device: the reference moves there once) and return whether to stop."""
        change = fro_norm(D_new - D_old)
        norm = fro_norm(D_new)
        h = self.history
        h.change.append(change)
        h.seconds.append(self.timer())
        if self.reference is not None:
            if self._ref is None:
                self._ref = _xp.asarray_like(self.reference, D_new, dtype=_float64(D_new))
            err = fro_norm(D_new - self._ref)
            h.error.append(err / self.ref_norm if self.ref_norm > 0 else err)
        if not np.isfinite(change) or not np.isfinite(norm):
            self.diverged = True
            return True
        if self.guard and self._amplified(change / max(norm, np.finfo(np.float64).tiny),
                                          D_new):
            return True
        if self._first_norm is None:
            self._first_norm = max(norm, np.finfo(np.float64).tiny)
        elif norm > self.divergence_factor * self._first_norm and norm > 1.0:
            self.diverged = True
            return True
        if change <= self.tol * max(norm, np.finfo(np.float64).tiny):
            self._small += 1
            if self._small >= self.patience:
                # below the dtype's resolution a small change is rounding, not convergence
                if self.tol < _xp.eps(D_new):
                    self.stagnated = True
                    self._eps = _xp.eps(D_new)
                else:
                    self.converged = True
                return True
        else:
            self._small = 0
        return len(h.change) >= self.max_iter

    def _amplified(self, rel: float, D_new) -> bool:
        if callable(self.guard):
            if self.guard():
                self._was_settled = True
            elif not self._was_settled:
                self._best = None    # not yet settled: growth is progress, so was the past
                return False
            # settled now or before: a singular value emerging from below the settling
            # floor cannot be told from amplified rounding, and is read as such
        best = self._best
        if (best is not None and best[0] <= np.sqrt(_xp.eps(D_new))
                and rel > AMPLIFIED_GROWTH * best[0]):
            # the history (and so iterations and relative_error) ends at the returned iterate
            self.amplified = True
            self.amplified_at = len(self.history.change)
            h, k = self.history, best[1]
            h.change[:], h.seconds[:] = h.change[:k], h.seconds[:k]
            if h.error:
                h.error[:] = h.error[:k]
            return True
        if best is None or rel < best[0]:
            self._best = (rel, len(self.history.change), _xp.copy(D_new))   # iteration k >= 1
        return False

    @property
    def small_streak(self) -> int:
        """How many iterations in a row have met the change test so far."""
        return self._small

    def breakdown(self, message: str) -> None:
        """Withdraw a convergence the solver's own check refutes (e.g. CG whose recursive
        residual lost touch with the true one): code BREAKDOWN with `message`."""
        self.converged = False
        self.broken = True
        self.failure = message

    def reopen(self, keep_streak: bool = False) -> None:
        """Undo a convergence the caller's own test does not confirm: the iteration goes on
        (the small-change count starts again, unless keep_streak: the next small change
        then stops it again, for the caller to re-check)."""
        self.converged = False
        self.stagnated = False
        if not keep_streak:
            self._small = 0

    def final(self, D):
        """What the solver returns as its iterate: D, or - after amplified rounding - the
        iterate of the smallest relative change."""
        return self._best[2] if self.amplified else D

    def code(self) -> Status:
        """Why the iteration stopped."""
        if self.diverged:
            return Status.DIVERGED
        if getattr(self, "broken", False):
            return Status.BREAKDOWN
        if self.amplified:
            return Status.STAGNATED
        if self.stagnated:
            return Status.STAGNATED
        return Status.CONVERGED if self.converged else Status.MAX_ITER

    def status(self) -> str:
        """The message for code(): the caller's own failure message where it gave one."""
        if self.failure:
            return self.failure
        if self.diverged:
            return ("diverged: the iterate became non-finite or grew without bound (step "
                    "sizes too large for a gradient method, or badly scaled input)")
        if self.amplified:
            rel, k, _ = self._best
            return (f"stagnated: the change fell to {rel:.1e} of ||D|| at iteration {k} and by "
                    f"iteration {self.amplified_at} grew more than {AMPLIFIED_GROWTH:.0e}-fold "
                    f"(rounding amplified: A is "
                    f"numerically rank deficient at this precision); the iterate of iteration "
                    f"{k} is returned, not certified to tol={self.tol:g}")
        if self.stagnated:
            return (f"stagnated: D stopped changing at rounding level, but tol={self.tol:g} is "
                    f"below this precision's resolution ({self._eps:.1e}), so the answer is not "
                    "certified; use float64 or a tol above the resolution")
        if self.converged:
            return "converged"
        return f"max_iter={self.max_iter} reached before tol={self.tol:g}; increase max_iter"


def _float64(like):
    """float64 in like's array library (numpy's or torch's dtype object)."""
    return _xp.namespace(like).float64
