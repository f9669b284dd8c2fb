"""Rank-local distributed EAGLE and distributed gradient descent (brief section 4).

Each rank holds only its own column block (A^mu, B^mu) and a copy of the shared C.  One
round on rank mu:

    (C', D')_mu = UPDATE(A^mu, B^mu, C, D)          # `dense_update`, the solvers' own step
    (C, D) = (1/M) sum_mu (C', D')_mu                # one all_reduce of the stacked (C'; D')

C and D live in one (d + d') x n' buffer, so a round is exactly one all_reduce of
(d + d') n' numbers per rank (measured by `Comm`, compared with the formula in `info`).
The worker's half of the round is `eaglelab.solvers.distributed.LocalBlock`, the one the
in-process simulation runs; the average is the same (sum, then multiply by 1/M), and so are
the stopping rule and the freeze of the accelerated variant; only the order in which gloo
adds the M contributions may differ, by rounding.  Distributed GD is the same round with eta = 0.

Every rank takes the same decisions: the all_reduce result is bitwise identical on all
ranks, and the stopping rule reads only the reduced D.  A rank whose local update overflows
fills its contribution with NaN; the sum is then NaN on every rank and all stop together
("diverged").  Before the first round the ranks exchange a small description of their data
(shapes, dtype, digests of C and of the reference, shard ids) and all raise the same
`ValueError` when they do not fit together; errors found while loading a shard are
exchanged the same way, so no rank waits for a peer that has already given up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from eaglelab.distributed.comm import Comm
from eaglelab.distributed.shards import ShardError, read_shard
from eaglelab.solvers._inputs import prepare
from eaglelab.solvers._result import SolveResult, StopRule, Timer
from eaglelab.solvers.distributed import METHODS, LocalBlock, check_distributed_options

__all__ = ["eagle_rank", "gd_rank", "solve_shards", "METHODS"]

Callback = Callable[[int, np.ndarray, np.ndarray], Any]


def _digest(a: np.ndarray | None) -> str | None:
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()[:32]


def _ranks(rs: list[int]) -> str:
    return ("rank " if len(rs) == 1 else "ranks ") + ", ".join(map(str, rs))


def _agree(comm: Comm, desc: dict[str, Any] | None, error: BaseException | None) -> list[dict]:
    """Exchange every rank's data description (or its load error) and raise the same error
    on every rank when something does not fit.  Called once, before any round."""
    mine = {"error": f"{type(error).__name__}: {error}", "shard": isinstance(error, ShardError)} \
        if error is not None else dict(desc or {})
    everyone = comm.all_gather_object(mine, tag="setup", phase="setup")
    failed = [(r, e) for r, e in enumerate(everyone) if "error" in e]
    if failed:
        by_msg: dict[str, list[int]] = {}
        for r, e in failed:
            by_msg.setdefault(e["error"], []).append(r)
        text = "; ".join(f"{_ranks(rs)}: {m}" for m, rs in by_msg.items())
        cls = ShardError if any(e["shard"] for _, e in failed) else ValueError
        raise cls(f"cannot start: {text}")

    def mismatch(key: str, what: str) -> None:
        values: dict[Any, list[int]] = {}
        for r, e in enumerate(everyone):
            values.setdefault(e.get(key), []).append(r)
        if len(values) > 1:
            parts = [f"{v} on {_ranks(rs)}" for v, rs in values.items()]
            raise ValueError(f"cannot start: {what} differs across ranks ({', '.join(parts)}); "
                             "every rank must hold a block of the same problem")

    W = comm.world_size
    for r, e in enumerate(everyone):
        if e.get("world_size") is not None and e["world_size"] != W:
            raise ShardError(f"cannot start: rank {r} holds a shard written for {e['world_size']} "
                             f"workers but the run has world size {W}; launch {e['world_size']} "
                             "ranks or rewrite the shards")
        if e.get("worker") is not None and e["worker"] != r:
            raise ShardError(f"cannot start: rank {r} loaded the shard of worker {e['worker']}")
    mismatch("d", "d (rows of A and C)")
    mismatch("d_prime", "d' (rows of B)")
    mismatch("n_prime", "n' (columns of C)")
    mismatch("dtype", "the dtype")
    mismatch("problem_id", "the shard problem id (shards from different writes)")
    mismatch("n_total", "the global column count n")
    mismatch("c_digest", "the shared block C")
    mismatch("ref_digest", "the reference D*")
    n_total = everyone[0].get("n_total")
    n_sum = sum(e["n_local"] for e in everyone)
    if n_total is not None and n_sum != n_total:
        raise ShardError(f"cannot start: the ranks hold {n_sum} columns in total but the shards "
                         f"describe n = {n_total}")
    return everyone


def _describe(A, B, C, ref, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    d = {"d": A.shape[0], "n_local": A.shape[1], "d_prime": B.shape[0], "n_prime": C.shape[1],
         "dtype": A.dtype.name, "c_digest": _digest(C), "ref_digest": _digest(ref)}
    d.update(extra or {})
    return d


def _dense(M) -> np.ndarray:
    if hasattr(M, "detach"):
        return M.detach().cpu().numpy()
    return M.toarray() if hasattr(M, "toarray") else np.asarray(M)


def _local_inputs(comm: Comm, A_mu, B_mu, C, reference, dtype):
    a = _dense(A_mu) if A_mu is not None else None
    if a is not None and a.ndim == 2 and a.size and a.dtype.kind in "fiub" and not np.any(a):
        raise ValueError(f"worker {comm.rank} holds an all-zero block of A; repartition")
    prep = prepare(A_mu, B_mu, C, dtype=dtype)
    dt = prep.dtype
    A_ = np.array(prep.A, dtype=dt, order="C")
    B_ = np.array(prep.B, dtype=dt, order="C")
    ref = None
    if reference is not None:
        ref = np.asarray(reference.detach().cpu().numpy() if hasattr(reference, "detach")
                         else reference, dtype=np.float64)
        dp, np_ = B_.shape[0], prep.C.shape[1]
        if ref.shape != (dp, np_) or not np.all(np.isfinite(ref)):
            raise ValueError(f"reference must be a finite d' x n' = {(dp, np_)} array, "
                             f"got shape {ref.shape}")
    return A_, B_, np.array(prep.C, dtype=dt, order="C"), ref


def eagle_rank(comm: Comm, A_mu, B_mu, C, *, eta: float = 1 / 3, gamma: float = 1.0,
               tol: float = 1e-10, max_iter: int = 1000, reference=None,
               freeze_tol: float | None = None, rescale: bool = True, dtype=None,
               callback: Callback | None = None) -> SolveResult:
    """Distributed EAGLE on this rank's block (A^mu, B^mu) with the shared C.

    Call it on every rank of `comm` with that rank's block; parameters as in
    `eaglelab.solvers.eagle_distributed`.  Returns the same SolveResult on every rank
    (D is the reduced, shared iterate); `info["comm"]` holds the measured communication.
    callback(l, C, D) runs on every rank after every round (views; do not keep them).
    """
    return _solve(comm, A_mu, B_mu, C, method="eagle", eta=eta, gamma=gamma, tol=tol,
                  max_iter=max_iter, reference=reference, freeze_tol=freeze_tol,
                  rescale=rescale, dtype=dtype, callback=callback)


def gd_rank(comm: Comm, A_mu, B_mu, C, *, gamma: float = 1.0, tol: float = 1e-10,
            max_iter: int = 1000, reference=None, dtype=None,
            callback: Callback | None = None) -> SolveResult:
    """Distributed gradient descent with EAGLE's communication (the round with eta = 0);
    matches `eaglelab.solvers.distributed_gd`."""
    return _solve(comm, A_mu, B_mu, C, method="gd", eta=0.0, gamma=gamma, tol=tol,
                  max_iter=max_iter, reference=reference, freeze_tol=None, rescale=True,
                  dtype=dtype, callback=callback)


def solve_shards(comm: Comm, directory: str | Path, *, method: str = "eagle",
                 eta: float = 1 / 3, gamma: float = 1.0, tol: float = 1e-10,
                 max_iter: int = 1000, freeze_tol: float | None = None, rescale: bool = True,
                 dtype=None, use_reference: bool = True,
                 callback: Callback | None = None) -> SolveResult:
    """Read this rank's shard from `directory` (and nothing else) and solve.

    Shard defects, shards written for another world size and shards that do not belong
    together raise (on every rank, before any round) a ShardError / ValueError saying so.
    """
    mark = comm.mark()
    try:
        eta, gamma, tol, max_iter, freeze_tol = check_distributed_options(
            method, eta, gamma, tol, max_iter, freeze_tol)
        shard = read_shard(directory, comm.rank, comm.world_size)
        h = shard.header
        ref = shard.reference if use_reference else None
        A_, B_, C_, ref = _local_inputs(comm, shard.A, shard.B, shard.C, ref, dtype)
        desc = _describe(A_, B_, C_, ref, {"world_size": h.world_size, "worker": h.worker,
                                           "problem_id": h.problem_id, "n_total": h.n})
        error = None
    except Exception as exc:  # reported to every rank by _agree, so nobody waits for us
        error, desc = exc, None
    _agree(comm, desc, error)
    return _rounds(comm, A_, B_, C_, ref, mark, method=method, eta=eta, gamma=gamma, tol=tol,
                   max_iter=max_iter, freeze_tol=freeze_tol, rescale=rescale, callback=callback)


def _solve(comm, A_mu, B_mu, C, *, method, eta, gamma, tol, max_iter, reference, freeze_tol,
           rescale, dtype, callback) -> SolveResult:
    mark = comm.mark()
    try:
        eta, gamma, tol, max_iter, freeze_tol = check_distributed_options(
            method, eta, gamma, tol, max_iter, freeze_tol)
        A_, B_, C_, ref = _local_inputs(comm, A_mu, B_mu, C, reference, dtype)
        desc, error = _describe(A_, B_, C_, ref), None
    except Exception as exc:
        desc, error = None, exc
    _agree(comm, desc, error)
    return _rounds(comm, A_, B_, C_, ref, mark, method=method, eta=eta, gamma=gamma, tol=tol,
                   max_iter=max_iter, freeze_tol=freeze_tol, rescale=rescale, callback=callback)


def _rounds(comm: Comm, A_: np.ndarray, B_: np.ndarray, C0: np.ndarray, ref, mark, *, method, eta,
            gamma, tol, max_iter, freeze_tol, rescale, callback) -> SolveResult:
    timer = Timer()
    M = comm.world_size
    d, n_mu = A_.shape
    dp, np_ = B_.shape[0], C0.shape[1]
    dt = A_.dtype
    buf = np.zeros((d + dp, np_), dtype=dt)      # [C; D]: the one buffer that is reduced
    buf[:d] = C0
    C_, D_ = buf[:d], buf[d:]
    worker = LocalBlock(A_, B_, eta=eta, gamma=gamma, rescale=rescale, freeze_tol=freeze_tol)
    stop = StopRule(tol, max_iter, ref, timer)
    local_error = None
    D_old = D_.copy()
    for l in range(max_iter):
        D_old = D_.copy()
        try:
            worker.step(C_, D_, l)
        except FloatingPointError as exc:
            local_error = f"rank {comm.rank}: {exc}"
            buf.fill(np.nan)                     # poisons the sum on every rank
        if M > 1:
            comm.allreduce_sum_(buf, tag="round", phase=f"round {l + 1}")
            np.multiply(buf, 1.0 / M, out=buf)
        if not np.all(np.isfinite(buf)):
            stop.fail(f"diverged at round {l + 1}: a worker's update overflowed or became "
                      "non-finite; reduce eta/gamma")
        if callback is not None:
            callback(l, C_, D_)
        if stop.failure or stop.record(D_, D_old):
            break
    rounds = len(stop.history.change)
    D_out = (D_old if stop.diverged else D_).copy()

    # Finish: one control message with this rank's measured traffic; every rank learns the
    # totals and checks that all ranks hold the same D (they must: the all_reduce result is
    # identical everywhere).
    t = comm.since(mark, "round")
    mine = {"rank": comm.rank, "rounds": rounds, "round_calls": t.calls,
            "floats_per_round": sorted(set(t.per_call_floats)),
            "bytes_per_round": sorted(set(t.per_call_bytes)),
            "floats_total": t.floats, "bytes_total": t.bytes,
            "setup_bytes": comm.since(mark, "setup").bytes,
            "frozen_at": worker.frozen_at, "d_digest": _digest(D_out), "local_error": local_error,
            "n_local": n_mu}
    everyone = comm.all_gather_object(mine, tag="finish", phase="finish")
    per_round = {tuple(e["floats_per_round"]) for e in everyone}
    if M == 1:
        measured = 0
    elif len(per_round) == 1 and len(next(iter(per_round))) == 1:
        measured = next(iter(per_round))[0]
    else:
        measured = -1                             # ranks or rounds disagree: never expected
    comm_info = {
        "backend": comm.backend, "world_size": M,
        "expected_floats_per_round": (d + dp) * np_ if M > 1 else 0,
        "floats_per_round_per_rank": measured,
        "bytes_per_round_per_rank": everyone[0]["bytes_per_round"][0] if measured > 0 else 0,
        "total_floats": sum(e["floats_total"] for e in everyone),
        "total_bytes": sum(e["bytes_total"] for e in everyone),
        "per_rank": [{k: e[k] for k in ("rank", "n_local", "round_calls", "floats_per_round",
                                         "bytes_per_round", "floats_total", "bytes_total",
                                         "setup_bytes")} for e in everyone],
        "ranks_agree": len({e["d_digest"] for e in everyone}) == 1
                       and len({e["rounds"] for e in everyone}) == 1,
    }
    info: dict[str, Any] = {"workers": M, "eta": eta, "gamma": gamma,
                            "engine": "torch.distributed" if M > 1 else "single process",
                            "rank": comm.rank, "comm": comm_info}
    if freeze_tol is not None:
        info["frozen_at"] = [e["frozen_at"] for e in everyone]
    errors = [e["local_error"] for e in everyone if e["local_error"]]
    if errors:
        info["worker_errors"] = errors
    status = stop.status()
    if not comm_info["ranks_agree"]:
        status += "; WARNING: ranks ended with different D (report this as a bug)"
    name = "eagle_distributed" if method == "eagle" else "distributed_gd"
    return SolveResult(D=D_out, method=name,
                       iterations=rounds, code=stop.code(),
                       status=status, history=stop.history, seconds=timer(),
                       floats_sent_per_worker=max(measured, 0),
                       total_floats_sent=comm_info["total_floats"], info=info)
