"""The communicator: a thin wrapper over a torch.distributed process group.

Two jobs, both at the collective call so they hold for any backend:

1. Count the payload.  Every collective goes through `Comm`, which records, per tag, the
   number of calls, the floats and the bytes this rank handed to the collective (for
   `allreduce_sum_` the array it contributes: numel and nbytes; for control messages the
   pickled size).  The count is the payload, not the wire traffic: a ring all-reduce moves
   about 2 (M-1)/M times the payload over the network.  A world of one sends nothing and
   counts nothing (as the in-process simulation reports 0 floats for one worker).
2. Name a lost peer.  Gloo notices a dead peer within milliseconds (the TCP connection is
   reset) but its message names a socket address, not a rank.  Each rank therefore runs a
   heartbeat thread that bumps a counter in the rendezvous store; when a collective fails,
   the rank marks itself "failed" in the store and looks at its peers: a peer on this host
   whose process is gone is lost at once, otherwise a peer is lost when its heartbeat has
   not moved for `stale_after` seconds and it has not marked itself failed or done.  The
   collective then raises `CommunicationError` naming the lost rank(s) and the phase
   ("round 17").  A hung peer (stopped, not dead) is caught by the process-group timeout.

`timeout` (seconds) bounds the wait for a silent peer: the process-group timeout is
`timeout - 1.5 stale_after` and the diagnosis takes at most `stale_after`, so a surviving rank
raises within `timeout` of a peer going silent (within about `stale_after`, usually much
less, of a peer dying).  See `liveness_timing`.
"""

from __future__ import annotations

import datetime
import os
import pickle
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Comm", "CommunicationError", "PeerMonitor", "Traffic", "init_comm", "liveness_timing"]


class CommunicationError(RuntimeError):
    """A collective failed.  `lost_ranks` lists the peers found dead or silent (may be empty
    when none could be identified); `phase` says where ("setup", "round 17", "finish")."""

    def __init__(self, message: str, lost_ranks: list[int] | None = None, phase: str = "") -> None:
        super().__init__(message)
        self.lost_ranks = list(lost_ranks or [])
        self.phase = phase


@dataclass
class Traffic:
    """What one rank handed to collectives under one tag."""

    calls: int = 0
    floats: int = 0
    bytes: int = 0
    per_call_floats: list[int] = field(default_factory=list)
    per_call_bytes: list[int] = field(default_factory=list)

    def add(self, floats: int, nbytes: int, keep: bool) -> None:
        self.calls += 1
        self.floats += floats
        self.bytes += nbytes
        if keep:
            self.per_call_floats.append(floats)
            self.per_call_bytes.append(nbytes)


def liveness_timing(timeout: float) -> tuple[float, float, float]:
    """(process-group timeout, heartbeat interval, stale_after) for a user `timeout` (s)."""
    stale_after = min(10.0, max(0.2, timeout / 5))
    return max(0.5, timeout - 1.5 * stale_after), stale_after / 10, stale_after


def process_token(pid: int) -> str | None:
    """A token identifying the living process `pid` on this host (its start time where
    /proc exists, so a reused pid does not pass for it; "alive" elsewhere), or None when no
    such process runs (absent, zombie or dead)."""
    if not Path("/proc/self/stat").exists():          # no /proc: liveness only
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "alive"
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return "alive"
    fields = stat.rsplit(")", 1)[-1].split()
    return None if fields[0] in ("Z", "X", "x") else fields[19]      # field 22: starttime


def _process_gone(pid: int) -> bool:
    """True when process pid (on this host) no longer runs (absent, zombie or dead)."""
    return process_token(pid) is None


