"""The least-squares estimation task of Appendix D (brief section 6) in the block layout:
A (d x n) Gaussian features, w (1 x d) Gaussian weights, B = w A (+ noise), C = I_d and the
hidden block D = w, so a prediction of D estimates W* = B A^+."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

__all__ = ["EstimationTaskConfig", "estimation_batch"]


@dataclass(frozen=True)
class EstimationTaskConfig:
    """Least-squares parameter estimation (brief section 6): A (d x n) Gaussian features,
    w (1 x d) Gaussian weights, B = w A (+ noise), C = I_d and D = w, so the model's
    prediction of D is an estimate of W* = B A^+ (exact for noise_std = 0 and n >= d)."""

    n: int = 18
    d: int = 6
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n", "d"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"task.{name} must be a positive integer, got {v!r}")
        if not self.noise_std >= 0:
            raise ValueError(f"task.noise_std must be >= 0, got {self.noise_std}")

    @property
    def n_prime(self) -> int:
        return self.d

    @property
    def d_prime(self) -> int:
        return 1

    def to_dict(self) -> dict:
        return asdict(self)


def estimation_batch(task: EstimationTaskConfig, batch: int, generator: torch.Generator | None,
                     dtype=torch.float32) -> torch.Tensor:
    """X (batch, d + 1, n + d): float64 sampling (A, then w, then the noise), then cast."""
    d, n = task.d, task.n
    A = torch.randn(batch, d, n, generator=generator, dtype=torch.float64)
    w = torch.randn(batch, 1, d, generator=generator, dtype=torch.float64)
    B = w @ A
    if task.noise_std > 0:
        B = B + task.noise_std * torch.randn(B.shape, generator=generator, dtype=torch.float64)
    C = torch.eye(d, dtype=torch.float64).expand(batch, d, d)
    X = torch.cat([torch.cat([A, C], dim=-1), torch.cat([B, w], dim=-1)], dim=-2)
    return X.to(dtype)


