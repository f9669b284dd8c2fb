"""Input checking and conversion shared by every solver.

Solvers accept numpy arrays, scipy.sparse matrices and torch tensors (float32 or float64).
They compute in numpy and hand results back in the caller's array type: a torch input
gives a torch output with the input's dtype and device.  Misuse raises ValueError naming
the argument, the value and the fix; nothing is silently coerced into garbage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["Prepared", "prepare", "wrap_like", "check_positive", "check_int", "check_reference",
           "to_dense"]

_TORCH_TO_NP = {torch.float32: np.float32, torch.float64: np.float64}


@dataclass
class Prepared:
    """Validated inputs: A may stay scipy-sparse (CSR) when keep_sparse was asked for."""

    A: Any
    B: Any
    C: np.ndarray
    dtype: np.dtype
    kind: str  # "numpy" | "torch" | "sparse"
    torch_like: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(d, n, d', n')."""
        return self.A.shape[0], self.A.shape[1], self.B.shape[0], self.C.shape[1]


def _convert(name: str, M: Any, dtype: np.dtype | None, keep_sparse: bool):
    if M is None:
        raise ValueError(f"{name} is None; pass a 2-D array")
    if isinstance(M, torch.Tensor):
        if M.dtype not in _TORCH_TO_NP:
            raise ValueError(f"{name} has torch dtype {M.dtype}; use torch.float32 or torch.float64")
        arr = M.detach().cpu().numpy()
        kind = "torch"
    elif sp.issparse(M):
        kind = "sparse"
        if M.dtype.kind not in "fiub":
            raise ValueError(f"{name} has dtype {M.dtype}; pass a real floating-point matrix "
                             "(the solvers are real-valued)")
        arr = M.tocsr() if keep_sparse else M.toarray()
    else:
        arr = np.asarray(M)
        kind = "numpy"
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"{name} has dtype {arr.dtype}; pass a real floating-point array")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {arr.shape}")
    if 0 in arr.shape:
        raise ValueError(f"{name} is empty (shape {arr.shape}); every block needs at least one entry")
    target = dtype or (arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64)
    arr = arr.astype(target, copy=False)
    data = arr.data if sp.issparse(arr) else arr
    if not np.all(np.isfinite(data)):
        bad = "NaN" if np.any(np.isnan(data)) else "Inf"
        raise ValueError(f"{name} contains {bad} entries; remove or impute them before solving")
    return arr, kind


def prepare(A: Any, B: Any, C: Any, *, dtype: Any = None, keep_sparse: bool = False) -> Prepared:
    """Validate and convert (A, B, C).

    dtype: None keeps the common input precision (float64 if any block is float64);
    np.float32/np.float64 (or the torch equivalents) force one.
    """
    if dtype is not None:
        dtype = _TORCH_TO_NP.get(dtype, dtype)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype={dtype} is not supported; use float32 or float64")
    out, kinds = [], []
    for name, M in (("A", A), ("B", B), ("C", C)):
        arr, kind = _convert(name, M, dtype, keep_sparse and name in ("A", "B"))
        out.append(arr)
        kinds.append(kind)
    if dtype is None:
        dtype = np.result_type(*[a.dtype for a in out])
        out = [a.astype(dtype, copy=False) for a in out]
    A_, B_, C_ = out
    if sp.issparse(C_):
        C_ = C_.toarray()
    d, n = A_.shape
    if B_.shape[1] != n:
        raise ValueError(f"B has {B_.shape[1]} columns but A has {n}; B must be d' x n (same columns as A)")
    if C_.shape[0] != d:
        raise ValueError(f"C has {C_.shape[0]} rows but A has {d}; C must be d x n' (same rows as A)")
    a_norm = sp.linalg.norm(A_) if sp.issparse(A_) else np.linalg.norm(A_)
    if not np.isfinite(a_norm):
        raise ValueError("||A||_F overflows; rescale A (and B) before solving")
    a_max = float(abs(A_).max()) if sp.issparse(A_) else float(np.max(np.abs(A_)))
    if a_max == 0:       # not ||A||_F == 0: that underflows for entries of order 1e-170
        raise ValueError("A is all zero; the completion B A^+ C is then zero and no solver is needed")
    kind = "torch" if "torch" in kinds else ("sparse" if "sparse" in kinds else "numpy")
    like = next((M for M in (A, B, C) if isinstance(M, torch.Tensor)), None)
    return Prepared(A_, B_, np.ascontiguousarray(C_), np.dtype(dtype), kind, like)


