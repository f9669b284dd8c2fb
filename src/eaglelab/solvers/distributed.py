"""Distributed EAGLE and distributed gradient descent, simulated in one process.

M workers; worker mu holds the column block (A^mu, B^mu) = (A[:, J_mu], B[:, J_mu]); C and D
are shared.  One round: every worker runs UPDATE on its own (A^mu, B^mu) with the shared
(C, D) and its own rho_mu = 1/||A^mu||_2^2, then C and D become the averages of the workers'
C', D'.  Each worker sends exactly (d + d') n' floats per round (its C', D').  Iterations
grow like log(kappa_max) + alpha^{-1} log(1/eps), alpha the diversity index (Theorem 2).

Distributed gradient descent is the same round with eta = 0: A^mu and B^mu never change, so
C <- (I - gamma mean_mu rho_mu A^mu A^mu^T) C, the same communication, and a rate set by
kappa(mean_mu rho_mu A^mu A^mu^T) >= 1/alpha.

The accelerated variant (freeze_tol) stops updating a worker's (A^mu, B^mu) once its A^mu is
a partial isometry to working precision, ||A^mu - A^mu A^mu^T A^mu||_F^2 < freeze_tol (the
brief states ||I - A^mu^T A^mu||_F^2, which equals this near convergence when A^mu has full
column rank and, unlike it, also tends to zero when A^mu is rank deficient); from then on
the worker's round costs O(d^2 n') instead of O(d^2 n_mu).  Workers freeze independently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eaglelab.solvers._inputs import check_int, check_reference, prepare, wrap_like
from eaglelab.solvers._result import SolveResult, StopRule, Timer
from eaglelab.solvers._update import DenseWorkspace, dense_update
from eaglelab.solvers._xp import asarray_like, copy, device_of, namespace, traps
from eaglelab.solvers.eagle import check_eagle_options

__all__ = ["eagle_distributed", "distributed_gd", "partition_columns", "check_partition",
           "LocalBlock", "check_distributed_options", "METHODS"]

METHODS = ("eagle", "gd")       # the two rounds: EAGLE and gradient descent (eta = 0)


def partition_columns(n: int, workers: int, kind: str = "contiguous",
                      seed: int | None = None) -> list[np.ndarray]:
    """Split column indices 0..n-1 over `workers` blocks of near-equal size.

    kind: "contiguous" (blocks of consecutive columns) or "random" (a seeded permutation).
    """
    n = check_int("n", n)
    workers = check_int("workers", workers, maximum=n)
    if kind == "contiguous":
        order = np.arange(n)
    elif kind == "random":
        order = np.random.default_rng(seed).permutation(n)
    else:
        raise ValueError(f"partition kind={kind!r} is not known; use 'contiguous' or 'random'")
    return [np.sort(block) for block in np.array_split(order, workers)]


def check_partition(partition: Sequence[Any], n: int) -> list[np.ndarray]:
    """Validate a user partition: every column 0..n-1 in exactly one non-empty block."""
    blocks = [np.asarray(b, dtype=np.int64).ravel() for b in partition]
    if len(blocks) == 0:
        raise ValueError("partition is empty; give at least one block of column indices")
    if any(b.size == 0 for b in blocks):
        raise ValueError("partition has an empty block; every worker needs at least one column")
    allcols = np.concatenate(blocks)
    if allcols.min() < 0 or allcols.max() >= n:
        raise ValueError(f"partition indexes columns outside 0..{n - 1}")
    if allcols.size != n or np.unique(allcols).size != n:
        raise ValueError(f"partition must cover each of the {n} columns exactly once")
    return blocks


def check_distributed_options(method: str, eta, gamma, tol, max_iter, freeze_tol):
    """Validate the options of a distributed solve (ValueError naming the option); returns
    (eta, gamma, tol, max_iter, freeze_tol) with eta = 0 for method "gd"."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not known; use one of {METHODS}")
    if method == "gd":
        if freeze_tol is not None:
            raise ValueError("freeze_tol is the accelerated EAGLE variant; it does not apply "
                             "to method='gd' (A^mu never changes there)")
        eta = 0.0
    tol, max_iter, eta, gamma, freeze_tol = check_eagle_options(tol, max_iter, eta, gamma,
                                                                freeze_tol)
    return eta, gamma, tol, max_iter, freeze_tol


class LocalBlock:
    """One worker's half of a round, shared by the simulation here and the rank-local engine
    (`eaglelab.distributed.engine`), so both do the same arithmetic.

    Holds the worker's column block (A^mu (d, n_mu), B^mu (d', n_mu)), its UPDATE workspace
    and the freeze of the accelerated variant.  `step(C, D, round)` runs UPDATE in place on
    (A^mu, B^mu, C, D) with rho_mu = 1/||A^mu||_2^2 (raising FloatingPointError on overflow
    or an invalid value); the other half of the round, averaging C and D over the workers,
    is the caller's.  With eta = 0 (gradient descent) A^mu never changes, so its normalised
    Gram matrix is formed once and a round costs O(d^2 n') instead of O(d^2 n_mu).
    """

    def __init__(self, A_mu: np.ndarray, B_mu: np.ndarray, *, eta: float, gamma: float,
                 rescale: bool = True, freeze_tol: float | None = None) -> None:
        self.A, self.B = A_mu, B_mu
        self.eta, self.gamma, self.rescale, self.freeze_tol = eta, gamma, rescale, freeze_tol
        self.ws = DenseWorkspace(A_mu.shape[0], A_mu.shape[1])
        self.ws.freeze_requested = eta == 0
        self.frozen_at: int | None = None      # the round after which A^mu stopped changing

    def step(self, C, D, round_: int) -> None:
        with traps(namespace(self.A)):
            _, iso = dense_update(self.A, self.B, C, D, self.eta, self.gamma, self.ws,
                                  normalise=self.rescale, update_AB=self.eta > 0,
                                  want_iso=self.freeze_tol is not None)
        if (self.freeze_tol is not None and not self.ws.freeze_requested
                and iso < self.freeze_tol):
            self.ws.freeze_requested = True
            self.frozen_at = round_ + 1


