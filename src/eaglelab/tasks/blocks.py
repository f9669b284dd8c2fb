"""Block layout of a masked-block completion problem and its float64 reference answer.

    X = [ A  C ]      A: d x n     C: d x n'
        [ B  D ]      B: d' x n    D: d' x n'   (D is hidden)

The reference (Nystrom) completion is D* = B A^+ C = W* C with W* = B A^+ (equivalently
B A^T (A A^T)^+).  It is computed from an SVD of A in float64 with a relative rank cut-off,
so rank-deficient and ill-conditioned A are handled the same way (brief section 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["BlockProblem", "assemble", "split", "split_prompt", "nystrom_reference", "prompt"]


def split(X, d: int, n: int):
    """Split X (..., d + d', n + n') into (A, B, C, D); works for numpy arrays and tensors."""
    return X[..., :d, :n], X[..., d:, :n], X[..., :d, n:], X[..., d:, n:]


def assemble(A, B, C, D):
    """Inverse of `split`: stack the four blocks into X (numpy or torch, batched or not)."""
    if isinstance(A, torch.Tensor):
        return torch.cat([torch.cat([A, C], dim=-1), torch.cat([B, D], dim=-1)], dim=-2)
    top, bottom = np.concatenate([A, C], axis=-1), np.concatenate([B, D], axis=-1)
    return np.concatenate([top, bottom], axis=-2)


def prompt(X, d: int, n: int):
    """The model's input Z0: X with the hidden block D set to zero (a copy)."""
    Z = X.clone() if isinstance(X, torch.Tensor) else np.array(X, copy=True)
    Z[..., d:, n:] = 0
    return Z


def split_prompt(X: torch.Tensor, d: int, n: int,
                 inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(Z0, D): the prompt with the hidden block zeroed, and the hidden block (a copy).
    inplace=True zeroes the block of X itself and returns X as Z0 (no copy of X)."""
    D = X[..., d:, n:].clone()
    Z0 = X if inplace else X.clone()
    Z0[..., d:, n:] = 0
    return Z0, D


def nystrom_reference(A, B, C, rcond: float | None = None):
    """Return (D*, W*) = (B A^+ C, B A^+) in float64 for one problem or a batch.

    rcond is the relative singular-value cut-off defining the numerical rank of A
    (default: max(d, n) * float64 eps, numpy's convention).
    """
    A, B, C = (np.asarray(_to_numpy(M), dtype=np.float64) for M in (A, B, C))
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    if rcond is None:
        rcond = max(A.shape[-2:]) * np.finfo(np.float64).eps
    smax = s[..., :1]
    keep = s > rcond * smax
    inv = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
    pinv = np.swapaxes(Vt, -1, -2) @ (inv[..., :, None] * np.swapaxes(U, -1, -2))
    W = B @ pinv
    return W @ C, W


def _to_numpy(M):
    if isinstance(M, torch.Tensor):
        return M.detach().cpu().numpy()
    if hasattr(M, "toarray"):
        return M.toarray()
    return M


@dataclass
class BlockProblem:
    """One completion problem in float64 numpy: visible A, B, C, optional true hidden D.

    `reference` and `W_star` are the float64 Nystrom answer (computed once, lazily).
    `meta` records how the problem was made (generator, seed, kappa, ...).
    """

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    _ref: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(d, n, d', n')."""
        return self.A.shape[0], self.A.shape[1], self.B.shape[0], self.C.shape[1]

    def _reference(self) -> tuple[np.ndarray, np.ndarray]:
        if self._ref is None:
            self._ref = nystrom_reference(self.A, self.B, self.C)
        return self._ref

    @property
    def reference(self) -> np.ndarray:
        """D* = B A^+ C (float64)."""
        return self._reference()[0]

    @property
    def W_star(self) -> np.ndarray:
        """W* = B A^+ (float64)."""
        return self._reference()[1]

    @property
    def X(self) -> np.ndarray:
        """The full matrix, with the true D (or D* when D is unknown)."""
        return assemble(self.A, self.B, self.C, self.reference if self.D is None else self.D)
