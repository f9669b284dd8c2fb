"""The extracted algorithm: EAGLE with per-layer steps, sketches and machine layout.

Layer l applies UPDATE (brief section 4) with absolute steps s_A[l] = eta_l / N_l and
s_C[l] = gamma_l / N_l, where N_l is the calibration norm (the batch-max ||A_l||_2^2 on the
training distribution at that layer - the model learned fixed steps, not per-problem rho):

- unconstrained / estimation: S = I;
- compute-limited: a learned sketch S_l (n x r, orthonormal columns);
- distributed: every machine mu updates its own (A^mu, B^mu) and the shared (C, D) with S = I
  on its columns, then C, D are averaged over machines.

`run` applies it to a batch of prompts in the model's layout and sign convention (the D slot
holds MINUS the running prediction), so its activations compare entry by entry with the
model's.  `adaptive=True` uses per-problem rho_l = 1/||A_l S||_2^2 with the same eta_l,
gamma_l instead - canonical EAGLE, for tasks whose scale differs from the training data.
`to_schedule` hands the fixed-step version to the solver (`eagle(..., schedule=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from eaglelab.solvers.schedule import Schedule

__all__ = ["ExtractedAlgorithm", "eagle_layers"]


@dataclass
class ExtractedAlgorithm:
    regime: str
    n: int
    d: int
    eta: list[float]            # eta_l relative to the calibration norm
    gamma: list[float]
    norms: list[float]          # N_l: batch-max ||A_l||_2^2 at layer l (calibration)
    sketches: list[np.ndarray | None] | None = None
    partition: list[np.ndarray] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def layers(self) -> int:
        return len(self.eta)

    @property
    def steps_A(self) -> list[float]:
        return [e / N for e, N in zip(self.eta, self.norms, strict=True)]

    @property
    def steps_C(self) -> list[float]:
        return [g / N for g, N in zip(self.gamma, self.norms, strict=True)]

    def run(self, Z0: torch.Tensor, adaptive: bool = False) -> list[torch.Tensor]:
        """[Z_0, ..., Z_L] on prompts Z0 (B, T, W) in the model's convention (float64)."""
        return eagle_layers(Z0, self.d, self.n, self.steps_A, self.steps_C,
                            sketches=self.sketches, partition=self.partition,
                            eta_gamma=(self.eta, self.gamma) if adaptive else None)

    def predict(self, Z0: torch.Tensor, adaptive: bool = False) -> torch.Tensor:
        return -self.run(Z0, adaptive)[-1][:, self.d:, self.n:]

    def to_schedule(self) -> Schedule:
        if self.partition is not None:
            raise ValueError("a distributed algorithm has no single-worker Schedule; use run()")
        return Schedule(self.steps_A, self.steps_C, self.sketches,
                        meta={"regime": self.regime, "eta": self.eta, "gamma": self.gamma})

    def to_dict(self) -> dict:
        return {"regime": self.regime, "n": self.n, "d": self.d, "eta": self.eta,
                "gamma": self.gamma, "norms": self.norms, "steps_A": self.steps_A,
                "steps_C": self.steps_C,
                "sketch_ranks": None if self.sketches is None else
                [None if S is None else int(S.shape[1]) for S in self.sketches],
                "machines": None if self.partition is None else len(self.partition)}


def _spectral_sq(M: torch.Tensor) -> torch.Tensor:
    return torch.linalg.matrix_norm(M, ord=2) ** 2


def eagle_layers(Z0: torch.Tensor, d: int, n: int, steps_A, steps_C, *, sketches=None,
                 partition=None, eta_gamma=None) -> list[torch.Tensor]:
    """Batched EAGLE in the model's layout: Z = [[A, C], [B, -D]] per problem.

    steps_A/steps_C: absolute per-layer steps; eta_gamma=(eta_l, gamma_l) switches to
    per-problem rho (then steps_* are ignored).  Returns every layer's Z (float64)."""
    Z = Z0.to(torch.float64)
    out = [Z]
    blocks = [torch.arange(n)] if partition is None else [torch.as_tensor(J) for J in partition]
    M = len(blocks)
    for l in range(len(steps_A)):
        A, B, C, Dm = Z[:, :d, :n], Z[:, d:, :n], Z[:, :d, n:], Z[:, d:, n:]
        S = None if sketches is None or sketches[l] is None else torch.as_tensor(sketches[l])
        A_new, B_new = A.clone(), B.clone()
        C_acc = torch.zeros_like(C)
        D_acc = torch.zeros_like(Dm)
        for J in blocks:
            Am, Bm = A[..., J], B[..., J]
            At = Am if S is None else Am @ S
            Bt = Bm if S is None else Bm @ S
            if eta_gamma is None:
                sA = torch.full((Z.shape[0], 1, 1), float(steps_A[l]), dtype=Z.dtype)
                sC = torch.full((Z.shape[0], 1, 1), float(steps_C[l]), dtype=Z.dtype)
            else:
                rho = (1.0 / _spectral_sq(At))[:, None, None]
                sA, sC = eta_gamma[0][l] * rho, eta_gamma[1][l] * rho
            K = At.transpose(-1, -2) @ At
            dA, dB = At @ K, Bt @ K
            if S is not None:
                dA, dB = dA @ S.T, dB @ S.T
            A_new[..., J] = Am - sA * dA
            B_new[..., J] = Bm - sA * dB
            AtC = At.transpose(-1, -2) @ C
            C_acc = C_acc + (C - sC * (At @ AtC))
            D_acc = D_acc + (Dm - sC * (Bt @ AtC))   # D slot holds minus EAGLE's D
        top = torch.cat([A_new, C_acc / M], dim=-1)
        bottom = torch.cat([B_new, D_acc / M], dim=-1)
        Z = torch.cat([top, bottom], dim=-2)
        out.append(Z)
    return out