def eagle_distributed(A, B, C, *, workers: int | None = None, partition=None,
                      eta: float = 1 / 3, gamma: float = 1.0, tol: float = 1e-10,
                      max_iter: int = 1000, reference=None, freeze_tol: float | None = None,
                      rescale: bool = True, dtype=None, callback=None) -> SolveResult:
    """Distributed EAGLE simulated in one process (see module docstring).

    Give either `workers` (contiguous near-equal column blocks) or an explicit `partition`
    (list of column-index arrays).  With one worker this is dense EAGLE, bit for bit.
    callback(l, C, D) is called after every round.
    """
    return _run(A, B, C, workers=workers, partition=partition, eta=eta, gamma=gamma, tol=tol,
                max_iter=max_iter, reference=reference, freeze_tol=freeze_tol,
                rescale=rescale, dtype=dtype, callback=callback, method="eagle_distributed")


def distributed_gd(A, B, C, *, workers: int | None = None, partition=None, gamma: float = 1.0,
                   tol: float = 1e-10, max_iter: int = 1000, reference=None, dtype=None,
                   callback=None) -> SolveResult:
    """Distributed gradient descent with EAGLE's communication: the round of
    `eagle_distributed` with eta = 0 (no local preconditioning).  gamma <= 1 is always stable
    (each rho_mu A^mu A^mu^T has norm 1, so does their mean)."""
    return _run(A, B, C, workers=workers, partition=partition, eta=0.0, gamma=gamma, tol=tol,
                max_iter=max_iter, reference=reference, freeze_tol=None, rescale=True,
                dtype=dtype, callback=callback, method="distributed_gd")


def _run(A, B, C, *, workers, partition, eta, gamma, tol, max_iter, reference, freeze_tol,
         rescale, dtype, callback, method) -> SolveResult:
    timer = Timer()
    prep = prepare(A, B, C, dtype=dtype, native=True)
    d, n, dp, np_ = prep.shape
    eta, gamma, tol, max_iter, freeze_tol = check_distributed_options(
        "gd" if method == "distributed_gd" else "eagle", eta, gamma, tol, max_iter, freeze_tol)
    ref = check_reference(reference, dp, np_)
    if (workers is None) == (partition is None):
        raise ValueError("give exactly one of workers=M or partition=[column index arrays]")
    if partition is None:
        if not isinstance(workers, (int, np.integer)) or workers < 1 or workers > n:
            raise ValueError(f"workers must be an integer in [1, n={n}], got {workers!r}")
        blocks = partition_columns(n, int(workers))
    else:
        blocks = check_partition(partition, n)
    M = len(blocks)
    xp = namespace(prep.A)
    local = []
    for J in blocks:
        J_ = asarray_like(np.asarray(J), prep.A)
        A_mu = copy(prep.A[:, J_])
        if not bool(xp.any(A_mu != 0)):
            raise ValueError(f"worker {len(local)} holds an all-zero block of A; repartition")
        local.append(LocalBlock(A_mu, copy(prep.B[:, J_]), eta=eta,
                                gamma=gamma, rescale=rescale, freeze_tol=freeze_tol))
    C_ = copy(prep.C)
    D_ = xp.zeros((dp, np_), dtype=C_.dtype, device=device_of(C_))
    stop = StopRule(tol, max_iter, ref, timer)
    for l in range(max_iter):
        D_old = copy(D_)
        C_sum = xp.zeros_like(C_)
        D_sum = xp.zeros_like(D_)
        try:
            for worker in local:
                C_mu, D_mu = (C_, D_) if M == 1 else (copy(C_), copy(D_))
                worker.step(C_mu, D_mu, l)
                if M > 1:
                    C_sum += C_mu
                    D_sum += D_mu
        except FloatingPointError as exc:
            stop.fail(f"diverged at round {l + 1}: {exc}; reduce eta/gamma")
        if M > 1 and stop.failure is None:
            C_[...] = C_sum * (1.0 / M)
            D_[...] = D_sum * (1.0 / M)
        if callback is not None:
            callback(l, C_, D_)
        if stop.failure or stop.record(D_, D_old):
            break
    frozen_at = [worker.frozen_at for worker in local]
    rounds = len(stop.history.change)
    per_worker = (d + dp) * np_ if M > 1 else 0
    info: dict[str, Any] = {"workers": M, "eta": eta, "gamma": gamma}
    if freeze_tol is not None:
        info["frozen_at"] = frozen_at
    return SolveResult(D=wrap_like(D_old if stop.diverged else stop.final(D_), prep), method=method,
                       iterations=rounds, code=stop.code(),
                       status=stop.status(), history=stop.history,
                       seconds=timer(), floats_sent_per_worker=per_worker,
                       total_floats_sent=per_worker * M * rounds, info=info)
