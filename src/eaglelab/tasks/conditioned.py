"""Completion problems with a prescribed condition number (SVD construction).

The visible block is built from its singular value decomposition in float64,

    A = U diag(sigma) V^T,   U: d x r,  V: n x r  (Haar-random orthonormal columns),

with r = `rank` and singular values running from 1 down to 1/kappa, so that the condition
number of A over its nonzero spectrum is exactly kappa (up to rounding).  The other blocks
are chosen so the problem is noiseless, rank([A C; B D]) = rank(A):

    B = W A,   C = A G,   D = W A G = B A^+ C,

with W (d' x d) and G (n x n') i.i.d. Gaussian, scaled by 1/sqrt(d) and 1/sqrt(n) so the
rows of B and the columns of C have the same typical size as those of A.  These are the
problems of the solver experiments (brief section 5: kappa sweeps and a rank-deficient
case).  Optional i.i.d. Gaussian noise is added to every block of X (including D), after
which the problem is no longer exactly noiseless and cond(A) is no longer exactly kappa.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from eaglelab.tasks._checks import (
    check_choice,
    check_float,
    check_int,
    finish,
    np_rng,
    seed_record,
)
from eaglelab.tasks.blocks import BlockProblem, assemble
from eaglelab.tasks.haar import haar, haar_batch

__all__ = [
    "SINGULAR_VALUE_LAWS",
    "conditioned_batch",
    "conditioned_problem",
    "singular_value_profile",
]

SINGULAR_VALUE_LAWS: tuple[str, ...] = ("geometric", "loguniform")

SingularValueLaw = Literal["geometric", "loguniform"]


def _validate(
    n: int,
    d: int,
    n_prime: int,
    d_prime: int,
    kappa: float,
    rank: int | None,
    law: str,
    noise_std: float,
) -> tuple[int, int, int, int, float, int, str, float]:
    n = check_int("n", n)
    d = check_int("d", d)
    n_prime = check_int("n_prime", n_prime)
    d_prime = check_int("d_prime", d_prime)
    kappa = check_float("kappa", kappa, low=1.0)
    rank = min(n, d) if rank is None else check_int("rank", rank, 1, min(n, d))
    if rank == 1 and kappa != 1.0:
        raise ValueError(f"kappa must be 1 when rank == 1 (one singular value), got {kappa}")
    law = check_choice("singular_values", law, SINGULAR_VALUE_LAWS)
    noise_std = check_float("noise_std", noise_std, low=0.0)
    return n, d, n_prime, d_prime, kappa, rank, law, noise_std


def singular_value_profile(
    rank: int,
    kappa: float,
    law: SingularValueLaw = "geometric",
    *,
    uniforms: np.ndarray | None = None,
) -> np.ndarray:
    """Singular values from 1 down to 1/kappa, in decreasing order.

    Parameters
    ----------
    rank : int
        Number of singular values (>= 1).  With ``rank == 1`` the result is ``[1.0]``.
    kappa : float
        Ratio of the largest to the smallest value (finite, >= 1).
    law : {"geometric", "loguniform"}
        ``"geometric"``: ``np.geomspace(1, 1/kappa, rank)``, both endpoints included.
        ``"loguniform"``: the endpoints 1 and 1/kappa are kept, so the ratio is exactly
        kappa, and the ``rank - 2`` interior values are log-uniform on [1/kappa, 1].
    uniforms : ndarray, optional
        Array of shape ``(..., rank - 2)`` with entries in [0, 1] placing the interior
        log-uniform values (value ``kappa ** -u``); required for ``"loguniform"`` when
        ``rank > 2``.  Its leading shape becomes the batch shape of the result (for
        ``"geometric"`` the profile is broadcast to it).

    Returns
    -------
    ndarray
        float64 array of shape ``(..., rank)``, decreasing along the last axis.
    """
    rank = check_int("rank", rank)
    kappa = check_float("kappa", kappa, low=1.0)
    law = check_choice("law", law, SINGULAR_VALUE_LAWS)
    lead = () if uniforms is None else np.shape(uniforms)[:-1]
    if law == "geometric" or rank <= 2:
        sigma = np.geomspace(1.0, 1.0 / kappa, rank)
        return np.broadcast_to(sigma, (*lead, rank)).copy()
    if uniforms is None or np.shape(uniforms)[-1] != rank - 2:
        raise ValueError(f"uniforms must have last dimension rank - 2 = {rank - 2}")
    u = np.sort(np.clip(np.asarray(uniforms, dtype=np.float64), 0.0, 1.0), axis=-1)
    edges = np.ones((*lead, 1))
    fractions = np.concatenate([0.0 * edges, u, edges], axis=-1)
    return np.exp(-math.log(kappa) * fractions)


def conditioned_problem(
    n: int,
    d: int,
    n_prime: int = 2,
    d_prime: int = 2,
    *,
    kappa: float = 1e2,
    rank: int | None = None,
    seed: int | np.random.Generator | None = None,
    noise_std: float = 0.0,
    singular_values: SingularValueLaw = "geometric",
) -> BlockProblem:
    """One float64 completion problem whose A has condition number `kappa`.

    Parameters
    ----------
    n, d : int
        A is d x n (n samples with d features).
    n_prime, d_prime : int
        C is d x n', B is d' x n, D is d' x n'.
    kappa : float
        Condition number of A over its nonzero spectrum (finite, >= 1).
    rank : int, optional
        Rank of A, in [1, min(n, d)]; default min(n, d).  A smaller value gives a
        rank-deficient A.
    seed : int or numpy.random.Generator, optional
        Seed for ``numpy.random.default_rng``; None draws fresh entropy.
    noise_std : float
        Standard deviation of i.i.d. Gaussian noise added to all four blocks (default 0).
    singular_values : {"geometric", "loguniform"}
        Spacing of the singular values between 1 and 1/kappa (see `singular_value_profile`).

    Returns
    -------
    BlockProblem
        Blocks A, B, C and the true D; ``meta`` records the generator name, sizes, kappa,
        rank, seed, noise level, the spacing law and the singular values ``sigma``.

    Raises
    ------
    ValueError
        If a size is < 1, kappa is not finite or < 1 (or != 1 with rank 1), rank is outside
        [1, min(n, d)], noise_std < 0, or the spacing law is unknown.
    """
    n, d, n_prime, d_prime, kappa, rank, law, noise_std = _validate(
        n, d, n_prime, d_prime, kappa, rank, singular_values, noise_std
    )
    rng = np_rng(seed)
    U = haar(rng, d, rank)
    V = haar(rng, n, rank)
    uniforms = rng.random(max(rank - 2, 0)) if law == "loguniform" else None
    sigma = singular_value_profile(rank, kappa, law, uniforms=uniforms)
    A = (U * sigma) @ V.T
    W = rng.standard_normal((d_prime, d)) / math.sqrt(d)
    G = rng.standard_normal((n, n_prime)) / math.sqrt(n)
    B = W @ A
    C = A @ G
    D = W @ C
    if noise_std > 0:
        X = assemble(A, B, C, D) + noise_std * rng.standard_normal((d + d_prime, n + n_prime))
        A, B, C, D = X[:d, :n], X[d:, :n], X[:d, n:], X[d:, n:]
    meta = {
        "generator": "conditioned",
        "n": n,
        "d": d,
        "n_prime": n_prime,
        "d_prime": d_prime,
        "kappa": kappa,
        "rank": rank,
        "seed": seed_record(seed),
        "noise_std": noise_std,
        "singular_values": law,
        "sigma": sigma,
    }
    return BlockProblem(A=A, B=B, C=C, D=D, meta=meta)


def conditioned_batch(
    batch: int,
    n: int,
    d: int,
    n_prime: int = 2,
    d_prime: int = 2,
    *,
    kappa: float = 1e2,
    rank: int | None = None,
    noise_std: float = 0.0,
    singular_values: SingularValueLaw = "geometric",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A batch of conditioned problems as full matrices X, shape (batch, d + d', n + n').

    Same construction as `conditioned_problem`, drawn independently per batch item with
    torch's generator.  Sampling happens in float64 on the CPU and is then cast, so a given
    seed yields the same problems (up to rounding) in every dtype and on every device.

    Parameters
    ----------
    batch : int
        Number of problems (>= 1).
    n, d, n_prime, d_prime, kappa, rank, noise_std, singular_values
        As in `conditioned_problem`.
    generator : torch.Generator, optional
        CPU generator; None uses torch's global RNG.
    dtype : torch.dtype
        Output dtype (default float32).
    device : torch.device or str
        Output device.

    Returns
    -------
    torch.Tensor
        X = [[A, C], [B, D]] with the true D in the bottom-right block.
    """
    batch = check_int("batch", batch)
    n, d, n_prime, d_prime, kappa, rank, law, noise_std = _validate(
        n, d, n_prime, d_prime, kappa, rank, singular_values, noise_std
    )
    U = haar_batch(generator, batch, d, rank)
    V = haar_batch(generator, batch, n, rank)
    if law == "loguniform" and rank > 2:
        u = torch.rand(batch, rank - 2, generator=generator, dtype=torch.float64).numpy()
    else:
        u = np.zeros((batch, max(rank - 2, 0)))
    sigma = torch.from_numpy(singular_value_profile(rank, kappa, law, uniforms=u))
    A = (U * sigma.unsqueeze(-2)) @ V.transpose(-1, -2)
    W = torch.randn(batch, d_prime, d, generator=generator, dtype=torch.float64) / math.sqrt(d)
    G = torch.randn(batch, n, n_prime, generator=generator, dtype=torch.float64) / math.sqrt(n)
    B = W @ A
    C = A @ G
    X = assemble(A, B, C, W @ C)
    return finish(X, noise_std, generator, dtype, device)
