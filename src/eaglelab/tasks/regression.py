"""In-context linear regression as a masked-block completion task (d' = 1).

In the block layout the n columns of [A; B] are the training samples: column j of A is the
feature vector x_j (d = `n_features` entries) and column j of B its response y_j.  The
n' columns of C are query points and D holds their responses:

    X = [ x_1 ... x_n   x_q1 ... ]      A = features (d x n),  C = query features (d x n')
        [ y_1 ... y_n   y_q1 ... ]      B = responses (1 x n), D = query responses (1 x n')

with y = w^T x + noise, w ~ N(0, I_d) drawn per task and x ~ N(0, covariance) (identity by
default).  Noise (standard deviation `noise_std`) is added to the training responses B
only; D holds the true noiseless query response w^T x_q, so D* = B A^+ C is the
least-squares (for n >= d) or minimum-norm (for n < d) prediction and equals D exactly when
the data are noiseless and n >= d.  The scalar-prediction case of the paper is
``n_queries = 1`` (d' = n' = 1).
"""

from __future__ import annotations

import numpy as np
import torch

from eaglelab.tasks._checks import check_float, check_int, np_rng, seed_record
from eaglelab.tasks.blocks import BlockProblem

__all__ = ["regression_batch", "regression_problem"]


def _covariance_factor(covariance, d: int) -> np.ndarray | None:
    """A factor L with L L^T = covariance (symmetric PSD, d x d), or None for the identity."""
    if covariance is None:
        return None
    if isinstance(covariance, torch.Tensor):
        covariance = covariance.detach().cpu().numpy()
    S = np.asarray(covariance, dtype=np.float64)
    if S.shape != (d, d):
        raise ValueError(
            f"covariance must have shape ({d}, {d}) = (n_features, n_features), got {S.shape}"
        )
    if not np.all(np.isfinite(S)):
        raise ValueError("covariance must be finite")
    if not np.allclose(S, S.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(S).max())):
        raise ValueError("covariance must be symmetric")
    evals, evecs = np.linalg.eigh(S)
    if evals.min() < -1e-10 * max(1.0, evals.max()):
        raise ValueError(
            f"covariance must be positive semidefinite (min eigenvalue {evals.min():.3g})"
        )
    return evecs * np.sqrt(np.clip(evals, 0.0, None))


def _validate(n_samples, n_features, n_queries, noise_std) -> tuple[int, int, int, float]:
    return (
        check_int("n_samples", n_samples),
        check_int("n_features", n_features),
        check_int("n_queries", n_queries),
        check_float("noise_std", noise_std, low=0.0),
    )


def regression_batch(
    batch: int,
    n_samples: int,
    n_features: int,
    *,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    covariance: np.ndarray | torch.Tensor | None = None,
    n_queries: int = 1,
) -> torch.Tensor:
    """A batch of in-context linear regression tasks in the block layout.

    Parameters
    ----------
    batch : int
        Number of tasks (>= 1).
    n_samples : int
        Number n of training samples (columns of A and B).
    n_features : int
        Number d of features (rows of A and C).
    noise_std : float
        Standard deviation of the Gaussian noise on the training responses B.
    generator : torch.Generator, optional
        CPU generator; None uses torch's global RNG.
    dtype : torch.dtype
        Output dtype; sampling is done in float64 and then cast.
    device : torch.device or str
        Output device.
    covariance : array_like, optional
        Feature covariance (n_features x n_features, symmetric positive semidefinite);
        default the identity.
    n_queries : int
        Number n' of query columns (default 1, the scalar-prediction task).

    Returns
    -------
    torch.Tensor
        Shape (batch, n_features + 1, n_samples + n_queries); the bottom-right block holds
        the noiseless query responses.
    """
    batch = check_int("batch", batch)
    n, d, nq, noise_std = _validate(n_samples, n_features, n_queries, noise_std)
    L = _covariance_factor(covariance, d)
    feats = torch.randn(batch, d, n + nq, generator=generator, dtype=torch.float64)
    if L is not None:
        feats = torch.from_numpy(L) @ feats
    w = torch.randn(batch, 1, d, generator=generator, dtype=torch.float64)
    y = w @ feats
    if noise_std > 0:
        y[..., :n] += noise_std * torch.randn(batch, 1, n, generator=generator, dtype=torch.float64)
    return torch.cat([feats, y], dim=-2).to(dtype=dtype, device=device)


def regression_problem(
    n_samples: int,
    n_features: int,
    *,
    noise_std: float = 0.0,
    seed: int | np.random.Generator | None = None,
    covariance: np.ndarray | None = None,
    n_queries: int = 1,
) -> BlockProblem:
    """One float64 regression task as a `BlockProblem` (see `regression_batch`).

    Parameters
    ----------
    n_samples, n_features, noise_std, covariance, n_queries
        As in `regression_batch`.
    seed : int or numpy.random.Generator, optional
        Seed for ``numpy.random.default_rng``.

    Returns
    -------
    BlockProblem
        A = features, B = noisy responses, C = query features, D = noiseless query
        responses; ``meta["w"]`` is the true weight vector (shape (1, n_features)).
    """
    n, d, nq, noise_std = _validate(n_samples, n_features, n_queries, noise_std)
    L = _covariance_factor(covariance, d)
    rng = np_rng(seed)
    feats = rng.standard_normal((d, n + nq))
    if L is not None:
        feats = L @ feats
    w = rng.standard_normal((1, d))
    y = w @ feats
    if noise_std > 0:
        y[:, :n] += noise_std * rng.standard_normal((1, n))
    meta = {
        "generator": "regression",
        "n_samples": n,
        "n_features": d,
        "n_queries": nq,
        "noise_std": noise_std,
        "seed": seed_record(seed),
        "w": w,
        "covariance": None if covariance is None else np.asarray(covariance, dtype=np.float64),
    }
    return BlockProblem(A=feats[:, :n], B=y[:, :n], C=feats[:, n:], D=y[:, n:], meta=meta)
