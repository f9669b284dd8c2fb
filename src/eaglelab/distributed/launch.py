"""Launching: local worker processes, `solve_distributed`, and solving from shards under
torchrun or on local workers (`solve_from_shards`, what the command line runs).

Local runs (`launch_local`, `solve_distributed`, ``--workers M``) start M processes with
the multiprocessing "forkserver" method: one server process imports torch and eaglelab
once, then every worker is a cheap fork of it (no per-rank import of torch after the first
launch); "spawn" is available too.
The workers meet through a file:// rendezvous in a private temporary folder, talk gloo over
loopback (GLOO_SOCKET_IFNAME=lo unless set), and use one thread each (torch and BLAS).
The launcher kills any worker still alive when it returns or raises, and SIGTERM / SIGHUP
make it raise (`terminate_raises`), so `timeout` or a job scheduler stopping it runs that
cleanup; a launcher killed outright (SIGKILL) is noticed by its workers, which remove its
temporary folders and exit (`_watch_launcher`).  No run leaves processes or files behind.

When a worker fails, the launcher gives the others `timeout` (+ a short grace) to exit on
their own - a surviving rank raises `CommunicationError` naming the lost rank well within
that - then kills what is left and raises `DistributedError` with one line per rank.
Errors that every rank reports identically before the first round (bad shards, shapes
that do not fit) are re-raised as the same ShardError / ValueError the ranks raised.

Under torchrun (``torchrun --nproc-per-node M -m eaglelab.distributed --shards DIR``)
`solve_from_shards` reads RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT from the
environment (env:// rendezvous) and loads its own shard only; rank 0 gets the result.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import multiprocessing.util
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eaglelab.distributed.comm import Comm, CommunicationError, init_comm, process_token
from eaglelab.distributed.engine import solve_shards
from eaglelab.distributed.shards import ShardError, write_shards
from eaglelab.solvers._inputs import check_int, prepare, wrap_like
from eaglelab.solvers._result import SolveResult, Timer
from eaglelab.solvers.distributed import check_distributed_options, check_partition, partition_columns

__all__ = ["DistributedError", "LocalGroup", "RankOutcome", "exit_code", "launch_local",
           "result_to_json", "solve_distributed", "solve_from_shards", "under_torchrun"]

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_COMM = 0, 1, 2, 3
GRACE = 5.0
ORPHAN_POLL = 0.2      # seconds between a worker's checks that its launcher lives
_START_METHODS = ("forkserver", "spawn")


class DistributedError(RuntimeError):
    """A local distributed run failed; `outcomes` holds one RankOutcome per rank and
    `lost_ranks` the ranks that died without reporting (killed, crashed)."""

    def __init__(self, message: str, outcomes: list[RankOutcome]) -> None:
        super().__init__(message)
        self.outcomes = outcomes
        self.lost_ranks = [o.rank for o in outcomes if o.kind == "lost"]


@dataclass
class RankOutcome:
    """How one worker ended: kind "ok", "input" (bad data, exit 2), "communication"
    (peer lost, exit 3), "error" (exit 1) or "lost" (died without reporting, or killed by
    the launcher because its peers found it dead or silent, or it outlived the timeout)."""

    rank: int
    exitcode: int | None
    kind: str
    message: str = ""
    value: Any = None
    error_class: str = ""

    def describe(self) -> str:
        if self.kind == "ok":
            return f"rank {self.rank}: ok"
        return f"rank {self.rank}: {self.message}"


# ----------------------------------------------------------------------------- workers


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_LIMITS: Any = None


def one_thread() -> None:
    """One compute thread in this process (torch intra-op and the BLAS under numpy)."""
    global _LIMITS
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    _LIMITS = threadpool_limits(1)


def _write(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f)
    tmp.replace(path)


def _classify(exc: BaseException) -> tuple[str, int]:
    if isinstance(exc, CommunicationError):
        return "communication", EXIT_COMM
    if isinstance(exc, ValueError):
        return "input", EXIT_INPUT
    return "error", EXIT_ERROR


def _watch_launcher(pid: int, token: str, cleanup: Sequence[str]) -> None:
    """Run in every worker: when the launching process is gone (killed, even by SIGKILL,
    which it cannot handle), remove its temporary folders and exit at once.  The worker's
    own parent is the forkserver, so PR_SET_PDEATHSIG alone does not see the launcher die;
    once the workers are gone, the forkserver and resource tracker exit by themselves."""
    while True:
        time.sleep(ORPHAN_POLL)
        if process_token(pid) != token:
            for path in cleanup:
                shutil.rmtree(path, ignore_errors=True)
            os._exit(EXIT_ERROR)


def _worker_entry(target: Callable[..., Any], rank: int, world: int, run_dir: str,
                  timeout: float, env: dict[str, str], args: tuple, kwargs: dict,
                  launcher: tuple[int, str], cleanup: Sequence[str]) -> None:
    _die_with_parent()
    threading.Thread(target=_watch_launcher, args=(*launcher, tuple(cleanup)), daemon=True,
                     name="eaglelab-launcher-watch").start()
    os.environ.update(env)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    one_thread()
    out = Path(run_dir)
    comm: Comm | None = None
    code = EXIT_ERROR
    try:
        if "RANK" in env:
            comm = init_comm("env://", timeout=timeout)
        else:
            comm = init_comm(f"file://{out / 'rendezvous'}", rank=rank, world_size=world,
                             timeout=timeout)
        (out / f"rank-{rank}.ready").touch()
        value = target(comm, *args, **kwargs)
        outcome: dict[str, Any] = {"kind": "ok", "value": value}
        code = EXIT_OK
    except BaseException as exc:  # report everything, including KeyboardInterrupt
        kind, code = _classify(exc)
        msg = str(exc) if kind != "error" else "".join(
            traceback.format_exception_only(type(exc), exc)).strip()
        outcome = {"kind": kind, "message": msg, "error_class": type(exc).__name__,
                   "lost": getattr(exc, "lost_ranks", [])}
        print(f"[eaglelab.distributed rank {rank}] {type(exc).__name__}: {msg}", file=sys.stderr)
        if kind == "error":
            traceback.print_exc()
    try:
        _write(out / f"rank-{rank}.out", outcome)
    except Exception as exc:  # unpicklable value: report it rather than vanish
        _write(out / f"rank-{rank}.out", {"kind": "error", "error_class": type(exc).__name__,
                                          "message": f"cannot send the result back: {exc}"})
        code = EXIT_ERROR
    if comm is not None:
        comm.close() if code == EXIT_OK else comm.abort()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: no destructor may block on a dead peer


def _context(start_method: str):
    if start_method not in _START_METHODS:
        raise ValueError(f"start_method={start_method!r}; use one of {_START_METHODS}")
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(["eaglelab.distributed.launch"])
    return ctx


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalGroup:
    """M worker processes on this machine running target(comm, *args, **kwargs).

    Use `launch_local` unless you need the processes while they run (pids, wait_ready,
    e.g. to test a kill).  As a context manager it kills leftovers and removes its folder.
    Every worker exits within ORPHAN_POLL seconds of the launching process's death, first
    removing the group's folder and the `cleanup` paths (what the launcher could not).
    rendezvous: "file" (file:// store in the run folder) or "env" (env:// with
    MASTER_ADDR=127.0.0.1 and a free MASTER_PORT, exactly as under torchrun).
    """

    def __init__(self, target: Callable[..., Any], workers: int, args: Sequence[Any] = (),
                 kwargs: dict[str, Any] | None = None, *, timeout: float = 60.0,
                 start_method: str = "forkserver", rendezvous: str = "file",
                 cleanup: Sequence[str | Path] = ()) -> None:
        self.workers = check_int("workers", workers)
        self.timeout = float(timeout)
        if not (np.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if rendezvous not in ("file", "env"):
            raise ValueError(f"rendezvous={rendezvous!r}; use 'file' or 'env'")
        ctx = _context(start_method)
        self.run_dir = Path(tempfile.mkdtemp(prefix="eaglelab-run-"))
        launcher = (os.getpid(), process_token(os.getpid()) or "alive")
        # multiprocessing's own folder of this process (the forkserver's socket) too
        orphan_cleanup = [str(self.run_dir), *map(str, cleanup), mp.util.get_temp_dir()]
        port = _free_port() if rendezvous == "env" else None
        self.procs = []
        for r in range(self.workers):
            env = {} if port is None else {
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(r),
                "WORLD_SIZE": str(self.workers), "LOCAL_RANK": str(r)}
            self.procs.append(ctx.Process(
                target=_worker_entry, name=f"eaglelab-rank-{r}", daemon=True,
                args=(target, r, self.workers, str(self.run_dir), self.timeout, env,
                      tuple(args), dict(kwargs or {}), launcher, orphan_cleanup)))
        try:
            for p in self.procs:
                p.start()
        except BaseException:
            self.kill()
            raise

    @property
    def pids(self) -> list[int]:
        return [int(p.pid) for p in self.procs]

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Block until every rank has joined the group (or `timeout` s pass, or one exits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all((self.run_dir / f"rank-{r}.ready").exists() for r in range(self.workers)):
                return True
            if any(p.exitcode is not None for p in self.procs):
                return False
            time.sleep(0.02)
        return False

    def kill(self) -> None:
        for p in self.procs:
            if p.pid is not None and p.is_alive():
                p.kill()
        for p in self.procs:
            if p.pid is not None:
                p.join(timeout=5)

    def wait(self) -> list[Any]:
        """Wait for all ranks; return their values in rank order, or raise."""
        killed: dict[int, str] = {}
        fail_time: float | None = None
        named_lost: dict[int, int] = {}       # lost rank -> the rank that named it
        try:
            alive = list(range(self.workers))
            while alive:
                mp.connection.wait([self.procs[r].sentinel for r in alive], timeout=0.2)
                for r in list(alive):
                    code = self.procs[r].exitcode
                    if code is None:
                        continue
                    alive.remove(r)
                    if code != 0:
                        fail_time = fail_time or time.monotonic()
                        for lost in self._read(r).get("lost", []):
                            named_lost.setdefault(lost, r)
                now = time.monotonic()
                for r in list(alive):
                    # A rank its peers found dead or silent (e.g. stopped) is not waited for.
                    late = fail_time is not None and now - fail_time > self.timeout + GRACE
                    if r in named_lost or late:
                        killed[r] = (f"named lost by rank {named_lost[r]}" if r in named_lost
                                     else f"did not exit within timeout={self.timeout:g} s "
                                          f"(+{GRACE:g} s) of the first failure")
                        self.procs[r].kill()
                        self.procs[r].join(timeout=5)
                        alive.remove(r)
        finally:
            self.kill()
        outcomes = [self._outcome(r, killed.get(r)) for r in range(self.workers)]
        if all(o.kind == "ok" for o in outcomes):
            return [o.value for o in outcomes]
        raise _failure(outcomes)

    def _read(self, r: int) -> dict[str, Any]:
        path = self.run_dir / f"rank-{r}.out"
        if not path.exists():
            return {}
        with open(path, "rb") as f:
            return pickle.load(f)

    def _outcome(self, r: int, killed: str | None) -> RankOutcome:
        code = self.procs[r].exitcode
        raw = self._read(r)
        if raw:
            return RankOutcome(r, code, raw["kind"], raw.get("message", ""), raw.get("value"),
                               raw.get("error_class", ""))
        if killed:
            return RankOutcome(r, code, "lost", f"{killed}; killed by the launcher")
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return RankOutcome(r, code, "lost", f"process died (killed by signal {name})")
        return RankOutcome(r, code, "lost", f"process exited with code {code} without reporting")

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> LocalGroup:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _failure(outcomes: list[RankOutcome]) -> Exception:
    bad = [o for o in outcomes if o.kind != "ok"]
    if all(o.kind == "input" for o in bad):
        # Every rank raised the same setup error (the engine agrees on errors before any
        # round): hand the user that error, not a wall of per-rank lines.
        cls = ShardError if any(o.error_class == "ShardError" for o in bad) else ValueError
        return cls(bad[0].message)
    lost = [o.rank for o in outcomes if o.kind == "lost"]
    head = f"distributed run failed ({len(outcomes)} workers"
    if lost:
        head += f"; lost rank{'s' if len(lost) > 1 else ''} {', '.join(map(str, lost))}"
    head += ")"
    return DistributedError(head + ":\n  " + "\n  ".join(o.describe() for o in outcomes), outcomes)


@contextmanager
def terminate_raises():
    """While active (in the main thread), SIGTERM and SIGHUP - what `timeout`, job
    schedulers and a closed terminal send - raise SystemExit(128 + signal) instead of ending
    the process on the spot, so the launcher's cleanup (killing its workers, removing its
    temporary folders) runs.  Outside the main thread a no-op; nested, the inner one
    restores the outer one's handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_exit(signum, frame):
        raise SystemExit(128 + signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, raise_exit)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def launch_local(target: Callable[..., Any], workers: int, args: Sequence[Any] = (),
                 kwargs: dict[str, Any] | None = None, *, timeout: float = 60.0,
                 start_method: str = "forkserver", rendezvous: str = "file",
                 cleanup: Sequence[str | Path] = ()) -> list[Any]:
    """Run target(comm, *args, **kwargs) on `workers` local processes; return the values in
    rank order.  target must be importable (a module-level function) and its value
    picklable.  Raises DistributedError when a rank fails (after the others exited or
    were killed, never later than timeout + a few seconds after the first failure), or the
    ShardError / ValueError every rank raised before the first round."""
    with terminate_raises(), LocalGroup(target, workers, args, kwargs, timeout=timeout,
                                        start_method=start_method, rendezvous=rendezvous,
                                        cleanup=cleanup) as group:
        return group.wait()


