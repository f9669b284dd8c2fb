"""The extracted algorithm: EAGLE with per-layer steps, sketches and machine layout.

Layer l applies UPDATE (brief section 4) with absolute steps s_A[l] = eta_l / N_l and
s_C[l] = gamma_l / N_l, where N_l is the calibration norm (the batch-max ||A_l S_l||_2^2 on the
training distribution at that layer - the model learned fixed steps, not per-problem rho):

- unconstrained / estimation: S = I;
- compute-limited: a learned sketch S_l (n x r) on the query side - the learned eigenvectors
  scaled so that its Gram keeps the learned eigenvalues (`extract.scaling.weighted_sketch`;
  orthonormal when they are equal); the value side reads A R_l with `value_maps` R_l (n x n,
  rank r) as learned, which trained models do NOT align with S_l S_l^T (the paper's form,
  `paper_form()`, puts an orthonormal S_l S_l^T on both sides);
- distributed: every machine mu updates its own (A^mu, B^mu) and the shared (C, D) with S = I
  on its columns, then C, D are averaged over machines (the paper's local update; a head of
  the distributed model reads only its machine's columns, so this is the only form).

`paper_form()` is the same algorithm in the paper's form (S S^T on both sides), whose
fidelity the extraction reports next to the learned form's in the compute-limited regime.

`run` applies it to a batch of prompts in the model's layout and sign convention (the D slot
holds MINUS the running prediction), so its activations compare entry by entry with the
model's.  `adaptive=True` uses per-problem rho_l = 1/||A_l S||_2^2 with the same eta_l,
gamma_l instead - canonical EAGLE, for tasks whose scale differs from the training data.
`to_schedule` hands the fixed-step version to the solver (`eagle(..., schedule=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
    norms: list[float]          # N_l: batch-max ||A_l S_l||_2^2 at layer l (calibration)
    sketches: list[np.ndarray | None] | None = None
    partition: list[np.ndarray] | None = None
    value_maps: list[np.ndarray] | None = None   # compute-limited: R_l per layer (n x n)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.value_maps is not None:
            if self.sketches is None:
                raise ValueError("value_maps (learned value-side maps) need sketches")
            self.value_maps = [np.asarray(R, dtype=np.float64) for R in self.value_maps]
            if len(self.value_maps) != len(self.eta) or any(
                    R.shape != (self.n, self.n) for R in self.value_maps):
                raise ValueError(f"value_maps must hold one {self.n} x {self.n} array per layer "
                                 f"({len(self.eta)} layers)")

    @property
    def layers(self) -> int:
        return len(self.eta)

    @property
    def steps_A(self) -> list[float]:
        return [e / N for e, N in zip(self.eta, self.norms, strict=True)]

    @property
    def steps_C(self) -> list[float]:
        return [g / N for g, N in zip(self.gamma, self.norms, strict=True)]

    def paper_form(self) -> ExtractedAlgorithm:
        """The same steps in the paper's form: the sketch orthonormalised (one eigenvalue:
        S_l S_l^T a projector) and on the value side the least-squares fit of the learned
        map R_l by a multiple of S_l S_l^T, i.e. eta_l scaled by tr(S_l^T R_l S_l) / r."""
        eta, sketches = self.eta, self.sketches
        if sketches is not None:
            sketches = [None if S is None else np.linalg.qr(S)[0] for S in sketches]
        if self.value_maps is not None:
            eta = [e * float(np.trace(S.T @ R @ S)) / S.shape[1]
                   for e, S, R in zip(self.eta, sketches, self.value_maps, strict=True)]
        return replace(self, eta=eta, sketches=sketches, value_maps=None)

    def run(self, Z0: torch.Tensor, adaptive: bool = False) -> list[torch.Tensor]:
        """[Z_0, ..., Z_L] on prompts Z0 (B, T, W) in the model's convention (float64)."""
        return eagle_layers(Z0, self.d, self.n, self.steps_A, self.steps_C,
                            sketches=self.sketches, partition=self.partition,
                            eta_gamma=(self.eta, self.gamma) if adaptive else None,
                            value_maps=self.value_maps)

    def predict(self, Z0: torch.Tensor, adaptive: bool = False) -> torch.Tensor:
        return -self.run(Z0, adaptive)[-1][:, self.d:, self.n:]

    def to_schedule(self) -> Schedule:
        if self.partition is not None:
            raise ValueError("a distributed algorithm has no single-worker Schedule; use run()")
        if self.value_maps is not None:
            raise ValueError("the solver's sketched UPDATE uses S S^T on the value side; this "
                             "algorithm has learned value maps - use paper_form().to_schedule() "
                             "or run()")
        return Schedule(self.steps_A, self.steps_C, self.sketches,
                        meta={"regime": self.regime, "eta": self.eta, "gamma": self.gamma})

    def to_dict(self) -> dict:
        return {"regime": self.regime, "n": self.n, "d": self.d, "eta": self.eta,
                "gamma": self.gamma, "norms": self.norms, "steps_A": self.steps_A,
                "steps_C": self.steps_C,
                "sketch_ranks": None if self.sketches is None else
                [None if S is None else int(S.shape[1]) for S in self.sketches],
                "machines": None if self.partition is None else len(self.partition),
                "value_maps": None if self.value_maps is None else
                [R.tolist() for R in self.value_maps]}


