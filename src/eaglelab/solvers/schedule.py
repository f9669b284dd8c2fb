"""A fixed per-iteration schedule: what extraction produces and what the solvers consume.

Layer l of a trained model (or step l of any fixed-step EAGLE) is UPDATE with absolute steps
step_A[l] = eta_l * rho_l and step_C[l] = gamma_l * rho_l and sketch S_l (None = identity).
Running a Schedule does not recompute ||A||: the steps are what the model learned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Schedule"]


@dataclass(frozen=True)
class Schedule:
    step_A: tuple[float, ...]
    step_C: tuple[float, ...]
    sketches: tuple[np.ndarray | None, ...] = field(default=())
    meta: dict = field(default_factory=dict, compare=False)

    def __init__(self, step_A: Sequence[float], step_C: Sequence[float],
                 sketches: Sequence[np.ndarray | None] | None = None,
                 meta: dict | None = None) -> None:
        sa = tuple(float(x) for x in step_A)
        sc = tuple(float(x) for x in step_C)
        if len(sa) == 0:
            raise ValueError("Schedule needs at least one step; step_A is empty")
        if len(sa) != len(sc):
            raise ValueError(f"Schedule: step_A has {len(sa)} entries but step_C has {len(sc)}")
        if not all(np.isfinite(sa + sc)):
            raise ValueError("Schedule: steps must be finite numbers")
        sk = tuple(sketches) if sketches is not None else (None,) * len(sa)
        if len(sk) != len(sa):
            raise ValueError(f"Schedule: {len(sk)} sketches for {len(sa)} steps")
        sk = tuple(None if S is None else np.asarray(S, dtype=np.float64) for S in sk)
        for S in sk:
            if S is not None and (S.ndim != 2 or not np.all(np.isfinite(S))):
                raise ValueError("Schedule: each sketch must be a finite 2-D array (n x r)")
        object.__setattr__(self, "step_A", sa)
        object.__setattr__(self, "step_C", sc)
        object.__setattr__(self, "sketches", sk)
        object.__setattr__(self, "meta", dict(meta or {}))

    def __len__(self) -> int:
        return len(self.step_A)

    @classmethod
    def constant(cls, step_A: float, step_C: float, length: int) -> Schedule:
        return cls([step_A] * length, [step_C] * length)

    def check_columns(self, n: int) -> None:
        for l, S in enumerate(self.sketches):
            if S is not None and S.shape[0] != n:
                raise ValueError(f"Schedule sketch {l} has {S.shape[0]} rows but A has {n} columns")

    def to_dict(self) -> dict:
        return {"step_A": list(self.step_A), "step_C": list(self.step_C),
                "sketch_ranks": [None if S is None else int(S.shape[1]) for S in self.sketches],
                "meta": self.meta}
