"""Per-prompt scale: a cheap estimate of ||A|| and the rescaling that brings it to a target.

A masked-block task is homogeneous: scaling the prompt [[A, C], [B, 0]] by c > 0 scales
the Nystrom answer B A^+ C by c.  A model with fixed learned steps is tuned to the scale of
its training prompts (the steps are eta_l / N_l with N_l a batch-max ||A_l||_2^2), so a
prompt whose ||A||_2 lies well above that scale can make the cubic A-update diverge.
Per-prompt normalisation (ours, an option; the paper's recipe has none) multiplies every
prompt by c = target / estimate(A) before the model and divides the prediction by c.

Estimates (`METHODS`), both held constant in a gradient (computed without autograd):

- "frobenius": ||A||_F (one pass; between ||A||_2 and sqrt(rank) ||A||_2);
- "power": `POWER_ITERATIONS` steps of power iteration on A^T A from the all-ones start
  vector, sqrt of the Rayleigh quotient (a lower bound on ||A||_2 that converges to it; on
  tasks with a small spectral gap it can stay well below, so a normalised prompt's ||A||_2
  can exceed the target - the Frobenius estimate never lets it).

`training_median(task, method)` is the target that matches a model trained without
normalisation: the median estimate over a fixed draw of its training distribution.
"""

from __future__ import annotations

import torch

__all__ = ["METHODS", "POWER_ITERATIONS", "norm_estimate", "prompt_scale", "training_median"]

METHODS = ("none", "frobenius", "power")
POWER_ITERATIONS = 8
MEDIAN_DRAW = (4096, 97531)          # size and seed of the draw behind training_median


def norm_estimate(A: torch.Tensor, method: str) -> torch.Tensor:
    """The estimate of ||A|| per matrix of A (..., d, n), shape (...) (no gradient)."""
    if method not in METHODS[1:]:
        raise ValueError(f"norm estimate {method!r} is not known; use one of {METHODS[1:]}")
    with torch.no_grad():
        A = A.detach()
        if method == "frobenius":
            return torch.linalg.matrix_norm(A)
        v = torch.ones(*A.shape[:-2], A.shape[-1], 1, dtype=A.dtype, device=A.device)
        for _ in range(POWER_ITERATIONS):
            v = A.transpose(-1, -2) @ (A @ v)
            v = v / torch.linalg.vector_norm(v, dim=-2, keepdim=True).clamp_min(1e-300)
        return torch.linalg.vector_norm(A @ v, dim=(-2, -1))


def prompt_scale(Z0: torch.Tensor, d: int, n: int, method: str, target: float) -> torch.Tensor:
    """c (...,) with estimate(c A) = target for prompts Z0 (..., d + d', n + n'); 1 where the
    estimate is zero (an all-zero A) and everywhere for method "none"."""
    if method == "none":
        return torch.ones(Z0.shape[:-2], dtype=Z0.dtype, device=Z0.device)
    if not target > 0:
        raise ValueError(f"normalisation target must be positive, got {target}")
    est = norm_estimate(Z0[..., :d, :n], method)
    return torch.where(est > 0, target / est.clamp_min(1e-300), torch.ones_like(est))


def training_median(task, method: str) -> float:
    """The median estimate over a fixed draw of `task`'s training distribution (a
    `TrainingTaskConfig`), the target under which a normalised prompt looks typical."""
    from eaglelab.tasks.training import training_batch

    size, seed = MEDIAN_DRAW
    X = training_batch(size, task, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)
    return float(norm_estimate(X[:, :task.d, :task.n], method).median())
