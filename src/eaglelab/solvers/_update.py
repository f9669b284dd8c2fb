"""EAGLE's UPDATE (brief section 4), written once.

    At = A S;  Bt = B S;  rho = 1 / ||At||_2^2
    A' = A - eta*rho * At At^T At S^T
    B' = B - eta*rho * Bt At^T At S^T
    C' = C - gamma*rho * At At^T C
    D' = D + gamma*rho * Bt At^T C

Every right-hand side uses the A, B, C of the same step (updating A first and reusing it
for B stalls the iteration).  `update_reference` is the literal float64 transcription the
tests hold every fast path to.  `dense_update` is the fast S = I step used by the solvers:
it forms the smaller of the two Gram matrices (A A^T, d x d, or A^T A, n x n) once, so one
step costs O(min(n d^2, d n^2)), and reuses it for A, B, C and D.  `sketched_update` is the
S != I step, with S either a dense n x r matrix or an index array (row sampling: S = I[:, idx]).
The steps run on numpy arrays or on torch tensors on their device (`_xp`): one
implementation of the arithmetic for both.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import eigsh

from eaglelab.solvers._xp import asarray_like, copy, is_numpy, namespace

__all__ = ["update_reference", "dense_update", "sketched_update", "lambda_max"]


def update_reference(A, B, C, D, step_A: float, step_C: float, S=None):
    """One literal UPDATE with absolute steps step_A = eta*rho and step_C = gamma*rho.

    Works on numpy arrays and torch tensors; S = None means S = I.
    """
    At = A if S is None else A @ S
    Bt = B if S is None else B @ S
    St = None if S is None else S.T
    AtAtT = At @ At.T
    A_new = A - step_A * (AtAtT @ At if St is None else AtAtT @ At @ St)
    B_new = B - step_A * (Bt @ At.T @ At if St is None else Bt @ At.T @ At @ St)
    C_new = C - step_C * (AtAtT @ C)
    D_new = D + step_C * (Bt @ At.T @ C)
    return A_new, B_new, C_new, D_new


def lambda_max(G, v=None, iters: int = 20, rtol: float = 1e-12):
    """Largest eigenvalue of a symmetric PSD matrix G (numpy or a tensor on any device),
    and its eigenvector (same namespace and device as G).

    Cold start (v None): on numpy, Lanczos (scipy eigsh) for sizes above 64 and a dense
    eigensolver below, both accurate to ~1e-12; on a tensor, the dense eigensolver up to
    size 64 and above it power iteration on the device from a fixed random start (at most
    `COLD_POWER_ITERS` products, relative change 1e-12).  Warm start: power iteration from
    v; EAGLE's update keeps A's singular vectors, so the previous step's vector is already
    converged and a few products suffice.  The Rayleigh quotient never overestimates.
    """
    xp = namespace(G)
    m = G.shape[0]
    if v is None:
        if m <= 64:
            w, V = xp.linalg.eigh(G)
            return float(w[-1]), copy(V[:, -1])
        if is_numpy(xp):
            v0 = np.ones(m, dtype=G.dtype) / np.sqrt(m)
            w, V = eigsh(G, k=1, which="LA", v0=v0, tol=1e-13)
            return float(w[0]), V[:, 0].astype(G.dtype)
        start = np.random.default_rng(0).standard_normal(m)
        v = asarray_like(start / np.linalg.norm(start), G)
        iters = max(iters, COLD_POWER_ITERS)
    lam = 0.0
    for _ in range(iters):
        w = G @ v
        nw = float(xp.linalg.vector_norm(w))
        if nw == 0.0 or not np.isfinite(nw):
            return nw, v
        new = float(xp.sum(v * w))
        v = w / nw
        if abs(new - lam) <= rtol * abs(new):
            return new, v
        lam = new
    return lam, v


COLD_POWER_ITERS = 500


class DenseWorkspace:
    """The warm power-iteration vector and the freeze state for repeated dense steps of one
    (A, B); d x n sets which Gram matrix a step forms (the smaller)."""

    def __init__(self, d: int, n: int) -> None:
        self.gram_rows = d <= n  # use G = A A^T (d x d); else H = A^T A (n x n)
        self.v = None
        self.freeze_requested = False
        self.frozen: tuple | None = None  # (Gram, B A^T or B, A or None)
        self.iso = float("nan")           # the last step's ||A_l - A_l A_l^T A_l||_F^2
        self.modes = min(d, n)            # singular values it sums over

    @property
    def is_frozen(self) -> bool:
        return self.frozen is not None


def dense_update(A, B, C, D, eta: float, gamma: float, ws: DenseWorkspace,
                 rho: float | None = None, normalise: bool = True,
                 update_AB: bool = True, want_iso: bool = False) -> tuple[float, float]:
    """One S = I step, in place on (A, B, C, D) - numpy arrays or tensors of one device.

    rho None: rho = 1 / ||A||_2^2 from warm power iteration; with `normalise`, A and B are
    first divided by ||A||_2 (B A^+ C is unchanged), so rho = 1 and ||A_l||_2 = 1 at every
    step - with eta = 1/3 that rescaling is the factor 3/2 of the brief.  A given rho is an
    absolute step (eta and gamma are then multiplied by it) and nothing is normalised.
    update_AB=False keeps A, B fixed (accelerated variant after freezing; eta = 0 gives
    gradient descent in the C/D form).
    Returns (lambda_max of the Gram matrix before normalising, and - when want_iso - the
    partial-isometry defect ||A - A A^T A||_F^2 of the normalised A, else nan).
    """
    xp = namespace(A)
    if ws.frozen is not None:
        return _frozen_update(C, D, gamma, ws), 0.0
    gram = A @ A.T if ws.gram_rows else A.T @ A
    if rho is None:
        lam, ws.v = lambda_max(gram, ws.v)
        if not np.isfinite(lam) or lam <= 0:
            raise FloatingPointError("||A||_2 is zero or not finite during the iteration")
        if normalise:
            s = 1.0 / np.sqrt(lam)
            A *= s
            B *= s
            gram *= 1.0 / lam
            rho = 1.0
        else:
            rho = 1.0 / lam
    else:
        lam = float("nan")
    sA, sC = eta * rho, gamma * rho
    update_AB = update_AB and sA != 0.0
    iso = float("nan")
    ws.iso = float("nan")
    if ws.freeze_requested and rho == 1.0 and normalise:
        # A is a partial isometry to working precision: keep the normalised Gram matrix and
        # stop updating A and B (the accelerated variant); later steps only move C and D.
        ws.frozen = (gram, B @ A.T if ws.gram_rows else copy(B), A if not ws.gram_rows else None)
        return _frozen_update(C, D, gamma, ws), 0.0
    if ws.gram_rows:
        BAt = B @ A.T                      # d' x d
        D += sC * (BAt @ C)
        C -= sC * (gram @ C)
        if update_AB:
            tmp = gram @ A                 # G A
            iso = float(xp.linalg.vector_norm(A - tmp) ** 2) if want_iso else iso
            B -= sA * (BAt @ A)
            tmp *= sA
            A -= tmp
    else:
        AtC = A.T @ C                      # n x n'
        D += sC * (B @ AtC)
        C -= sC * (A @ AtC)
        if update_AB:
            tmp = A @ gram                 # A H
            iso = float(xp.linalg.vector_norm(A - tmp) ** 2) if want_iso else iso
            B -= sA * (B @ gram)
            tmp *= sA
            A -= tmp
    ws.iso = iso if normalise else float("nan")
    return lam, iso


def _frozen_update(C, D, gamma: float, ws: DenseWorkspace) -> float:
    gram, BAt_or_B, A = ws.frozen
    if ws.gram_rows:
        D += gamma * (BAt_or_B @ C)
        C -= gamma * (gram @ C)
    else:
        AtC = A.T @ C
        D += gamma * (BAt_or_B @ AtC)
        C -= gamma * (A @ AtC)
    return 1.0


def sketched_update(A, B, C, D, S, eta: float, gamma: float, rho: float | None = None,
                    normalise: bool = False) -> float:
    """One step with sketch S (dense n x r, or an integer index vector meaning
    S = I[:, idx]), in place; S lives in A's namespace and on its device.  rho None:
    rho = 1/||A S||_2^2 computed exactly (r x r eigenvalue problem).  normalise (with rho
    None): first divide A and B by ||A S||_2 (B A^+ C is invariant under it) and step with
    rho = 1, so A_l keeps its scale instead of shrinking by up to (1 - eta) per step until
    it underflows.  Returns the rho used (1 when normalised)."""
    xp = namespace(A)
    rows = S.ndim == 1
    At = A[:, S] if rows else A @ S                # d x r
    Bt = B[:, S] if rows else B @ S                # d' x r
    K = At.T @ At                                  # r x r
    if rho is None:
        if K.shape[0] <= 512:
            lam = float(xp.linalg.eigvalsh(K)[-1])
        else:
            lam = lambda_max(K)[0]
        if not np.isfinite(lam) or lam <= 0:
            raise FloatingPointError("||A S||_2 is zero or not finite; draw another sketch")
        rho = 1.0 / lam
        if normalise:
            c = float(np.sqrt(rho))
            A *= c
            B *= c
            At, Bt, K, rho = At * c, Bt * c, K * rho, 1.0
    sA, sC = eta * rho, gamma * rho
    AtC = At.T @ C                                 # r x n'
    D += sC * (Bt @ AtC)
    C -= sC * (At @ AtC)
    if sA != 0.0:
        dA = At @ K                                # d x r
        dB = Bt @ K                                # d' x r
        if rows:
            A[:, S] -= sA * dA
            B[:, S] -= sA * dB
        else:
            A -= sA * (dA @ S.T)
            B -= sA * (dB @ S.T)
    return rho
