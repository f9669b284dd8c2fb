"""Training and evaluation data: seeded per-seed batch streams and the held-out set.

Streams.  Seed s draws its batches from its own CPU generator seeded with
``data_seed(s)``, so the K streams of a vectorised run equal the streams of K single-seed
runs, and a checkpoint stores each generator's state to resume bit for bit.

Samplers (low-rank task of brief section 1).  "exact" calls
`eaglelab.tasks.training_batch` (float64 sampling, then cast; about 23 ms for a batch of
1024 on one core here, more than the model's step).  "fast" draws the same distribution
directly in the training dtype, X = (R1 Sigma / sqrt(s)) R2^T with R = [R1; R2] one randn
call (about 3.6 ms per 1024; the 410k normals dominate).  Both are deterministic given
the seed; they are different streams.

Estimation task (brief section 6): see `EstimationTaskConfig`.

The evaluation set is drawn once per run with the exact float64 sampler from
``eval_seed`` and is the same for every seed of the run.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from eaglelab.tasks.training import training_batch
from eaglelab.train.config import EstimationTaskConfig

__all__ = ["data_seed", "BatchStream", "draw_batch", "evaluation_set", "split_prompt"]


def data_seed(seed: int, stream: int = 1) -> int:
    """The 63-bit generator seed of a data stream (stream 1: training batches)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0] >> 1)


def split_prompt(X: torch.Tensor, d: int, n: int,
                 inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(Z0, D): the prompt with the hidden block zeroed, and the hidden block (a copy).
    inplace=True zeroes the block of X itself and returns X as Z0 (no copy of X)."""
    D = X[..., d:, n:].clone()
    Z0 = X if inplace else X.clone()
    Z0[..., d:, n:] = 0
    return Z0, D


def draw_batch(task, batch: int, generator: torch.Generator, *, dtype=torch.float32,
               sampler: str = "fast", out: torch.Tensor | None = None) -> torch.Tensor:
    """One batch X (batch, d + d', n + n') of the task."""
    if isinstance(task, EstimationTaskConfig) or sampler == "exact":
        X = (_estimation_batch(task, batch, generator, dtype)
             if isinstance(task, EstimationTaskConfig)
             else training_batch(batch, task, generator=generator, dtype=dtype))
        if out is not None:
            out.copy_(X)
            return out
        return X
    T, W, s = task.d + task.d_prime, task.n + task.n_prime, task.s
    R = torch.randn(batch, T + W, s, generator=generator, dtype=dtype)
    scale = task.alpha ** (torch.arange(1, s + 1, dtype=torch.float64) / 2)
    R1 = R[:, :T] * (scale * scale / s**0.5).to(dtype)
    X = torch.bmm(R1, R[:, T:].transpose(1, 2), out=out)
    if task.noise_std > 0:
        X.add_(torch.randn(X.shape, generator=generator, dtype=dtype), alpha=task.noise_std)
    return X


def _estimation_batch(task: EstimationTaskConfig, batch: int, generator: torch.Generator,
                      dtype) -> torch.Tensor:
    d, n = task.d, task.n
    A = torch.randn(batch, d, n, generator=generator, dtype=torch.float64)
    w = torch.randn(batch, 1, d, generator=generator, dtype=torch.float64)
    B = w @ A
    if task.noise_std > 0:
        B = B + task.noise_std * torch.randn(B.shape, generator=generator, dtype=torch.float64)
    C = torch.eye(d, dtype=torch.float64).expand(batch, d, d)
    X = torch.cat([torch.cat([A, C], dim=-1), torch.cat([B, w], dim=-1)], dim=-2)
    return X.to(dtype)


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
    """

    def __init__(self, task, seeds, batch: int, *, dtype=torch.float32,
                 sampler: str = "fast", prefetch: bool = False) -> None:
        self.task, self.batch, self.dtype, self.sampler = task, batch, dtype, sampler
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
