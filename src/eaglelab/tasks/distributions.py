"""The data distributions of the paper's ablations, as batched seeded torch generators.

Every distribution returns full matrices X = [[A, C], [B, D]] of shape
(batch, d + d', n + n') and rank at most ``s``, so that for ``s <= min(d, n)`` the
completion is generically noiseless (D = B A^+ C).  Unless stated otherwise X is built
from two factor matrices,

    X = F1 F2^T / sqrt(s),   F1: (d + d') x s,   F2: (n + n') x s,

whose entries (or rows) follow the named law:

=======================  ===============================================================
name                     construction (parameters and defaults)
=======================  ===============================================================
``"paper"``              the training distribution, `eaglelab.tasks.training_batch`
                         (``alpha=0.7``: rows N(0, diag(alpha^1..alpha^s)))
``"svd_loguniform"``     X = U diag(sigma) V^T with Haar U, V (s columns) and sigma
                         i.i.d. log-uniform on [``smin``, ``smax``] = [1e-2, 1]; no
                         1/sqrt(s) factor (the spectrum is the specification)
``"student_t"``          i.i.d. Student-t factor entries, ``nu=4``
``"gaussian"``           i.i.d. N(0, 1) factor entries (isotropic)
``"correlated_gaussian"``  factor rows N(0, Sigma), Sigma_ij = ``rho`` ^ abs(i - j),
                         ``rho=0.8``
``"sparse_rademacher"``  factor entries 0 w.p. 1 - p and +1 or -1 w.p. p/2 each,
                         ``p=0.1``; batch items whose A block is all zero are redrawn
``"clustered"``          each factor row is one of ``k=5`` Gaussian N(0, I_s) cluster
                         centres (chosen uniformly, i.e. a one-hot assignment times the
                         centre matrix) plus N(0, ``cluster_noise`` ^ 2 I_s) noise,
                         ``cluster_noise=0.1``; F1 and F2 have their own centres
=======================  ===============================================================

Noiselessness: for s <= min(d, n) the dense laws give rank(A) = rank(X) = s almost surely,
so D = B A^+ C.  Sparse Rademacher factors are different: with p = 0.1 a factor column is
zero on all d rows of A with probability 0.9^d (about 15% for d = 18), and then rank(A) <
rank(X) and D is NOT determined by the visible blocks (D != B A^+ C for that item).  This
is the construction as specified and is kept; evaluate such items against the Nystrom
reference D* or accept the irreducible error.

Optional i.i.d. Gaussian noise of standard deviation ``noise_std`` is added to all of X.
Sampling always happens in float64 on the CPU (torch generator) and the result is cast
afterwards, so a given seed yields the same problems in every dtype and on every device.
Samplers that need laws torch cannot draw from a generator (Student-t) take a numpy seed
from the torch generator, which keeps them reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from eaglelab.tasks._checks import check_choice, check_float, check_int, check_params, finish
from eaglelab.tasks.haar import haar_batch
from eaglelab.tasks.training import TrainingTaskConfig, training_batch

__all__ = ["DISTRIBUTIONS", "default_params", "sample"]

_MAX_REDRAWS = 1000


def _factors_product(F1: torch.Tensor, F2: torch.Tensor, s: int) -> torch.Tensor:
    return F1 @ F2.transpose(-1, -2) / math.sqrt(s)


def _svd_loguniform(
    gen: torch.Generator | None,
    batch: int,
    rows: int,
    cols: int,
    s: int,
    d: int,
    n: int,
    *,
    smin: float,
    smax: float,
) -> torch.Tensor:
    smin = check_float("smin", smin, low=0.0, low_open=True)
    smax = check_float("smax", smax, low=smin)
    r = min(s, rows, cols)

    U, V = haar_batch(gen, batch, rows, r), haar_batch(gen, batch, cols, r)
    u = torch.rand(batch, r, generator=gen, dtype=torch.float64)
    sigma = torch.exp(math.log(smin) + u * (math.log(smax) - math.log(smin)))
    return (U * sigma.unsqueeze(-2)) @ V.transpose(-1, -2)


def _student_t(
    gen: torch.Generator | None,
    batch: int,
    rows: int,
    cols: int,
    s: int,
    d: int,
    n: int,
    *,
    nu: float,
) -> torch.Tensor:
    nu = check_float("nu", nu, low=0.0, low_open=True)
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    rng = np.random.default_rng(seed)
    F1 = torch.from_numpy(rng.standard_t(nu, size=(batch, rows, s)))
    F2 = torch.from_numpy(rng.standard_t(nu, size=(batch, cols, s)))
    return _factors_product(F1, F2, s)


def _gaussian(
    gen: torch.Generator | None, batch: int, rows: int, cols: int, s: int, d: int, n: int
) -> torch.Tensor:
    F1 = torch.randn(batch, rows, s, generator=gen, dtype=torch.float64)
    F2 = torch.randn(batch, cols, s, generator=gen, dtype=torch.float64)
    return _factors_product(F1, F2, s)


def _correlated_gaussian(
    gen: torch.Generator | None,
    batch: int,
    rows: int,
    cols: int,
    s: int,
    d: int,
    n: int,
    *,
    rho: float,
) -> torch.Tensor:
    rho = check_float("rho", rho, low=-1.0, high=1.0, low_open=True, high_open=True)
    idx = torch.arange(s, dtype=torch.float64)
    sigma = rho ** (idx[:, None] - idx[None, :]).abs()
    L = torch.linalg.cholesky(sigma)
    F1 = torch.randn(batch, rows, s, generator=gen, dtype=torch.float64) @ L.T
    F2 = torch.randn(batch, cols, s, generator=gen, dtype=torch.float64) @ L.T
    return _factors_product(F1, F2, s)


def _rademacher_factors(
    gen: torch.Generator | None, batch: int, m: int, s: int, p: float
) -> torch.Tensor:
    u = torch.rand(batch, m, s, generator=gen, dtype=torch.float64)
    return (u < p / 2).to(torch.float64) - ((u >= p / 2) & (u < p)).to(torch.float64)


def _sparse_rademacher(
    gen: torch.Generator | None,
    batch: int,
    rows: int,
    cols: int,
    s: int,
    d: int,
    n: int,
    *,
    p: float,
) -> torch.Tensor:
    p = check_float("p", p, low=0.0, high=1.0, low_open=True)

    def draw(b: int) -> torch.Tensor:
        F1 = _rademacher_factors(gen, b, rows, s, p)
        F2 = _rademacher_factors(gen, b, cols, s, p)
        return _factors_product(F1, F2, s)

    X = draw(batch)
    for _ in range(_MAX_REDRAWS):
        zero = (X[:, :d, :n] == 0).all(dim=-1).all(dim=-1)
        if not bool(zero.any()):
            return X
        X[zero] = draw(int(zero.sum()))
    raise RuntimeError(
        f"sparse_rademacher: A stayed all-zero after {_MAX_REDRAWS} redraws; increase p or s"
    )


def _clustered(
    gen: torch.Generator | None,
    batch: int,
    rows: int,
    cols: int,
    s: int,
    d: int,
    n: int,
    *,
    k: int,
    cluster_noise: float,
) -> torch.Tensor:
    k = check_int("k", k)
    cluster_noise = check_float("cluster_noise", cluster_noise, low=0.0)

    def factors(m: int) -> torch.Tensor:
        centres = torch.randn(batch, k, s, generator=gen, dtype=torch.float64)
        labels = torch.randint(0, k, (batch, m), generator=gen)
        onehot = torch.nn.functional.one_hot(labels, k).to(torch.float64)
        noise = torch.randn(batch, m, s, generator=gen, dtype=torch.float64)
        return onehot @ centres + cluster_noise * noise

    return _factors_product(factors(rows), factors(cols), s)


_Sampler = Callable[..., torch.Tensor]

_REGISTRY: dict[str, tuple[_Sampler | None, dict[str, Any]]] = {
    "paper": (None, {"alpha": 0.7}),
    "svd_loguniform": (_svd_loguniform, {"smin": 1e-2, "smax": 1.0}),
    "student_t": (_student_t, {"nu": 4.0}),
    "gaussian": (_gaussian, {}),
    "correlated_gaussian": (_correlated_gaussian, {"rho": 0.8}),
    "sparse_rademacher": (_sparse_rademacher, {"p": 0.1}),
    "clustered": (_clustered, {"k": 5, "cluster_noise": 0.1}),
}

DISTRIBUTIONS: tuple[str, ...] = tuple(_REGISTRY)
"""Names accepted by `sample`: ``"paper"`` and the six ablation distributions."""


def default_params(distribution: str) -> dict[str, Any]:
    """The distribution-specific parameters of `distribution` and their defaults.

    Parameters
    ----------
    distribution : str
        One of `DISTRIBUTIONS`.

    Returns
    -------
    dict
        A fresh dict, e.g. ``{"p": 0.1}`` for ``"sparse_rademacher"``.
    """
    check_choice("distribution", distribution, DISTRIBUTIONS)
    return dict(_REGISTRY[distribution][1])


def sample(
    distribution: str,
    batch: int,
    *,
    n: int = 18,
    d: int = 18,
    n_prime: int = 2,
    d_prime: int = 2,
    s: int = 10,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    **params: Any,
) -> torch.Tensor:
    """Draw a batch of full matrices X from a named distribution.

    Parameters
    ----------
    distribution : str
        One of `DISTRIBUTIONS` (see the module docstring for the constructions).
    batch : int
        Number of matrices (>= 1).
    n, d, n_prime, d_prime : int
        Block sizes: A is d x n, C is d x n', B is d' x n, D is d' x n'.
    s : int
        Factor width; rank(X) <= s.
    noise_std : float
        Standard deviation of i.i.d. Gaussian noise added to all of X (default 0).
    generator : torch.Generator, optional
        CPU generator; None uses torch's global RNG.
    dtype : torch.dtype
        Output dtype (default float32); sampling is done in float64 and then cast.
    device : torch.device or str
        Output device.
    **params
        Distribution-specific parameters overriding `default_params` (``alpha``, ``smin``,
        ``smax``, ``nu``, ``rho``, ``p``, ``k``, ``cluster_noise``).

    Returns
    -------
    torch.Tensor
        Shape (batch, d + d', n + n'), the true D in the bottom-right block.

    Raises
    ------
    ValueError
        Unknown distribution name (the message lists the valid ones), unknown parameter,
        or an out-of-range size or parameter (the message names it).
    """
    distribution = check_choice("distribution", distribution, DISTRIBUTIONS)
    sampler, defaults = _REGISTRY[distribution]
    check_params(f"distribution {distribution!r}", params, tuple(defaults))
    batch = check_int("batch", batch)
    n, d = check_int("n", n), check_int("d", d)
    n_prime, d_prime = check_int("n_prime", n_prime), check_int("d_prime", d_prime)
    s = check_int("s", s)
    noise_std = check_float("noise_std", noise_std, low=0.0)
    kwargs = {**defaults, **params}
    if sampler is None:  # "paper"
        alpha = check_float("alpha", kwargs["alpha"], low=0.0, high=1.0, low_open=True)
        cfg = TrainingTaskConfig(
            n=n, d=d, n_prime=n_prime, d_prime=d_prime, s=s, alpha=alpha, noise_std=noise_std
        )
        return training_batch(batch, cfg, generator=generator, dtype=dtype, device=device)
    X = sampler(generator, batch, d + d_prime, n + n_prime, s, d, n, **kwargs)
    return finish(X, noise_std, generator, dtype, device)