def to_dense(M: Any) -> np.ndarray:
    return M.toarray() if sp.issparse(M) else M


def wrap_like(M: np.ndarray | None, prep: Prepared):
    """Return M in the caller's array type (torch in -> torch out, same device)."""
    if M is None or prep.torch_like is None:
        return M
    t = torch.from_numpy(np.ascontiguousarray(M))
    return t.to(device=prep.torch_like.device)


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    ok = v >= 0 if allow_zero else v > 0
    if not np.isfinite(v) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return v


def check_int(name: str, value: int, *, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if v < minimum or (maximum is not None and v > maximum):
        rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return v


def check_reference(reference: Any, dp: int, nq: int) -> np.ndarray | None:
    """The reference D* as a finite float64 d' x n' array (None passes through)."""
    if reference is None:
        return None
    if hasattr(reference, "detach"):
        reference = reference.detach().cpu().numpy()
    elif hasattr(reference, "toarray"):
        reference = reference.toarray()
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != (dp, nq):
        raise ValueError(f"reference has shape {ref.shape}; it must be d' x n' = {(dp, nq)}")
    if not np.all(np.isfinite(ref)):
        raise ValueError("reference contains NaN or Inf entries; pass a finite D*")
    return ref


@dataclass
class Balanced:
    """A problem scaled by powers of two (exact in binary floating point) so that every
    block's largest entry lies in [0.5, 1): what `balance` returns.  D = B A^+ C is
    bilinear in (B, C) and D(s A) = D(A) / s, so the answer scales back exactly."""

    A: Any
    B: Any
    C: np.ndarray
    d_exponent: int                        # D = D' * 2^d_exponent
    w_exponent: int                        # W = W' * 2^w_exponent

    def reference(self, ref: np.ndarray | None) -> np.ndarray | None:
        return None if ref is None else np.ldexp(ref, -self.d_exponent)

    def D(self, D: np.ndarray) -> np.ndarray:
        return np.ldexp(D, self.d_exponent).astype(D.dtype, copy=False)

    def W(self, W: np.ndarray | None) -> np.ndarray | None:
        return None if W is None else np.ldexp(W, self.w_exponent).astype(W.dtype, copy=False)


def _exponent(M: Any) -> int:
    data = M.data if sp.issparse(M) else np.asarray(M)
    m = float(np.max(np.abs(data))) if data.size else 0.0
    return int(np.frexp(m)[1]) if m > 0 and np.isfinite(m) else 0


def _scaled(M: Any, e: int):
    if sp.issparse(M):
        out = M.copy()
        out.data = np.ldexp(out.data, -e).astype(M.dtype, copy=False)
        return out
    return np.ldexp(M, -e).astype(M.dtype, copy=False)


def balance(prep: Prepared) -> Balanced:
    """(A, B, C) of `prep` scaled by powers of two to unit magnitude, for solvers whose
    options are all relative (CG, LSMR): their inner products then neither underflow nor
    overflow at any input scale, so "converged" means the same at 1e-200 as at 1."""
    eA, eB, eC = _exponent(prep.A), _exponent(prep.B), _exponent(prep.C)
    return Balanced(_scaled(prep.A, eA), _scaled(prep.B, eB), _scaled(prep.C, eC),
                    d_exponent=eB + eC - eA, w_exponent=eB - eA)
