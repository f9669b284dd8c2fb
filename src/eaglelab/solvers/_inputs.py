"""Input checking and conversion shared by every solver.

Solvers accept numpy arrays, scipy.sparse matrices and torch tensors (float32 or float64).
A solver that computes natively (`prepare(..., native=True)`: EAGLE) keeps torch input as
torch tensors on the input's device and computes there; the others compute in numpy and
hand results back in the caller's array type.  Either way a torch input gives a torch
output with the input's dtype and device.  Misuse raises ValueError naming
the argument, the value and the fix; nothing is silently coerced into garbage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["Prepared", "prepare", "wrap_like", "check_positive", "check_int", "check_reference",
           "to_dense", "scale_pow2"]

_TORCH_TO_NP = {torch.float32: np.float32, torch.float64: np.float64}
_NP_TO_TORCH = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


@dataclass
class Prepared:
    """Validated inputs: A may stay scipy-sparse (CSR) when keep_sparse was asked for."""

    A: Any
    B: Any
    C: np.ndarray
    dtype: np.dtype
    kind: str  # "numpy" | "torch" | "sparse"
    torch_like: torch.Tensor | None = None
    balanced: int = 0   # A and B were divided by 2**balanced (||A||_F overflowed); D, W unchanged

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


def prepare(A: Any, B: Any, C: Any, *, dtype: Any = None, keep_sparse: bool = False,
            native: bool = False) -> Prepared:
    """Validate and convert (A, B, C).

    dtype: None keeps the common input precision (float64 if any block is float64);
    np.float32/np.float64 (or the torch equivalents) force one.
    native: when any block is a torch tensor, give all three as torch tensors on that
    tensor's device (numpy and scipy.sparse blocks are moved there) instead of numpy.
    """
    if dtype is not None:
        dtype = _TORCH_TO_NP.get(dtype, dtype)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype={dtype} is not supported; use float32 or float64")
    like = next((M for M in (A, B, C) if isinstance(M, torch.Tensor)), None)
    if native and like is not None:
        return _prepare_torch(A, B, C, dtype, like)
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
    _check_shapes(A_.shape, B_.shape, C_.shape)
    a_max = float(abs(A_).max()) if sp.issparse(A_) else float(np.max(np.abs(A_)))
    k = _balance_exponent(lambda: sp.linalg.norm(A_) if sp.issparse(A_) else np.linalg.norm(A_),
                          a_max)
    if k:
        A_, B_ = A_ * 2.0 ** -k, B_ * 2.0 ** -k      # exact: powers of two
    a_norm = sp.linalg.norm(A_) if sp.issparse(A_) else np.linalg.norm(A_)
    _check_scale(float(a_norm), a_max)
    kind = "torch" if "torch" in kinds else ("sparse" if "sparse" in kinds else "numpy")
    return Prepared(A_, B_, np.ascontiguousarray(C_), np.dtype(dtype), kind, like, k)


def _balance_exponent(norm, a_max: float) -> int:
    """0, or the k with which A / 2^k and B / 2^k (the same D = B A^+ C and W = B A^+) keep
    ||A||_F finite: entries of order 1e200 square past float64's range, so their norm
    overflows although every entry is finite.  norm: a callable giving ||A||_F."""
    with np.errstate(over="ignore"):
        if np.isfinite(float(norm())) or not np.isfinite(a_max) or a_max == 0:
            return 0
    return int(np.floor(np.log2(a_max)))


def _check_shapes(a: tuple, b: tuple, c: tuple) -> None:
    d, n = a
    if b[1] != n:
        raise ValueError(f"B has {b[1]} columns but A has {n}; B must be d' x n (same columns as A)")
    if c[0] != d:
        raise ValueError(f"C has {c[0]} rows but A has {d}; C must be d x n' (same rows as A)")


def _check_scale(a_norm: float, a_max: float) -> None:
    if not np.isfinite(a_norm):
        raise ValueError("||A||_F overflows; rescale A (and B) before solving")
    if a_max == 0:       # not ||A||_F == 0: that underflows for entries of order 1e-170
        raise ValueError("A is all zero; the completion B A^+ C is then zero and no solver is needed")


def _prepare_torch(A: Any, B: Any, C: Any, dtype: np.dtype | None,
                   like: torch.Tensor) -> Prepared:
    """`prepare` for native solvers given torch input: every block as a contiguous tensor
    on like's device, validated there (no copy to the host)."""
    out = []
    for name, M in (("A", A), ("B", B), ("C", C)):
        if isinstance(M, torch.Tensor):
            if M.dtype not in _TORCH_TO_NP:
                raise ValueError(f"{name} has torch dtype {M.dtype}; use torch.float32 or "
                                 "torch.float64")
            t = M.detach()
        else:
            arr, _ = _convert(name, M, dtype, keep_sparse=False)   # checks numpy/sparse
            t = torch.from_numpy(np.ascontiguousarray(arr))
        if t.dim() != 2:
            raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
        if 0 in t.shape:
            raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); every block needs at "
                             "least one entry")
        out.append(t)
    target = (_NP_TO_TORCH[np.dtype(dtype)] if dtype is not None
              else torch.promote_types(torch.promote_types(out[0].dtype, out[1].dtype),
                                       out[2].dtype))
    out = [t.to(device=like.device, dtype=target).contiguous() for t in out]
    for name, t in zip(("A", "B", "C"), out, strict=True):
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = "NaN" if bool(torch.isnan(t).any()) else "Inf"
            raise ValueError(f"{name} contains {bad} entries; remove or impute them before solving")
    A_, B_, C_ = out
    _check_shapes(tuple(A_.shape), tuple(B_.shape), tuple(C_.shape))
    a_max = float(A_.abs().max())
    k = _balance_exponent(lambda: torch.linalg.vector_norm(A_), a_max)
    if k:
        A_, B_ = A_ * 2.0 ** -k, B_ * 2.0 ** -k
    _check_scale(float(torch.linalg.vector_norm(A_)), a_max)
    return Prepared(A_, B_, C_, np.dtype(_TORCH_TO_NP[target]), "torch", like, k)


