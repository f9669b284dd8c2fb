"""Array namespaces: the solvers' arithmetic runs on numpy (CPU) or on torch tensors on
their own device (CPU or CUDA), from one implementation written against the Python array
API standard through `array_api_compat`.

Only what the standard lacks lives here: copies, on-device scalars read back as Python
floats (one synchronisation each), and the Frobenius norm that neither underflows nor
overflows.  numpy-only tools (scipy's Lanczos, floating-point traps) are used where the
namespace is numpy and have a device-side counterpart otherwise.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import array_api_compat
import numpy as np

__all__ = ["namespace", "is_numpy", "copy", "device_of", "to_numpy", "fro_norm", "eps",
           "asarray_like", "traps"]


def namespace(*arrays: Any):
    """The array-API namespace of the arrays (numpy's or torch's compat wrapper)."""
    return array_api_compat.array_namespace(*arrays)


def is_numpy(xp) -> bool:
    return array_api_compat.is_numpy_namespace(xp)


def traps(xp):
    """Raise FloatingPointError on overflow or an invalid operation inside the block: numpy
    traps them; torch has no traps, so there a non-finite iterate is caught by the stop
    rule's finiteness test one step later."""
    return np.errstate(over="raise", invalid="raise") if is_numpy(xp) else contextlib.nullcontext()


def copy(x: Any) -> Any:
    """A contiguous copy in the same namespace, dtype and device."""
    return x.clone() if hasattr(x, "clone") else np.array(x, copy=True, order="C")


def device_of(x: Any) -> Any:
    return array_api_compat.device(x)


def to_numpy(x: Any) -> np.ndarray:
    """x as a numpy array (a device-to-host copy for a tensor)."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def asarray_like(x: Any, like: Any, dtype: Any = None) -> Any:
    """x (numpy or a tensor) in the namespace and on the device of `like`, with `like`'s
    dtype unless dtype is given (integer index arrays keep their integer type)."""
    xp = namespace(like)
    if is_numpy(xp):
        out = to_numpy(x)
        return out if dtype is None and out.dtype.kind in "iu" else out.astype(
            dtype or like.dtype, copy=False)
    import torch

    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    if dtype is None and not t.dtype.is_floating_point:
        return t.to(device=like.device)
    return t.to(device=like.device, dtype=dtype or like.dtype)


def eps(x: Any) -> float:
    """Machine epsilon of x's floating dtype."""
    xp = namespace(x)
    return float(xp.finfo(x.dtype).eps)


def fro_norm(M: Any) -> float:
    """||M||_F without underflow or overflow in the squares: scaled by max |m_ij| first
    (squaring 1e-200 entries gives 0 and 1e200 entries inf - and a stop rule reading those
    would call an untouched iterate converged).  Computed in float64 in M's namespace and
    on its device; the result is a Python float."""
    xp = namespace(M)
    if math.prod(M.shape) == 0:
        return 0.0
    a = xp.abs(xp.astype(M, xp.float64))
    m = float(xp.max(a))
    if m == 0.0 or not np.isfinite(m):
        return m
    return m * float(xp.sqrt(xp.sum(xp.square(a / m))))