class PeerMonitor:
    """Heartbeats in the rendezvous store, and the diagnosis of which peer is lost."""

    def __init__(self, store: Any, rank: int, world_size: int, *, interval: float,
                 stale_after: float) -> None:
        import torch.distributed as dist

        self.store = dist.PrefixStore("eaglelab-liveness", store)
        self.rank, self.world_size = rank, world_size
        self.interval, self.stale_after = interval, stale_after
        self.host = socket.gethostname()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.store.set(f"where/{self.rank}", f"{self.host}|{os.getpid()}")
        self.store.add(f"beat/{self.rank}", 1)
        self._thread = threading.Thread(target=self._beat, name="eaglelab-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.add(f"beat/{self.rank}", 1)
            except Exception:  # store gone (its host died): nothing left to signal
                return

    def mark(self, state: str) -> None:
        try:
            self.store.set(f"state/{self.rank}", state)
        except Exception:
            pass

    def stop(self, state: str = "done") -> None:
        self.mark(state)
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * self.interval + 1.0)

    def _state(self, r: int) -> str | None:
        key = f"state/{r}"
        return self.store.get(key).decode() if self.store.check([key]) else None

    def _local_pid(self, r: int) -> int | None:
        key = f"where/{r}"
        if not self.store.check([key]):
            return None
        host, _, pid = self.store.get(key).decode().partition("|")
        return int(pid) if host == self.host and pid.isdigit() else None

    def diagnose(self) -> tuple[list[int], dict[int, str]]:
        """Mark this rank failed, then return (lost ranks, reason per lost rank).

        Takes at most about stale_after seconds; returns early when every peer is either
        confirmed dead (its process on this host is gone) or alive (marked failed/done).
        """
        self.mark("failed")
        peers = [r for r in range(self.world_size) if r != self.rank]
        reasons: dict[int, str] = {}
        try:
            first = {r: self.store.add(f"beat/{r}", 0) for r in peers}
            pids = {r: self._local_pid(r) for r in peers}
            undecided = set(peers)
            t0 = time.monotonic()
            while undecided:
                for r in sorted(undecided):
                    if self._state(r) in ("failed", "done"):
                        undecided.discard(r)
                    elif pids[r] is not None and _process_gone(pids[r]):
                        reasons[r] = f"its process {pids[r]} on this host is gone"
                        undecided.discard(r)
                if not undecided or time.monotonic() - t0 >= self.stale_after:
                    break
                time.sleep(min(self.interval, 0.05))
            for r in sorted(undecided):
                if self.store.add(f"beat/{r}", 0) == first[r] and self._state(r) is None:
                    reasons[r] = f"no heartbeat for {self.stale_after:.1f} s"
        except Exception as exc:  # the store itself is unreachable
            # without torchrun's agent store, rank 0 hosts the store: it is the likely loss
            agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
            if self.rank != 0 and not agent_store:
                reasons.setdefault(0, f"the rendezvous store it hosts is unreachable ({exc})")
        return sorted(reasons), reasons