def to_dense(M: Any) -> np.ndarray:
    return M.toarray() if sp.issparse(M) else M


def wrap_like(M: Any, prep: Prepared):
    """Return M in the caller's array type (torch in -> torch out, same device); a tensor
    (from a native solve) is returned as it is."""
    if M is None or prep.torch_like is None or isinstance(M, torch.Tensor):
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
    """value as an int in [minimum, maximum]; ValueError naming `name` for anything else
    (a bool, a string, a fraction, inf or NaN - no OverflowError leaks out)."""
    try:
        whole = not isinstance(value, bool) and float(value).is_integer() and int(value) == value
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole:
        hint = " (an iteration limit must be finite)" if value == float("inf") else ""
        raise ValueError(f"{name} must be an integer, got {value!r}{hint}")
    v = int(value)
    if v < minimum or (maximum is not None and v > maximum):
        rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return v


def check_reference(reference: Any, dp: int, nq: int, name: str = "reference",
                    shape_name: str = "d' x n'") -> np.ndarray | None:
    """The reference D* (or W*) as a finite float64 dp x nq array (None passes through)."""
    if reference is None:
        return None
    if hasattr(reference, "detach"):
        reference = reference.detach().cpu().numpy()
    elif hasattr(reference, "toarray"):
        reference = reference.toarray()
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != (dp, nq):
        raise ValueError(f"{name} has shape {ref.shape}; it must be {shape_name} = {(dp, nq)}")
    if not np.all(np.isfinite(ref)):
        raise ValueError(f"{name} contains NaN or Inf entries; pass a finite one")
    return ref


@dataclass
class Balanced:
    """A problem scaled by powers of two (exact in binary floating point) so that every
    block's largest entry lies in [0.5, 1): what `balance` returns.  D = B A^+ C is
    bilinear in (B, C) and D(s A) = D(A) / s, so the answer scales back exactly.  The
    blocks stay numpy / scipy.sparse or tensors on their device, as given."""

    A: Any
    B: Any
    C: Any
    d_exponent: int                        # D = D' * 2^d_exponent
    w_exponent: int                        # W = W' * 2^w_exponent

    def reference(self, ref: np.ndarray | None) -> np.ndarray | None:
        return None if ref is None else np.ldexp(ref, -self.d_exponent)

    def D(self, D: Any) -> Any:
        return scale_pow2(D, self.d_exponent)

    def W(self, W: Any) -> Any:
        return None if W is None else scale_pow2(W, self.w_exponent)


def scale_pow2(M: Any, e: int) -> Any:
    """M * 2^e in M's own type and dtype (exact unless it over- or underflows)."""
    if isinstance(M, torch.Tensor):
        half = e // 2            # two factors, so that 2^e itself never overflows a float
        return M * math.ldexp(1.0, half) * math.ldexp(1.0, e - half)
    return np.ldexp(M, e).astype(M.dtype, copy=False)


def _exponent(M: Any) -> int:
    if isinstance(M, torch.Tensor):
        m = float(M.abs().max()) if M.numel() else 0.0
    else:
        data = M.data if sp.issparse(M) else np.asarray(M)
        m = float(np.max(np.abs(data))) if data.size else 0.0
    return int(np.frexp(m)[1]) if m > 0 and np.isfinite(m) else 0


def _scaled(M: Any, e: int):
    if sp.issparse(M):
        out = M.copy()
        out.data = np.ldexp(out.data, -e).astype(M.dtype, copy=False)
        return out
    return scale_pow2(M, -e)


def balance(prep: Prepared) -> Balanced:
    """(A, B, C) of `prep` scaled by powers of two to unit magnitude, for solvers whose
    options are all relative (CG, LSMR): their inner products then neither underflow nor
    overflow at any input scale, so "converged" means the same at 1e-200 as at 1."""
    eA, eB, eC = _exponent(prep.A), _exponent(prep.B), _exponent(prep.C)
    return Balanced(_scaled(prep.A, eA), _scaled(prep.B, eB), _scaled(prep.C, eC),
                    d_exponent=eB + eC - eA, w_exponent=eB - eA)
