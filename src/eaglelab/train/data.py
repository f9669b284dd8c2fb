"""Training and evaluation data: seeded per-seed batch streams and the held-out set.

Streams.  Seed s draws its batches from its own CPU generator seeded with
``data_seed(s)``, so the K streams of a vectorised run equal the streams of K single-seed
runs, and a checkpoint stores each generator's state to resume bit for bit.

The batches themselves come from `eaglelab.tasks.sampling.draw_batch` (the "exact" and
"fast" samplers of the training task, and the estimation task).

The evaluation set is drawn once per run with the exact float64 sampler from
``eval_seed`` and is the same for every seed of the run.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from eaglelab.tasks.blocks import split_prompt
from eaglelab.tasks.sampling import draw_batch

__all__ = ["data_seed", "BatchStream", "draw_batch", "evaluation_set", "split_prompt"]


def data_seed(seed: int, stream: int = 1) -> int:
    """The 63-bit generator seed of a data stream (stream 1: training batches)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0] >> 1)


def evaluation_set(task, size: int, eval_seed: int, dtype=torch.float32) -> torch.Tensor:
    """The run's fixed held-out set X (size, T, W), exact float64 sampling then cast."""
    gen = torch.Generator().manual_seed(data_seed(eval_seed, 2))
    return draw_batch(task, size, gen, dtype=dtype, sampler="exact")


class BatchStream:
    """Per-seed batch streams: `next()` returns X (K, batch, T, W), row k from seed k.

    prefetch=True draws the next batch in a background thread while the caller trains on
    the current one (the draw releases the GIL).  The stream is the same either way;
    `get_state` returns the generator states *before* the batch not yet handed out, so a
    checkpoint resumes exactly where the consumer stopped.

    device: where the batches are handed out.  They are drawn on the CPU by the seeds'
    CPU generators whatever the device (then copied, pinned and asynchronously), so a
    seed's data stream is the same on every device and a checkpoint moves between them.
    """

    def __init__(self, task, seeds, batch: int, *, dtype=torch.float32,
                 sampler: str = "fast", prefetch: bool = False, device=None) -> None:
        self.task, self.batch, self.dtype, self.sampler = task, batch, dtype, sampler
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.generators = [torch.Generator().manual_seed(data_seed(s)) for s in seeds]
        T = task.d + task.d_prime
        W = task.n + task.n_prime
        self.shape = (len(self.generators), batch, T, W)
        self._executor = ThreadPoolExecutor(max_workers=1) if prefetch else None
        self._pending: Future | None = None

    def _draw(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        states = [g.get_state() for g in self.generators]
        X = torch.empty(self.shape, dtype=self.dtype)
        for k, g in enumerate(self.generators):
            draw_batch(self.task, self.batch, g, dtype=self.dtype, sampler=self.sampler,
                       out=X[k])
        if self.device.type != "cpu":
            X = X.pin_memory().to(self.device, non_blocking=True)
        return states, X

    def next(self) -> torch.Tensor:
        if self._executor is None:
            return self._draw()[1]
        if self._pending is None:
            self._pending = self._executor.submit(self._draw)
        _, X = self._pending.result()
        self._pending = self._executor.submit(self._draw)
        return X

    def get_state(self) -> list[torch.Tensor]:
        if self._pending is not None:
            return [s.clone() for s in self._pending.result()[0]]
        return [g.get_state() for g in self.generators]

    def set_state(self, states: list[torch.Tensor]) -> None:
        if len(states) != len(self.generators):
            raise ValueError(f"{len(states)} generator states for {len(self.generators)} seeds")
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        for g, s in zip(self.generators, states, strict=True):
            g.set_state(s)

    def close(self) -> None:
        if self._executor is not None:
            if self._pending is not None:
                self._pending.result()
                self._pending = None
            self._executor.shutdown(wait=True)
            self._executor = None
