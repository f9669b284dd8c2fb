"""The distributed regime's layout: machines as a column partition of the row-token prompt.

Derivation (brief sections 2 and 4).  Tokens are the rows of Z = [[A, C], [B, D]]; machine mu
owns the contiguous column block J_mu = {mu n_mu, ..., (mu + 1) n_mu - 1} (n_mu = n / M) of
the n visible columns, i.e. A^mu = A[:, J_mu] and B^mu = B[:, J_mu]; the n' columns of C and
D (N') are shared.  No token is moved or transposed: the plain block form *is* the layout,
and the partition lives in the weights.  Head h of a layer belongs to machine mu(h) (heads
are machine-major: h = mu * heads_per_machine + j).  It READS only its machine's local
columns R_mu = J_mu + N': its query, key and value factors are supported on the rows R_mu
(stored compactly as |R_mu| x k and embedded here), so with z_i^mu = Z[i, R_mu]

    S_h = (Z[:, R_mu] Wq_h)(Z_keys[:, R_mu] Wk_h)^T,   head_h = S_h (Z_keys[:, R_mu] Wv_h) Wp_h^T,

and no other machine's data reaches the head; its projection Wp_h (W rows) may write every
column ("send").  What it writes on another machine's columns J_nu is communication of the
size of A; the paper's trained models write only the shared columns there.

Hand-set weights (one round of distributed EAGLE with absolute steps s_A^mu, s_C^mu):

    W_QK_h = a1 * I on J_mu x J_mu, zero elsewhere;
    W_VP_h = a2 * I on J_mu -> J_mu,  (a3 / M) * I on the shared n' columns, zero elsewhere;
    a1 a2 = -s_A^mu,  a1 a3 = -s_C^mu.

Then the key rows give  A^mu' = A^mu - s_A^mu A^mu A^mu^T A^mu  (only head mu writes J_mu),
C' = C - (1/M) sum_mu s_C^mu A^mu A^mu^T C  and the query rows give
B^mu' = B^mu - s_A^mu B^mu A^mu^T A^mu,  D_slot' = D_slot - (1/M) sum_mu s_C^mu B^mu A^mu^T C:
every machine's UPDATE followed by averaging C' and D' over machines, with the same sign
flip of the D slot as in the other regimes (D_slot = -D_EAGLE).  The shared columns are
exactly what a machine communicates: (d + d') n' numbers per round.

`DistributedLayout` is the one place that converts between the block form and the
per-machine form (data: `to_machines` / `from_machines`; weights: `embed_local` /
`restrict_local`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DistributedLayout", "MachineBlocks"]


@dataclass
class MachineBlocks:
    """Per-machine view of a prompt: A^mu, B^mu for every machine and the shared C, D."""

    A: list
    B: list
    C: object
    D: object


class DistributedLayout:
    """Contiguous column partition of n columns over M machines (M must divide n)."""

    def __init__(self, n: int, n_prime: int, machines: int) -> None:
        if machines < 1 or n % machines != 0:
            raise ValueError(f"machines={machines} must be a positive divisor of n={n}")
        self.n, self.n_prime, self.machines = n, n_prime, machines
        self.block = n // machines

    @property
    def width(self) -> int:
        return self.n + self.n_prime

    def columns(self, mu: int) -> np.ndarray:
        """J_mu: the column indices machine mu owns."""
        if not 0 <= mu < self.machines:
            raise ValueError(f"machine index {mu} is outside 0..{self.machines - 1}")
        return np.arange(mu * self.block, (mu + 1) * self.block)

    def local_columns(self, mu: int) -> np.ndarray:
        """R_mu = J_mu followed by the n' shared columns: what machine mu's heads read."""
        return np.concatenate([self.columns(mu), np.arange(self.n, self.width)])

    def partition(self) -> list[np.ndarray]:
        """[J_0, ..., J_{M-1}], the form `eaglelab.solvers.eagle_distributed` accepts."""
        return [self.columns(mu) for mu in range(self.machines)]

    def machine_of_head(self, h: int, heads_per_machine: int) -> int:
        return h // heads_per_machine

    # data -----------------------------------------------------------------------------
    def to_machines(self, X, d: int) -> MachineBlocks:
        """Split a block-form X (..., d + d', n + n') into per-machine (A^mu, B^mu) and the
        shared (C, D)."""
        A, B = X[..., :d, : self.n], X[..., d:, : self.n]
        return MachineBlocks(A=[A[..., :, J] for J in self.partition()],
                             B=[B[..., :, J] for J in self.partition()],
                             C=X[..., :d, self.n:], D=X[..., d:, self.n:])

    def from_machines(self, blocks: MachineBlocks):
        """Inverse of `to_machines`."""
        if len(blocks.A) != self.machines or len(blocks.B) != self.machines:
            raise ValueError(f"expected {self.machines} machine blocks, got {len(blocks.A)}")
        if isinstance(blocks.C, torch.Tensor):
            top = torch.cat([*blocks.A, blocks.C], dim=-1)
            bottom = torch.cat([*blocks.B, blocks.D], dim=-1)
            return torch.cat([top, bottom], dim=-2)
        top = np.concatenate([*blocks.A, blocks.C], axis=-1)
        bottom = np.concatenate([*blocks.B, blocks.D], axis=-1)
        return np.concatenate([top, bottom], axis=-2)

    # weights --------------------------------------------------------------------------
    def embedding(self, heads_per_machine: int, dtype=torch.float32) -> torch.Tensor:
        """E of shape (H, W, n_mu + n'): E[h] = I[:, R_mu(h)], so the full factor of a head
        is E[h] @ compact."""
        H = self.machines * heads_per_machine
        R = self.block + self.n_prime
        E = torch.zeros(H, self.width, R, dtype=dtype)
        for h in range(H):
            cols = self.local_columns(self.machine_of_head(h, heads_per_machine))
            E[h, cols, torch.arange(R)] = 1
        return E

    def embed_local(self, compact: torch.Tensor, heads_per_machine: int) -> torch.Tensor:
        """Compact per-head read factors (..., H, n_mu + n', k) -> full (..., H, W, k)."""
        E = self.embedding(heads_per_machine, compact.dtype).to(compact.device)
        return E @ compact

    def restrict_local(self, full: torch.Tensor, heads_per_machine: int,
                       check: bool = True) -> torch.Tensor:
        """Full per-head read factors (..., H, W, k) -> compact (..., H, n_mu + n', k).

        With check=True, raise if a head has nonzero rows outside its local columns."""
        E = self.embedding(heads_per_machine, full.dtype).to(full.device)
        compact = E.transpose(-1, -2) @ full
        if check and not torch.equal(E @ compact, full):
            raise ValueError("a head's query/key/value factor has rows outside its machine's "
                             "columns J_mu and the shared columns; the distributed regime only "
                             "allows local reads")
        return compact
