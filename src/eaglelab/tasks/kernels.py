"""Nystrom kernel-slice tasks: X is a kernel matrix over points, D an unseen slice.

Given points x_1..x_N and a kernel k, choose four index sets

    L  (d landmark rows),   E  (d' extra rows),   J  (n columns),   Q  (n' query columns)

and set X = K(L then E, J then Q), i.e.

    A = K(L, J),   B = K(E, J),   C = K(L, Q),   D = K(E, Q).

`BlockProblem.D` is the TRUE kernel slice K(E, Q).  `BlockProblem.reference` is the Nystrom
completion D* = B A^+ C; with J = L and E = Q it is the classical Nystrom approximation
K(Q, L) K(L, L)^+ K(L, Q) of K(Q, Q).  Kernel matrices are not exactly low rank, so D* and D
differ in general; the gap shrinks as the landmarks cover the data better (for a positive
semidefinite kernel and nested landmark sets with J = L, E = Q it is a Schur complement and
cannot grow).

Kernels (parameters and defaults; dim is the points' dimension):

- ``"rbf"``: exp(-gamma ||x - y||^2), ``gamma = 1 / dim``;
- ``"laplacian"``: exp(-gamma ||x - y||_1), ``gamma = 1 / dim``;
- ``"polynomial"``: (gamma <x, y> + coef0)^degree, ``gamma = 1 / dim``, ``coef0 = 1``,
  ``degree = 3`` (exactly low rank: rank <= C(dim + degree, degree));
- ``"matern32"``: (1 + sqrt(3) r / l) exp(-sqrt(3) r / l), r = ||x - y||,
  ``length_scale = l = 1``.

The numpy path (`kernel_matrix`) uses scikit-learn's implementations; the batched torch
path (`kernel_batch`) evaluates the same formulas with the same defaults.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from sklearn.gaussian_process.kernels import Matern
from sklearn.metrics.pairwise import laplacian_kernel, polynomial_kernel, rbf_kernel

from eaglelab.tasks._checks import (
    check_choice,
    check_float,
    check_int,
    check_params,
    finish,
    np_rng,
    seed_record,
)
from eaglelab.tasks.blocks import BlockProblem, split

__all__ = [
    "KERNELS",
    "POINT_CLOUDS",
    "kernel_batch",
    "kernel_matrix",
    "nystrom_problem",
    "synthetic_points",
]

KERNELS: tuple[str, ...] = ("rbf", "laplacian", "polynomial", "matern32")
POINT_CLOUDS: tuple[str, ...] = ("gaussian", "clusters", "manifold")

_KERNEL_PARAMS: dict[str, tuple[str, ...]] = {
    "rbf": ("gamma",),
    "laplacian": ("gamma",),
    "polynomial": ("gamma", "coef0", "degree"),
    "matern32": ("length_scale",),
}

# synthetic point clouds
_N_CLUSTERS = 5
_CLUSTER_CENTRE_STD = 2.0
_CLUSTER_SPREAD = 0.3


def _resolve_params(kernel: str, params: dict[str, Any], dim: int) -> dict[str, Any]:
    """Validate kernel parameters and fill in the defaults."""
    kernel = check_choice("kernel", kernel, KERNELS)
    check_params(f"kernel {kernel!r}", params, _KERNEL_PARAMS[kernel])
    out: dict[str, Any] = {}
    if "gamma" in _KERNEL_PARAMS[kernel]:
        gamma = params.get("gamma")
        out["gamma"] = (
            1.0 / dim if gamma is None else check_float("gamma", gamma, low=0.0, low_open=True)
        )
    if kernel == "polynomial":
        out["coef0"] = check_float("coef0", params.get("coef0", 1.0))
        out["degree"] = check_int("degree", params.get("degree", 3))
    if kernel == "matern32":
        out["length_scale"] = check_float(
            "length_scale", params.get("length_scale", 1.0), low=0.0, low_open=True
        )
    return out


def _as_points(name: str, P: Any) -> np.ndarray:
    if isinstance(P, torch.Tensor):
        P = P.detach().cpu().numpy()
    P = np.asarray(P, dtype=np.float64)
    if P.ndim == 1:
        P = P[:, None]
    if P.ndim != 2 or 0 in P.shape:
        raise ValueError(f"{name} must be a non-empty 2-D array (points x dim), got {P.shape}")
    if not np.all(np.isfinite(P)):
        raise ValueError(f"{name} must be finite")
    return P


def kernel_matrix(
    points_x: np.ndarray,
    points_y: np.ndarray | None = None,
    kernel: str = "rbf",
    **params: Any,
) -> np.ndarray:
    """Kernel matrix K[i, j] = k(points_x[i], points_y[j]) in float64.

    Parameters
    ----------
    points_x : array_like, shape (m, dim)
        Row points.
    points_y : array_like, shape (p, dim), optional
        Column points; default `points_x`.
    kernel : {"rbf", "laplacian", "polynomial", "matern32"}
        Kernel name (see the module docstring for formulas and defaults).
    **params
        Kernel parameters: ``gamma`` (rbf, laplacian, polynomial), ``coef0`` and ``degree``
        (polynomial), ``length_scale`` (matern32).

    Returns
    -------
    ndarray
        Shape (m, p).
    """
    X = _as_points("points_x", points_x)
    Y = X if points_y is None else _as_points("points_y", points_y)
    if Y.shape[1] != X.shape[1]:
        raise ValueError(f"points_y has dimension {Y.shape[1]}, points_x {X.shape[1]}")
    p = _resolve_params(kernel, params, X.shape[1])
    if kernel == "rbf":
        return rbf_kernel(X, Y, gamma=p["gamma"])
    if kernel == "laplacian":
        return laplacian_kernel(X, Y, gamma=p["gamma"])
    if kernel == "polynomial":
        return polynomial_kernel(X, Y, degree=p["degree"], gamma=p["gamma"], coef0=p["coef0"])
    return Matern(length_scale=p["length_scale"], nu=1.5)(X, Y)


def _kernel_torch(P: torch.Tensor, R: torch.Tensor, kernel: str, p: dict) -> torch.Tensor:
    """Batched kernel matrix between point sets P (..., m, dim) and R (..., q, dim)."""
    if kernel == "rbf":
        sq = ((P.unsqueeze(-2) - R.unsqueeze(-3)) ** 2).sum(-1)
        return torch.exp(-p["gamma"] * sq)
    if kernel == "laplacian":
        return torch.exp(-p["gamma"] * torch.cdist(P, R, p=1))
    if kernel == "polynomial":
        return (p["gamma"] * P @ R.transpose(-1, -2) + p["coef0"]) ** p["degree"]
    r = math.sqrt(3.0) * torch.cdist(P, R, p=2) / p["length_scale"]
    return (1.0 + r) * torch.exp(-r)


def _points_torch(
    gen: torch.Generator | None, batch: int, m: int, dim: int, kind: str
) -> torch.Tensor:
    """Synthetic point clouds, float64, shape (batch, m, dim)."""
    f64 = torch.float64
    if kind == "gaussian":
        return torch.randn(batch, m, dim, generator=gen, dtype=f64)
    if kind == "clusters":
        centres = _CLUSTER_CENTRE_STD * torch.randn(
            batch, _N_CLUSTERS, dim, generator=gen, dtype=f64
        )
        labels = torch.randint(0, _N_CLUSTERS, (batch, m), generator=gen)
        chosen = torch.gather(centres, 1, labels.unsqueeze(-1).expand(batch, m, dim))
        return chosen + _CLUSTER_SPREAD * torch.randn(batch, m, dim, generator=gen, dtype=f64)
    # manifold: a smooth closed curve t -> (sin(2 pi f_j t + phi_j))_j in R^dim
    t = torch.rand(batch, m, 1, generator=gen, dtype=f64)
    freq = 1.0 + torch.arange(dim, dtype=f64) % 3
    phase = 2 * math.pi * torch.rand(batch, 1, dim, generator=gen, dtype=f64)
    return torch.sin(2 * math.pi * freq * t + phase)


def _torch_generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(check_int("seed", seed, minimum=0))
    return gen


def synthetic_points(
    n_points: int,
    dim: int,
    kind: Literal["gaussian", "clusters", "manifold"] = "gaussian",
    seed: int | None = None,
) -> np.ndarray:
    """A synthetic point cloud in float64.

    Parameters
    ----------
    n_points : int
        Number of points.
    dim : int
        Ambient dimension.
    kind : {"gaussian", "clusters", "manifold"}
        ``"gaussian"``: i.i.d. N(0, I_dim).  ``"clusters"``: 5 centres N(0, 4 I_dim), each
        point a uniformly chosen centre plus N(0, 0.09 I_dim).  ``"manifold"``: points on a
        smooth closed curve, coordinate j = sin(2 pi f_j t + phi_j) with t ~ U[0, 1),
        f_j = 1 + (j mod 3) and random phases phi_j (intrinsic dimension 1).
    seed : int, optional
        Seed of the torch generator used (the same draws as one item of `kernel_batch`'s
        point clouds); None draws fresh entropy.

    Returns
    -------
    ndarray
        Shape (n_points, dim).
    """
    n_points = check_int("n_points", n_points)
    dim = check_int("dim", dim)
    kind = check_choice("kind", kind, POINT_CLOUDS)
    return _points_torch(_torch_generator(seed), 1, n_points, dim, kind)[0].numpy()


def _pick(
    name: str,
    spec: int | np.ndarray,
    n_points: int,
    taken: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Index set from a count (drawn from points not in `taken`) or an explicit index array."""
    if np.ndim(spec) == 0:
        k = check_int(name, spec)
        free = np.setdiff1d(np.arange(n_points), taken)
        if k > free.size:
            raise ValueError(
                f"{name}={k} needs {k} unused points but only {free.size} of {n_points} remain"
            )
        return np.sort(rng.choice(free, size=k, replace=False))
    idx = np.asarray(spec)
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a count or a non-empty 1-D integer index array")
    if idx.min() < 0 or idx.max() >= n_points:
        raise ValueError(f"{name} indices must lie in [0, {n_points}), the number of points")
    if np.unique(idx).size != idx.size:
        raise ValueError(f"{name} contains repeated indices")
    return idx.astype(np.intp)


