"""`draw_batch`: one batch X of a training-type task (the low-rank training task of brief
section 1, or the estimation task) from a torch generator.

Samplers of the training task: "exact" calls `tasks.training_batch` (float64 sampling, then
cast); "fast" draws the same distribution directly in the training dtype, X = (R1 Sigma /
sqrt(s)) R2^T with R = [R1; R2] from one randn call (several times faster: the normals
dominate).  Both are deterministic given the generator; they are different streams.  The
estimation task has one sampler (`tasks.estimation.estimation_batch`).
"""

from __future__ import annotations

import torch

from eaglelab.tasks.estimation import EstimationTaskConfig, estimation_batch
from eaglelab.tasks.icl import ICLTaskConfig, draw_icl
from eaglelab.tasks.training import training_batch

__all__ = ["draw_batch"]


def draw_batch(task, batch: int, generator: torch.Generator, *, dtype=torch.float32,
               sampler: str = "fast", out: torch.Tensor | None = None) -> torch.Tensor:
    """One batch X (batch, d + d', n + n') of the task."""
    if isinstance(task, ICLTaskConfig):        # one sampler (float64 numpy, then cast)
        X = draw_icl(task, batch, generator, dtype)
        if out is not None:
            out.copy_(X)
            return out
        return X
    if isinstance(task, EstimationTaskConfig) or sampler == "exact":
        X = (estimation_batch(task, batch, generator, dtype)
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
