"""In-context linear regression tasks of the family (related brief, sections 1-3).

A prompt holds N context pairs (x_j, y_j) and one query (x_q, 0); the model predicts minus
the query's y entry.  Written with the tokens as ROWS it is eaglelab's block layout with
d' = n' = 1, nothing moved:

    Z = [[x_1^T, y_1], ..., [x_N^T, y_N], [x_q^T, 0]]  =  [[A, C], [B, D_slot]]

A (N x d) the context x's, C (N x 1) the context y's, B (1 x d) the query x, and D the
query's answer y_q.  The family's papers write tokens as COLUMNS, Z_cols = Z^T
((d + 1) x (N + 1)); `to_columns` / `from_columns` convert, and `models.family` holds
their layer in that convention and the map of its (P, Q) onto eaglelab's weights.

Generators (each `ICLBatch` carries X (B, N + 1, d + 1) with the answer in the D slot, the
task weights w and, where they vary, the per-prompt noise levels):

- `ahn_batch`: Ahn et al. (arXiv 2306.00297): d = 5, N = 20, x ~ N(0, Sigma),
  Sigma = U^T diag(1, 1, 0.25, 0.0625, 1) U with U a random rotation (one per seed),
  w ~ N(0, Sigma^-1), noiseless y = <w, x>;
- `von_oswald_batch`: von Oswald et al. (arXiv 2212.07677): d = 10, N = 10, w ~ N(0, I),
  x ~ U(-r, r) with r = 0.5 (their public code; its one-step GD loss ~0.2 matches the
  paper) or r = 1 (their text);
- `vladymyrov_batch`: Vladymyrov et al. (arXiv 2402.14180): d = 10, N = 20, x, w ~ N(0, I),
  y = <w, x> + sigma_tau eps with one noise level per prompt, sigma_tau ~ U(0, sigma_max)
  or drawn from a categorical set such as {1, 3} or {1, 3, 5}; the query's answer is
  noisy too (their loss is against the observed y).

All draws are float64 from a numpy Generator seeded by `seed` (reproducible, device free).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from eaglelab.tasks._checks import check_float, check_int, np_rng

__all__ = ["ICLBatch", "ICLTaskConfig", "FAMILIES", "AHN_SPECTRUM", "ahn_covariance",
           "ahn_batch", "von_oswald_batch", "vladymyrov_batch", "to_columns", "from_columns",
           "context_and_query", "icl_batch"]

FAMILIES = ("ahn", "von-oswald", "vladymyrov")

AHN_SPECTRUM = (1.0, 1.0, 0.25, 0.0625, 1.0)


@dataclass(frozen=True)
class ICLBatch:
    """X (B, N + 1, d + 1): context rows [x_j, y_j], the query row [x_q, y_q] (the answer
    in the D slot; `prompt` zeroes it); w (B, d) the tasks' weights; noise (B,) the
    per-prompt noise levels (zeros when noiseless); covariance (d, d) of x."""

    X: np.ndarray
    w: np.ndarray
    noise: np.ndarray
    covariance: np.ndarray

    @property
    def N(self) -> int:
        return self.X.shape[1] - 1

    @property
    def d(self) -> int:
        return self.X.shape[2] - 1

    @property
    def prompt(self) -> np.ndarray:
        """The model's input: X with the query's answer zeroed."""
        Z = self.X.copy()
        Z[:, -1, -1] = 0.0
        return Z

    @property
    def answer(self) -> np.ndarray:
        """y_q per prompt, (B,)."""
        return self.X[:, -1, -1].copy()


def _assemble(x: np.ndarray, y: np.ndarray, w: np.ndarray, noise: np.ndarray,
              cov: np.ndarray) -> ICLBatch:
    X = np.concatenate([x, y[..., None]], axis=2)
    return ICLBatch(X=X, w=w, noise=noise, covariance=cov)


def ahn_covariance(d: int = 5, spectrum=AHN_SPECTRUM, seed=None) -> np.ndarray:
    """Sigma = U^T diag(spectrum) U with U a Haar rotation drawn from `seed`."""
    from eaglelab.tasks.haar import haar

    spec = np.asarray(spectrum, dtype=np.float64)
    if spec.shape != (d,) or not np.all(spec > 0):
        raise ValueError(f"spectrum must hold d = {d} positive numbers, got {spectrum!r}")
    U = haar(np_rng(seed), d, d)
    return U.T @ np.diag(spec) @ U


def ahn_batch(batch: int, *, N: int = 20, d: int = 5, spectrum=AHN_SPECTRUM, seed=None,
              covariance: np.ndarray | None = None) -> ICLBatch:
    """Ahn et al.'s rotated-Gaussian task: x ~ N(0, Sigma), w ~ N(0, Sigma^-1), y = <w, x>.
    Sigma comes from `covariance` or, if None, `ahn_covariance(d, spectrum, seed)` (a new
    rotation per seed, as in their runs)."""
    batch, N, d = check_int("batch", batch), check_int("N", N), check_int("d", d)
    rng = np_rng(seed)
    cov = ahn_covariance(d, spectrum, rng) if covariance is None else np.asarray(
        covariance, dtype=np.float64)
    if cov.shape != (d, d):
        raise ValueError(f"covariance must be d x d = {(d, d)}, got {cov.shape}")
    Lx = np.linalg.cholesky(cov)
    Lw = np.linalg.cholesky(np.linalg.inv(cov))
    x = rng.standard_normal((batch, N + 1, d)) @ Lx.T
    w = rng.standard_normal((batch, d)) @ Lw.T
    y = np.einsum("bnd,bd->bn", x, w)
    return _assemble(x, y, w, np.zeros(batch), cov)


def von_oswald_batch(batch: int, *, N: int = 10, d: int = 10, x_range: float = 0.5,
                     seed=None) -> ICLBatch:
    """von Oswald et al.'s task: w ~ N(0, I), x ~ U(-x_range, x_range), y = <w, x>
    (x_range 0.5: their code, whose one-step GD loss matches the paper's ~0.2; 1: their
    text)."""
    batch, N, d = check_int("batch", batch), check_int("N", N), check_int("d", d)
    r = check_float("x_range", x_range, low=0.0, low_open=True)
    rng = np_rng(seed)
    x = rng.uniform(-r, r, size=(batch, N + 1, d))
    w = rng.standard_normal((batch, d))
    y = np.einsum("bnd,bd->bn", x, w)
    return _assemble(x, y, w, np.zeros(batch), np.eye(d) * r * r / 3.0)


def vladymyrov_batch(batch: int, *, N: int = 20, d: int = 10, sigma_max: float | None = 5.0,
                     levels=None, seed=None) -> ICLBatch:
    """Vladymyrov et al.'s noisy regression: x, w ~ N(0, I), y = <w, x> + sigma_tau eps with
    one sigma_tau per prompt - uniform on [0, sigma_max], or drawn uniformly from the
    categorical `levels` (e.g. (1, 3) or (1, 3, 5)); give exactly one of the two."""
    batch, N, d = check_int("batch", batch), check_int("N", N), check_int("d", d)
    if (levels is None) == (sigma_max is None):
        raise ValueError("give exactly one of sigma_max= (uniform noise levels) or levels= "
                         "(a categorical set)")
    rng = np_rng(seed)
    if levels is None:
        smax = check_float("sigma_max", sigma_max, low=0.0)
        noise = rng.uniform(0.0, smax, size=batch)
    else:
        lv = np.asarray(levels, dtype=np.float64)
        if lv.ndim != 1 or lv.size == 0 or not np.all(np.isfinite(lv)) or np.any(lv < 0):
            raise ValueError(f"levels must be a non-empty list of noise levels >= 0, got "
                             f"{levels!r}")
        noise = lv[rng.integers(0, lv.size, size=batch)]
    x = rng.standard_normal((batch, N + 1, d))
    w = rng.standard_normal((batch, d))
    y = np.einsum("bnd,bd->bn", x, w) + noise[:, None] * rng.standard_normal((batch, N + 1))
    return _assemble(x, y, w, noise, np.eye(d))


def to_columns(Z: np.ndarray) -> np.ndarray:
    """Rows-as-tokens (..., N + 1, d + 1) -> the family's columns-as-tokens (..., d + 1, N + 1)."""
    return np.swapaxes(np.asarray(Z), -1, -2)