def nystrom_problem(
    points: np.ndarray,
    *,
    landmarks: int | np.ndarray = 18,
    queries: int | np.ndarray = 2,
    columns: int | np.ndarray | None = None,
    extra: int | np.ndarray | None = None,
    kernel: str = "rbf",
    seed: int | np.random.Generator | None = None,
    **kernel_params: Any,
) -> BlockProblem:
    """A Nystrom extrapolation problem on a point set.

    Parameters
    ----------
    points : array_like, shape (N, dim)
        The point set, e.g. `synthetic_points` or ``sklearn.datasets.load_iris().data``.
    landmarks : int or array of int
        Landmark rows L (d of them): a count drawn at random, or explicit indices.
    queries : int or array of int
        Query columns Q (n' of them); a count is drawn from points not in L.
    columns : int or array of int, optional
        Visible columns J (n of them); default J = L (A = K(L, L), the classical
        Nystrom setting).  A count is drawn from points not in L or Q.
    extra : int or array of int, optional
        Extra rows E (d' of them); default E = Q (D = K(Q, Q)).  A count is drawn from
        points not in L, Q or J.
    kernel : {"rbf", "laplacian", "polynomial", "matern32"}
        Kernel name; `kernel_params` as in `kernel_matrix`.
    seed : int or numpy.random.Generator, optional
        Seed for drawing the index sets given as counts.

    Returns
    -------
    BlockProblem
        A = K(L, J), B = K(E, J), C = K(L, Q) and the TRUE slice D = K(E, Q).
        ``.reference`` is the Nystrom completion B A^+ C, which differs from D unless the
        kernel matrix is exactly low rank on these points.  ``meta`` holds the kernel, its
        resolved parameters, the index sets and the seed.
    """
    P = _as_points("points", points)
    N = P.shape[0]
    params = _resolve_params(kernel, kernel_params, P.shape[1])
    rng = np_rng(seed)
    L = _pick("landmarks", landmarks, N, np.empty(0, np.intp), rng)
    Q = _pick("queries", queries, N, L, rng)
    J = L if columns is None else _pick("columns", columns, N, np.union1d(L, Q), rng)
    E = Q if extra is None else _pick("extra", extra, N, np.union1d(np.union1d(L, Q), J), rng)
    X = kernel_matrix(P[np.concatenate([L, E])], P[np.concatenate([J, Q])], kernel, **params)
    A, B, C, D = split(X, L.size, J.size)
    meta = {
        "generator": "nystrom",
        "kernel": kernel,
        "kernel_params": params,
        "landmarks": L,
        "columns": J,
        "queries": Q,
        "extra": E,
        "n_points": N,
        "dim": P.shape[1],
        "seed": seed_record(seed),
    }
    return BlockProblem(A=A.copy(), B=B.copy(), C=C.copy(), D=D.copy(), meta=meta)