# ----------------------------------------------------------------------------- solving


def solve_distributed(A, B, C, *, workers: int, method: str = "eagle", partition=None,
                      tol: float = 1e-10, max_iter: int = 1000, reference=None,
                      freeze_tol: float | None = None, timeout: float = 60.0, dtype=None,
                      eta: float = 1 / 3, gamma: float = 1.0,
                      start_method: str = "forkserver") -> SolveResult:
    """Distributed EAGLE ("eagle") or distributed GD ("gd") on `workers` local processes.

    The problem is cut into column shards (contiguous near-equal blocks, or `partition`, a
    list of `workers` column-index arrays), written to a temporary folder, and every worker
    reads only its own shard.  Returns rank 0's SolveResult (D in the input's array type);
    it equals `eaglelab.solvers.eagle_distributed` / `distributed_gd` on the same partition
    up to rounding.  result.info["comm"] holds the communication measured at the collective
    call: per rank (floats/bytes per round and totals) and summed; info["wall_seconds"]
    the whole run including process start.  timeout: seconds a rank waits for a silent
    peer before giving up (see eaglelab.distributed.comm).
    """
    timer = Timer()
    prep = prepare(A, B, C, dtype=dtype)
    n = prep.shape[1]
    workers = check_int("workers", workers, maximum=n)
    check_distributed_options(method, eta, gamma, tol, max_iter, freeze_tol)
    if partition is not None:
        blocks = check_partition(partition, n)
        if len(blocks) != workers:
            raise ValueError(f"partition has {len(blocks)} blocks but workers={workers}; "
                             "give one block per worker")
    else:
        blocks = partition_columns(n, workers)
    kwargs = {"method": method, "tol": tol, "max_iter": max_iter, "gamma": gamma}
    if method == "eagle":
        kwargs.update(eta=eta, freeze_tol=freeze_tol)
    with terminate_raises(), tempfile.TemporaryDirectory(prefix="eaglelab-shards-") as tmp:
        write_shards(tmp, prep.A, prep.B, prep.C, partition=blocks, reference=reference,
                     report=False)
        results = launch_local(solve_shards, workers, (tmp,), kwargs, timeout=timeout,
                               start_method=start_method, cleanup=[tmp])
    res: SolveResult = results[0]
    res.D = wrap_like(res.D, prep)
    res.info["wall_seconds"] = timer()
    return res