class Comm:
    """A rank's view of the group: rank, world size, counted collectives.

    Build it with `init_comm` (rendezvous + process group + heartbeat), or wrap an existing
    default group with Comm(rank, world_size) (no lost-peer diagnosis without a store).
    """

    def __init__(self, rank: int = 0, world_size: int = 1, *, group: Any = None,
                 monitor: PeerMonitor | None = None, backend: str = "gloo",
                 owns_group: bool = False) -> None:
        self.rank, self.world_size = int(rank), int(world_size)
        self.group = group
        self.monitor = monitor
        self.backend = backend if world_size > 1 else "none"
        self.owns_group = owns_group
        self.traffic: dict[str, Traffic] = {}
        self._closed = False

    # -- counting -------------------------------------------------------------------------
    def _count(self, tag: str, floats: int, nbytes: int) -> None:
        self.traffic.setdefault(tag, Traffic()).add(floats, nbytes, keep=tag == "round")

    def mark(self) -> dict[str, tuple[int, int, int, int]]:
        """A bookmark of the counters, for `since` (one solve's traffic on a shared Comm)."""
        return {k: (t.calls, t.floats, t.bytes, len(t.per_call_floats))
                for k, t in self.traffic.items()}

    def since(self, mark: dict[str, tuple[int, int, int, int]], tag: str) -> Traffic:
        """The traffic under `tag` since `mark`."""
        t = self.traffic.get(tag, Traffic())
        c, f, b, k = mark.get(tag, (0, 0, 0, 0))
        return Traffic(t.calls - c, t.floats - f, t.bytes - b, t.per_call_floats[k:],
                       t.per_call_bytes[k:])

    def stats(self) -> dict[str, dict[str, int]]:
        """{tag: {"calls", "floats", "bytes"}} for this rank."""
        return {k: {"calls": t.calls, "floats": t.floats, "bytes": t.bytes}
                for k, t in self.traffic.items()}

    # -- collectives ----------------------------------------------------------------------
    def allreduce_sum_(self, array: np.ndarray, *, tag: str = "round",
                       phase: str = "") -> np.ndarray:
        """Sum `array` over all ranks, in place (a C-contiguous float32/float64 numpy array).

        The result is bitwise identical on every rank, so decisions taken from it agree.
        """
        if self.world_size == 1:
            return array
        if not array.flags.c_contiguous:
            raise ValueError("allreduce_sum_ needs a C-contiguous array (it reduces in place)")
        import torch
        import torch.distributed as dist

        tensor = torch.from_numpy(array)
        self._count(tag, int(array.size), int(array.nbytes))
        self._call(lambda: dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group),
                   phase or tag)
        return array

    def all_gather_object(self, obj: Any, *, tag: str = "control", phase: str = "") -> list[Any]:
        """Every rank's `obj` (picklable), in rank order; counted as bytes under `tag`."""
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        self._count(tag, 0, len(pickle.dumps(obj)))
        out: list[Any] = [None] * self.world_size
        self._call(lambda: dist.all_gather_object(out, obj, group=self.group), phase or tag)
        return out

    def _call(self, fn: Callable[[], Any], phase: str) -> None:
        try:
            fn()
        except Exception as exc:  # gloo raises RuntimeError / DistBackendError subclasses
            raise self._failure(exc, phase) from exc

    def _failure(self, exc: BaseException, phase: str) -> CommunicationError:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.split(". This is typically caused")[0]  # gloo's generic advice
        if self.monitor is None:
            return CommunicationError(f"collective failed during {phase}: {first}", [], phase)
        lost, reasons = self.monitor.diagnose()
        if lost:
            what = "; ".join(f"rank {r} ({reasons[r]})" for r in lost)
            msg = f"lost {what} during {phase}; stopping (collective error: {first})"
        else:
            msg = (f"collective failed during {phase} but no peer was found "
                   f"dead or silent (heartbeats advancing); a rank may be slower than the "
                   f"timeout - increase timeout ({first})")
        return CommunicationError(msg, lost, phase)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.monitor is not None:
            self.monitor.stop("done")
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def abort(self) -> None:
        """Leave after a failure: mark this rank failed, stop the heartbeat, drop the group
        without further communication."""
        if self._closed:
            return
        self._closed = True
        if self.monitor is not None:
            self.monitor.stop("failed")

    def __enter__(self) -> Comm:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def init_comm(init_method: str | None = None, *, rank: int | None = None,
              world_size: int | None = None, timeout: float = 60.0,
              backend: str = "gloo") -> Comm:
    """Rendezvous, create the default process group and start the heartbeat.

    init_method: None or "env://" reads MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE from
    the environment (what torchrun sets); "file:///path/to/store" with explicit rank and
    world_size (local runs; the file lives in a temporary folder).  A world of one creates
    no process group.  timeout: see the module docstring.
    """
    import torch.distributed as dist

    if backend != "gloo":
        raise ValueError(f"backend={backend!r} is not supported: the engine computes in numpy on "
                         "the CPU, so the collectives use 'gloo'")
    url = init_method or "env://"
    if url.startswith("file://") and (rank is None or world_size is None):
        raise ValueError("a file:// rendezvous needs rank= and world_size=")
    if not url.startswith(("file://", "env://", "tcp://")):
        raise ValueError(f"init_method={init_method!r}: use env:// (torchrun), file:// or tcp://")
    if world_size == 1 and rank in (0, None):
        return Comm(0, 1)
    pg_timeout, interval, stale_after = liveness_timing(float(timeout))
    td = datetime.timedelta(seconds=float(timeout))
    store, r, w = next(dist.rendezvous(url, rank=-1 if rank is None else rank,
                                       world_size=-1 if world_size is None else world_size,
                                       timeout=td))
    store.set_timeout(td)
    if w == 1:
        return Comm(0, 1)
    dist.init_process_group(backend, store=dist.PrefixStore("default_pg", store), rank=r,
                            world_size=w, timeout=datetime.timedelta(seconds=pg_timeout))
    monitor = PeerMonitor(store, r, w, interval=interval, stale_after=stale_after)
    monitor.start()
    return Comm(r, w, monitor=monitor, backend=backend, owns_group=True)
