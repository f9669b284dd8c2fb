"""Argument checks shared by the task generators.

Every check raises ValueError whose message starts with the argument's name, so callers
(and tests) can tell which argument was wrong.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
import torch

__all__ = [
    "check_int",
    "check_float",
    "check_choice",
    "check_params",
    "np_rng",
    "seed_record",
    "finish",
]


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """Return `value` as a Python int, or raise ValueError naming `name`.

    Parameters
    ----------
    name : str
        Argument name used in the error message.
    value : Any
        The value to check; bools and non-integral numbers are rejected.
    minimum, maximum : int
        Inclusive bounds (``maximum=None`` means unbounded).
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if out < minimum or (maximum is not None and out > maximum):
        hi = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{name} must be >= {minimum}{hi}, got {out}")
    return out


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return `value` as a finite float within the given bounds, or raise ValueError."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    if low is not None and (out < low or (low_open and out == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {out}")
    if high is not None and (out > high or (high_open and out == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {out}")
    return out


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return `value` if it is one of `choices`, else raise ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_params(where: str, params: dict, allowed: tuple[str, ...]) -> None:
    """Reject keyword parameters that `where` does not understand."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        ok = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"{where}: unknown parameter(s) {', '.join(unknown)}; accepted: {ok}")


def np_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A numpy Generator from an int seed, an existing Generator, or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None:
        check_int("seed", seed, minimum=0)
    return np.random.default_rng(seed)


def seed_record(seed: int | np.random.Generator | None) -> int | None:
    """The seed as stored in ``BlockProblem.meta``: an int, or None for a Generator/None."""
    if seed is None or isinstance(seed, np.random.Generator):
        return None
    return operator.index(seed)


def finish(
    X: torch.Tensor,
    noise_std: float,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str,
) -> torch.Tensor:
    """Add i.i.d. N(0, noise_std^2) noise to a float64 CPU batch, then cast and move it."""
    if noise_std > 0:
        X = X + noise_std * torch.randn(X.shape, generator=generator, dtype=torch.float64)
    return X.to(dtype=dtype, device=device)
