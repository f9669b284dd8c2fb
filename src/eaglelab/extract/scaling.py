"""From structured products to EAGLE's constants (brief section 3, step 4).

A head with top-left blocks P (of W_QK) and Q (of W_VP) and shared-column coefficient c
(mean diagonal of W_VP's n' x n' block) acts as UPDATE with absolute steps

    a1 = tr(P) / r,  a2 = tr(Q) / r,   s_A = -a1 a2,   s_C = -a1 c,

r the rank of the support (n unconstrained, the sketch rank in the compute-limited regime,
n_mu for a machine's head): a1 and a2 are the least-squares fits of P and Q to multiples of
the identity (of S S^T), so s_A = -a1 a2 and s_C = -a1 a3 exactly for P = a1 I, Q = a2 I,
c = a3, and likewise for P = a1 S S^T, Q = a2 S S^T.

Compute-limited heads: the query sketch S is the top-left W_QK block's rank-r eigenspace
with its eigenvalues kept (`weighted_sketch`: a1 S S^T is the block's rank-r part, so S is
not orthonormal when the learned eigenvalues differ; a1 = tr(P) / r as above).  They learn
their value block Q as a rank-r map of its own, not a multiple of the query sketch's S S^T
(the share of ||Q|| inside span S is reported as `value_alignment`).  There `value_map` reads
Q = a2 R with R the rank-r truncation of Q scaled to ||R||_F = sqrt(r) (the norm of S S^T)
and a2 = sign(tr(S^T Q S)) ||Q_r||_F / sqrt(r), which equals tr(Q) / r when Q = a2 S S^T;
the extracted update is A <- A - s_A (A S)(A S)^T A R.  `head_scales` is this reading of
one head, shared by the steps, the extracted algorithm and `extract.residue`.

Fitting a1 and a2 separately (as the paper's quantisation does) keeps the noise of the two
blocks from correlating into the step, which tr(P Q) would not.  A machine's head writes its
shared columns scaled by 1/M (averaging), so its s_C is multiplied by M.

The scaling law: s_A,l ~ eta / N_l and s_C,l ~ gamma / N_l with N_l the largest ||A_l||_2^2
of a training batch at layer l.  `fit_constant` fits eta (or gamma) by least squares through
the origin over the layers.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["head_scales", "head_steps", "layer_steps", "cross_writes", "batch_max_norms",
           "task_norms", "inputs_in_range", "fit_constant", "learned_sketch",
           "weighted_sketch", "value_map", "reference_steps"]


def head_scales(W_QK: np.ndarray, W_VP: np.ndarray, n: int, columns=None,
                rank: int | None = None) -> dict:
    """A head's structured reading: a1, a2 (top-left blocks on its columns, or with `rank`
    the query sketch S (`weighted_sketch`), its orthonormal `basis` and the value map R),
    c (the shared columns' diagonal)."""
    J = np.arange(n) if columns is None else np.asarray(columns)
    r = len(J) if rank is None else rank
    out = {"a1": float(np.trace(W_QK[np.ix_(J, J)])) / r,
           "a2": float(np.trace(W_VP[np.ix_(J, J)])) / r,
           "c": float(np.mean(np.diag(W_VP[n:, n:])))}
    if rank is not None:
        out["basis"] = learned_sketch(W_QK, n, rank)
        out["S"] = weighted_sketch(W_QK, n, out["basis"], out["a1"])
        out["a2"], out["R"] = value_map(W_VP, n, rank, out["basis"])
    return out


def head_steps(W_QK: np.ndarray, W_VP: np.ndarray, n: int, columns=None,
               rank: int | None = None, machines: int = 1) -> tuple[float, float]:
    """(s_A, s_C) of one head; with `rank` (compute-limited) a2 is the value map's scale."""
    h = head_scales(W_QK, W_VP, n, columns, rank)
    return -h["a1"] * h["a2"], -h["a1"] * h["c"] * machines


def layer_steps(prods, regime: str, n: int, *, r: int | None = None,
                partition=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-layer (s_A, s_C) averaged over the layer's heads (one per machine in the
    distributed regime), and their spread across heads (std)."""
    sA, sC, sA_sd, sC_sd = [], [], [], []
    for l in range(prods.layers):
        pairs = []
        for h, (Wqk, Wvp) in enumerate(zip(prods.W_QK[l], prods.W_VP[l], strict=True)):
            if regime == "distributed":
                mu = h * len(partition) // len(prods.W_QK[l])   # heads are machine-major
                pairs.append(head_steps(Wqk, Wvp, n, columns=partition[mu],
                                        machines=len(partition)))
            else:
                pairs.append(head_steps(Wqk, Wvp, n, rank=r if regime == "compute-limited"
                                        else None))
        arr = np.asarray(pairs)
        if regime != "distributed":
            arr = arr.sum(axis=0, keepdims=True)   # several heads of one layer add up
        sA.append(arr[:, 0].mean())
        sC.append(arr[:, 1].mean())
        sA_sd.append(arr[:, 0].std())
        sC_sd.append(arr[:, 1].std())
    return np.asarray(sA), np.asarray(sC), np.asarray(sA_sd), np.asarray(sC_sd)


def cross_writes(prods, n: int, partition) -> list[float]:
    """Distributed regime: per layer, how strongly the heads write other machines' columns,
    ||W_VP[:, J_nu != J_mu]||_F / ||W_VP[:, J_mu + N']||_F averaged over the heads (a head of
    machine mu reads only its local columns, so W_VP's rows outside them are zero).  0 is the
    paper's structure - off-machine blocks diag(0, a2 I_n'): only C and D are sent; a
    random head gives about sqrt((n - n_mu) / (n_mu + n'))."""
    M = len(partition)
    out = []
    for l in range(prods.layers):
        H = len(prods.W_QK[l])
        per_machine = max(H // M, 1)
        ratios = []
        for h, Wvp in enumerate(prods.W_VP[l]):
            mu = min(h // per_machine, M - 1)
            own = np.r_[np.asarray(partition[mu]), np.arange(n, Wvp.shape[1])]
            other = np.setdiff1d(np.arange(n), partition[mu])
            size = float(np.linalg.norm(Wvp[:, own]))
            if size > 0:
                ratios.append(float(np.linalg.norm(Wvp[:, other])) / size)
        out.append(float(np.mean(ratios)) if ratios else 0.0)
    return out


def task_norms(Zs: list[torch.Tensor], d: int, n: int, partition=None,
               sketches=None) -> np.ndarray:
    """(L, B): ||A_l S_l||_2^2 of every task (the largest over machines) at the input of
    every layer l = 0..L-1 (Zs: the activations [Z_0, ..., Z_L], each (B, T, W))."""
    out = []
    blocks = [np.arange(n)] if partition is None else partition
    for l, Z in enumerate(Zs[:-1]):
        A = Z[..., :d, :n].to(torch.float64)
        per_machine = []
        for J in blocks:
            Am = A[..., torch.as_tensor(J)]
            if sketches is not None and sketches[l] is not None:
                Am = Am @ torch.as_tensor(sketches[l])
            per_machine.append(torch.linalg.matrix_norm(Am, ord=2) ** 2)
        out.append(torch.stack(per_machine).amax(dim=0).numpy())
    return np.stack(out)


def reference_steps(Zs: list[torch.Tensor], d: int, n: int, rank: int, norms,
                    partition=None) -> dict[str, list[float]]:
    """Two parameter-free step schedules read from the data at every layer's input, relative
    to the batch-max norms N_l (`norms`), to set beside the learned eta_l, gamma_l:

    gamma_gd   = 2 N_l / (s_max^2 + s_min^2): the fixed step that minimises the worst
                 contraction of C' = C - s A A^T C over [s_min^2, s_max^2] (optimal GD);
    eta_equal  = N_l / (s_min^2 + s_min s_max + s_max^2): the cubic step A' = A - s A A^T A
                 that maps the smallest and the largest singular value to the same value
                 (the one-step minimax choice for conditioning A);

    s_max, s_min the medians over tasks (and machines) of the largest and the rank-th
    singular value of A_l (the nonzero spectrum of rank-`rank` data).  The compute-limited
    sketch is ignored (these are the unsketched rules).  Ours, not the paper's: a test of
    whether a simple schedule explains learned steps that vary by layer."""
    blocks = [np.arange(n)] if partition is None else partition
    gamma, eta, smax2, smin2 = [], [], [], []
    for l, Z in enumerate(Zs[:-1]):
        A = Z[..., :d, :n].to(torch.float64)
        hi, lo = [], []
        for J in blocks:
            sv = torch.linalg.svdvals(A[..., torch.as_tensor(J)])
            k = min(rank, sv.shape[-1])
            hi.append(sv[..., 0])
            lo.append(sv[..., k - 1])
        a = float(np.median(torch.cat(hi).numpy()))
        b = float(np.median(torch.cat(lo).numpy()))
        N = float(norms[l])
        smax2.append(a * a)
        smin2.append(b * b)
        gamma.append(2 * N / (a * a + b * b))
        eta.append(N / (b * b + a * b + a * a))
    return {"gamma_gd": gamma, "eta_equal": eta, "smax2": smax2, "smin2": smin2}


def batch_max_norms(Zs: list[torch.Tensor], d: int, n: int, partition=None,
                    sketches=None) -> np.ndarray:
    """N_l = max over the batch (and machines) of ||A_l S_l||_2^2 for the inputs of every
    layer l = 0..L-1 (Zs: the activations [Z_0, ..., Z_L], each (B, T, W))."""
    return task_norms(Zs, d, n, partition, sketches).max(axis=1)


def inputs_in_range(Z0: torch.Tensor, Z_calib: torch.Tensor, d: int, n: int) -> np.ndarray:
    """(B,) bool: the test tasks whose input norm ||A_0||_2^2 is at most the largest of the
    calibration batch's - a rule fixed from the prompts alone (no model, no trajectory).

    The learned steps are fixed numbers, tuned to the norms of training-like tasks; a task
    with a larger ||A||_2 than every calibration task lies outside the range they were
    measured on (a step with eta ||A||^2 / N above 2 diverges, in the model and in the
    algorithm alike).  Measures over these tasks are reported beside the all-task ones."""
    def norms(Z):
        return torch.linalg.matrix_norm(Z[..., :d, :n].to(torch.float64), ord=2).square()
    return (norms(Z0) <= norms(Z_calib).max()).numpy()


def fit_constant(steps: np.ndarray, norms: np.ndarray) -> float:
    """Least-squares c in steps_l ~ c / N_l over the layers (through the origin)."""
    x = 1.0 / np.asarray(norms, dtype=np.float64)
    y = np.asarray(steps, dtype=np.float64)
    return float(x @ y / (x @ x))


def learned_sketch(W_QK: np.ndarray, n: int, r: int) -> np.ndarray:
    """An orthonormal n x r basis of the learned top-left block's dominant eigenspace."""
    P = W_QK[:n, :n]
    P = 0.5 * (P + P.T)
    w, V = np.linalg.eigh(P)
    order = np.argsort(-np.abs(w))[:r]
    return V[:, order]


def weighted_sketch(W_QK: np.ndarray, n: int, basis: np.ndarray, a1: float) -> np.ndarray:
    """The query sketch S with a1 S S^T = the rank-r part of the top-left W_QK block: the
    learned eigenvectors `basis` scaled by sqrt(w_i / a1), w_i their eigenvalues.  Learned
    eigenvalues are close but not equal (a spread of a few to tens of percent); reading them
    as one a1 (an orthonormal S) over-steps the directions with the smaller ones, and on a
    task near the edge of the calibrated range that was measured to make the extracted
    iteration diverge where the model does not.  If an eigenvalue is zero or of the other
    sign than a1 (not seen in trained models) no such S exists, and the orthonormal basis
    (one eigenvalue a1) is returned."""
    if a1 == 0.0:
        return basis
    P = W_QK[:n, :n]
    ratio = np.einsum("ir,ij,jr->r", basis, 0.5 * (P + P.T), basis) / a1
    if np.any(ratio <= 0.0):
        return basis
    return basis * np.sqrt(ratio)


def value_map(W_VP: np.ndarray, n: int, r: int, S: np.ndarray) -> tuple[float, np.ndarray]:
    """(a2, R): the top-left value block read as a2 R, R of rank r with ||R||_F = sqrt(r),
    signed so that R agrees with the query sketch's projector S S^T on span S
    (tr(S^T R S) >= 0; S: the sketch's orthonormal basis)."""
    Q = W_VP[:n, :n]
    U, sv, Vt = np.linalg.svd(Q)
    Qr = (U[:, :r] * sv[:r]) @ Vt[:r]
    size = float(np.linalg.norm(Qr)) / np.sqrt(r)
    if size == 0.0:
        return 0.0, S @ S.T
    a2 = size if float(np.trace(S.T @ Qr @ S)) >= 0 else -size
    return a2, Qr / a2