def result_to_json(result: SolveResult) -> dict[str, Any]:
    """JSON-ready record of a distributed result: summary, history, per-rank communication."""
    out = result.summary()
    out["history"] = result.history.to_dict()
    for key in ("comm", "frozen_at", "worker_errors", "wall_seconds"):
        if key in result.info:
            out[key] = result.info[key]
    return out


# ----------------------------------------------------------------------------- from shards


def under_torchrun() -> bool:
    """True when this process is one rank started by torchrun (RANK and WORLD_SIZE set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def exit_code(exc: BaseException) -> int:
    """The exit code of a run that raised exc: 2 bad input or shards, 3 a lost peer or a
    failed collective, 1 anything else."""
    if isinstance(exc, DistributedError):
        return EXIT_COMM if any(o.kind == "communication" for o in exc.outcomes) else EXIT_ERROR
    return _classify(exc)[1]


def solve_from_shards(shards: str | Path, *, workers: int | None = None, method: str = "eagle",
                      tol: float = 1e-10, max_iter: int = 1000, eta: float = 1 / 3,
                      gamma: float = 1.0, freeze_tol: float | None = None,
                      timeout: float = 60.0, use_reference: bool = True
                      ) -> SolveResult | None:
    """Solve the problem stored as column shards in `shards` (`write_shards`).

    Under torchrun this process is one rank: it reads its own shard only (env://
    rendezvous) and returns the result on rank 0, None on the other ranks; a rank that
    fails prints the error and exits at once with `exit_code` (it never blocks in teardown
    on a dead peer).  Otherwise `workers` local processes are started (`launch_local`) and
    rank 0's result is returned.  Raises ValueError for a bad call (workers given under
    torchrun, or missing outside it) and what `launch_local` raises."""
    kwargs: dict[str, Any] = {"method": method, "tol": tol, "max_iter": max_iter,
                              "gamma": gamma, "use_reference": use_reference}
    if method == "eagle":
        kwargs.update(eta=eta, freeze_tol=freeze_tol)
    if not under_torchrun():
        if workers is None:
            raise ValueError("not launched by torchrun (RANK / WORLD_SIZE unset): pass "
                             "--workers M to start M local processes, or run under torchrun "
                             "--nproc-per-node M")
        return launch_local(solve_shards, workers, (str(shards),), kwargs, timeout=timeout)[0]
    if workers is not None:
        raise ValueError("--workers is for local runs; under torchrun the world size comes "
                         "from --nproc-per-node / --nnodes")
    one_thread()
    rank = os.environ.get("RANK", "?")
    comm = None
    try:
        comm = init_comm("env://", timeout=timeout)
        result = solve_shards(comm, shards, **kwargs)
    except BaseException as exc:
        print(f"[eaglelab.distributed rank {rank}] {type(exc).__name__}: {exc}",
              file=sys.stderr)
        if comm is not None:
            comm.abort()
        sys.stderr.flush()
        os._exit(exit_code(exc))  # do not block in teardown on a dead peer
    is_root = comm.rank == 0
    comm.close()
    return result if is_root else None