def kernel_batch(
    batch: int,
    n: int = 18,
    d: int = 18,
    n_prime: int = 2,
    d_prime: int = 2,
    *,
    dim: int = 3,
    kernel: str = "rbf",
    kind: Literal["gaussian", "clusters", "manifold"] = "gaussian",
    layout: Literal["shared", "independent"] = "shared",
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    **kernel_params: Any,
) -> torch.Tensor:
    """A batch of kernel matrices over fresh synthetic point clouds, for training-style use.

    Parameters
    ----------
    batch : int
        Number of matrices.
    n, d, n_prime, d_prime : int
        Block sizes.
    dim : int
        Dimension of the synthetic points.
    kernel : str
        Kernel name; `kernel_params` as in `kernel_matrix`.
    kind : {"gaussian", "clusters", "manifold"}
        Point cloud (see `synthetic_points`); one cloud is drawn per batch item.
    layout : {"shared", "independent"}
        ``"shared"`` (requires n == d and n' == d'): d + d' points P, X = K(P, P), so
        J = L and Q = E and X is a symmetric kernel matrix (the classical Nystrom
        setting).  ``"independent"``: one cloud of d + d' + n + n' points, the first
        d + d' give the rows (L then E), the rest the columns (J then Q).
    noise_std : float
        Optional i.i.d. Gaussian noise on all of X.
    generator : torch.Generator, optional
        CPU generator; None uses torch's global RNG.
    dtype, device
        Output dtype and device; sampling is done in float64 on the CPU, then cast.

    Returns
    -------
    torch.Tensor
        Shape (batch, d + d', n + n'); the bottom-right block is the true kernel slice.
    """
    batch = check_int("batch", batch)
    n, d = check_int("n", n), check_int("d", d)
    n_prime, d_prime = check_int("n_prime", n_prime), check_int("d_prime", d_prime)
    dim = check_int("dim", dim)
    kind = check_choice("kind", kind, POINT_CLOUDS)
    layout = check_choice("layout", layout, ("shared", "independent"))
    noise_std = check_float("noise_std", noise_std, low=0.0)
    params = _resolve_params(kernel, kernel_params, dim)
    rows = d + d_prime
    if layout == "shared":
        if n != d or n_prime != d_prime:
            raise ValueError(
                f"layout='shared' needs n == d and n_prime == d_prime, got "
                f"n={n}, d={d}, n_prime={n_prime}, d_prime={d_prime}; "
                "use layout='independent'"
            )
        P = _points_torch(generator, batch, rows, dim, kind)
        X = _kernel_torch(P, P, kernel, params)
    else:
        P = _points_torch(generator, batch, rows + n + n_prime, dim, kind)
        X = _kernel_torch(P[:, :rows], P[:, rows:], kernel, params)
    return finish(X, noise_std, generator, dtype, device)
