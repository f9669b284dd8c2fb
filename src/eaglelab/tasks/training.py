"""The paper's training distribution (brief section 1, "Training data").

R1 in R^{(d+d') x s} and R2 in R^{(n+n') x s} have i.i.d. rows N(0, Sigma) with
Sigma = diag(alpha^1, ..., alpha^s); X = R1 R2^T / sqrt(s), optionally plus i.i.d.
Gaussian noise of standard deviation `noise_std`.  Rank(X) <= s, and with s < min(d, n)
the completion is noiseless: D = B A^+ C exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

__all__ = ["TrainingTaskConfig", "training_batch"]


@dataclass(frozen=True)
class TrainingTaskConfig:
    n: int = 18
    d: int = 18
    n_prime: int = 2
    d_prime: int = 2
    s: int = 10
    alpha: float = 0.7
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n", "d", "n_prime", "d_prime", "s"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"TrainingTaskConfig.{name} must be >= 1, got {getattr(self, name)}"
                )
        if not 0 < self.alpha <= 1:
            raise ValueError(f"TrainingTaskConfig.alpha must lie in (0, 1], got {self.alpha}")
        if self.noise_std < 0:
            raise ValueError(f"TrainingTaskConfig.noise_std must be >= 0, got {self.noise_std}")

    def to_dict(self) -> dict:
        return asdict(self)


def training_batch(
    batch: int,
    config: TrainingTaskConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Draw `batch` matrices X of shape (batch, d + d', n + n') from the training distribution.

    Sampling happens in float64 on the CPU generator and is then cast, so the same seed gives
    the same problems whatever dtype/device is requested.
    """
    cfg = config or TrainingTaskConfig()
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    scale = cfg.alpha ** (torch.arange(1, cfg.s + 1, dtype=torch.float64) / 2)
    R1 = torch.randn(batch, cfg.d + cfg.d_prime, cfg.s, generator=generator, dtype=torch.float64)
    R2 = torch.randn(batch, cfg.n + cfg.n_prime, cfg.s, generator=generator, dtype=torch.float64)
    X = (R1 * scale) @ (R2 * scale).transpose(-1, -2) / cfg.s**0.5
    if cfg.noise_std > 0:
        X = X + cfg.noise_std * torch.randn(X.shape, generator=generator, dtype=torch.float64)
    return X.to(dtype=dtype, device=device)
