"""The one Haar sampler: orthonormal columns uniformly distributed on the Stiefel manifold,
as the QR factor of a Gaussian matrix with the signs of R's diagonal fixed to +1 (without
the sign fix QR's output is not Haar).  numpy for the solvers' problems, torch for batched
training data; both draw the Gaussian matrix first and nothing else, so a generator's
stream is consumed exactly as by one standard_normal / randn call of that shape."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["haar", "haar_batch"]


def haar(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) float64 with orthonormal columns (cols <= rows), Haar-distributed."""
    Q, R = np.linalg.qr(rng.standard_normal((rows, cols)))
    return Q * np.where(np.diagonal(R) < 0, -1.0, 1.0)


def haar_batch(gen: torch.Generator | None, batch: int, rows: int, cols: int) -> torch.Tensor:
    """(batch, rows, cols) float64, each with Haar-distributed orthonormal columns."""
    Q, R = torch.linalg.qr(torch.randn(batch, rows, cols, generator=gen, dtype=torch.float64))
    signs = torch.where(torch.diagonal(R, dim1=-2, dim2=-1) < 0, -1.0, 1.0)
    return Q * signs.unsqueeze(-2)