def from_columns(Z_cols: np.ndarray) -> np.ndarray:
    """Inverse of `to_columns`."""
    return np.swapaxes(np.asarray(Z_cols), -1, -2)


def context_and_query(X: np.ndarray):
    """The block view of a prompt (..., N + 1, d + 1): (A, C, B, D) = (context x's (N x d),
    context y's (N x 1), query x (1 x d), query y (1 x 1)) - `tasks.split` with d' = n' = 1."""
    X = np.asarray(X)
    return X[..., :-1, :-1], X[..., :-1, -1:], X[..., -1:, :-1], X[..., -1:, -1:]


@dataclass(frozen=True)
class ICLTaskConfig:
    """A family task as a training task (`train.resolve_config(..., task="icl")`): the
    block sizes the model and the sampler read are n = `features`, d = `tokens` (the N
    context rows), n' = d' = 1.  `family` picks the generator; `x_range` is von Oswald
    et al.'s input range; `sigma_max` / `levels` are Vladymyrov et al.'s noise (levels
    non-empty: categorical); `cov_seed` fixes Ahn et al.'s rotation for the whole run (one
    Sigma per run, as their per-seed runs)."""

    family: str = "ahn"
    tokens: int = 20
    features: int = 5
    x_range: float = 0.5
    sigma_max: float = 5.0
    levels: tuple = ()
    cov_seed: int = 0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"task.family={self.family!r}; use one of {', '.join(FAMILIES)}")
        check_int("task.tokens", self.tokens)
        check_int("task.features", self.features)
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))

    # the block sizes (tasks as rows: d = N context tokens, n = features)
    @property
    def n(self) -> int:
        return self.features

    @property
    def d(self) -> int:
        return self.tokens

    n_prime = 1
    d_prime = 1

    @property
    def covariance(self) -> np.ndarray:
        if self.family == "ahn":
            return ahn_covariance(self.features, seed=self.cov_seed)
        return np.eye(self.features)

    def to_dict(self) -> dict:
        return asdict(self)


def icl_batch(task: ICLTaskConfig, batch: int, seed) -> ICLBatch:
    """One batch of `task` (see `ICLTaskConfig`)."""
    if task.family == "ahn":
        return ahn_batch(batch, N=task.tokens, d=task.features, seed=seed,
                         covariance=task.covariance)
    if task.family == "von-oswald":
        return von_oswald_batch(batch, N=task.tokens, d=task.features, x_range=task.x_range,
                                seed=seed)
    if task.levels:
        return vladymyrov_batch(batch, N=task.tokens, d=task.features, sigma_max=None,
                                levels=task.levels, seed=seed)
    return vladymyrov_batch(batch, N=task.tokens, d=task.features, sigma_max=task.sigma_max,
                            seed=seed)


def draw_icl(task: ICLTaskConfig, batch: int, generator: torch.Generator,
             dtype=torch.float32) -> torch.Tensor:
    """`icl_batch` driven by a torch generator (a numpy seed drawn from it, so the stream
    is deterministic and resumes with the generator's state): X (batch, N + 1, d + 1)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.as_tensor(icl_batch(task, batch, seed).X).to(dtype)