def _spectral_sq(M: torch.Tensor) -> torch.Tensor:
    return torch.linalg.matrix_norm(M, ord=2) ** 2


def eagle_layers(Z0: torch.Tensor, d: int, n: int, steps_A, steps_C, *, sketches=None,
                 partition=None, eta_gamma=None, value_maps=None) -> list[torch.Tensor]:
    """Batched EAGLE in the model's layout: Z = [[A, C], [B, -D]] per problem.

    steps_A/steps_C: absolute per-layer steps; eta_gamma=(eta_l, gamma_l) switches to
    per-problem rho (then steps_* are ignored).  With a partition, every machine updates its
    own columns and the averaged C, D (distributed EAGLE).  value_maps (with sketches):
    per layer an n x n R_l, the value side then reads A R_l instead of A S_l S_l^T.
    Returns every layer's Z (float64)."""
    Z = Z0.to(torch.float64)
    out = [Z]
    blocks = [torch.arange(n)] if partition is None else [torch.as_tensor(J) for J in partition]
    M = len(blocks)
    batch = Z.shape[0]
    for l in range(len(steps_A if eta_gamma is None else eta_gamma[0])):
        A, B, C, Dm = Z[:, :d, :n], Z[:, d:, :n], Z[:, :d, n:], Z[:, d:, n:]
        S = None if sketches is None or sketches[l] is None else torch.as_tensor(sketches[l])
        V = A if S is None else A @ S @ S.T          # what the value read-out sees of A
        if value_maps is not None and value_maps[l] is not None:
            V = A @ torch.as_tensor(value_maps[l], dtype=Z.dtype)
        A_new, B_new = A.clone(), B.clone()
        C_acc = torch.zeros_like(C)
        D_acc = torch.zeros_like(Dm)
        for J in blocks:
            At = A[..., J] if S is None else A @ S
            Bt = B[..., J] if S is None else B @ S
            if eta_gamma is None:
                scale, rel_A, rel_C = torch.ones(batch, 1, 1, dtype=Z.dtype), steps_A, steps_C
            else:
                scale = (1.0 / _spectral_sq(At))[:, None, None]
                rel_A, rel_C = eta_gamma
            cols = torch.zeros(batch, 1, n, dtype=Z.dtype)   # step per written column
            cols[..., J] = float(rel_A[l]) * scale
            G = At.transpose(-1, -2) @ V
            A_new = A_new - cols * (At @ G)
            B_new = B_new - cols * (Bt @ G)
            sC = float(np.asarray(rel_C[l])) * scale
            AtC = At.transpose(-1, -2) @ C
            C_acc = C_acc + (C - sC * (At @ AtC))
            D_acc = D_acc + (Dm - sC * (Bt @ AtC))   # D slot holds minus EAGLE's D
        top = torch.cat([A_new, C_acc / M], dim=-1)
        bottom = torch.cat([B_new, D_acc / M], dim=-1)
        Z = torch.cat([top, bottom], dim=-2)
        out.append(Z)
    return out
