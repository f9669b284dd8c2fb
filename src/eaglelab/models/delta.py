"""The delta rule (DeltaNet: Yang, Wang, Zhang, Shen, Kim, NeurIPS 2024, arXiv 2406.06484;
related brief section 4) in PyTorch: a recurrent and a chunkwise-parallel form, batched,
differentiable by autograd, on any device and dtype.

State S (d_k x d_v) per sequence, for t = 1..T:

    S_t = S_{t-1} + k_t (beta_t (v_t - S_{t-1}^T k_t))^T,     o_t = S_t^T q_t

(S_t^T = S_{t-1}^T (I - beta_t k_t k_t^T) + beta_t v_t k_t^T; q is used as given, no
hidden scaling).  Shapes: q, k (..., T, d_k); v (..., T, d_v); beta (..., T); state
(..., d_k, d_v).  Both functions return (o (..., T, d_v), final state).

Chunkwise form (the WY / UT transform).  Within a chunk of C rows with incoming state S_0,
u_t = beta_t (v_t - S_{t-1}^T k_t) satisfies u_t + beta_t sum_{i<t} (k_t . k_i) u_i =
beta_t (v_t - S_0^T k_t), i.e. (I + tril(diag(beta) K K^T, -1)) U' = diag(beta) (V - K S_0):
with the unit lower-triangular solve T = (I + tril(diag(beta) K K^T, -1))^-1 diag(beta),
W = T K and U = T V (both independent of S_0, so computed for every chunk at once),

    U' = U - W S_0,   O = Q S_0 + (Q K^T masked causally, diagonal included) U',
    S = S_0 + K^T U'.

Only these three products run in sequence over the chunks.  A T that is not a multiple of
the chunk is padded with zero rows (k = v = beta = 0 leaves the state unchanged) and the
padding's outputs dropped.
"""

from __future__ import annotations

import torch

__all__ = ["delta_rule_recurrent", "delta_rule_chunkwise"]


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
           initial_state: torch.Tensor | None) -> torch.Tensor:
    if q.dim() < 2 or q.shape != k.shape:
        raise ValueError(f"q and k must share one shape (..., T, d_k), got {tuple(q.shape)} "
                         f"and {tuple(k.shape)}")
    if v.dim() != q.dim() or v.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"v must be (..., T, d_v) with q's leading shape {tuple(q.shape[:-1])},"
                         f" got {tuple(v.shape)}")
    if beta.shape != q.shape[:-1]:
        raise ValueError(f"beta must be (..., T) = {tuple(q.shape[:-1])}, got "
                         f"{tuple(beta.shape)}")
    if len({t.dtype for t in (q, k, v, beta)}) != 1 or len({t.device for t in (q, k, v, beta)}) != 1:
        raise ValueError("q, k, v and beta must share one dtype and one device")
    state_shape = (*q.shape[:-2], q.shape[-1], v.shape[-1])
    if initial_state is None:
        return q.new_zeros(state_shape)
    if tuple(initial_state.shape) != state_shape:
        raise ValueError(f"initial_state must be (..., d_k, d_v) = {state_shape}, got "
                         f"{tuple(initial_state.shape)}")
    return initial_state.to(q.dtype)


def delta_rule_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         beta: torch.Tensor, initial_state: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The delta rule one step at a time (O(T d_k d_v), T sequential steps): (o, S_T)."""
    S = _check(q, k, v, beta, initial_state)
    outs = []
    for t in range(q.shape[-2]):
        kt, vt, qt = k[..., t, :], v[..., t, :], q[..., t, :]
        u = beta[..., t, None] * (vt - torch.einsum("...kv,...k->...v", S, kt))
        S = S + kt[..., :, None] * u[..., None, :]
        outs.append(torch.einsum("...kv,...k->...v", S, qt))
    o = torch.stack(outs, dim=-2) if outs else v.new_zeros(v.shape)
    return o, S


def delta_rule_chunkwise(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         beta: torch.Tensor, chunk_size: int = 64,
                         initial_state: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The delta rule chunk by chunk (see the module docstring): matrix products and one
    unit lower-triangular solve per chunk; the same (o, S_T) as `delta_rule_recurrent` up to
    rounding."""
    S = _check(q, k, v, beta, initial_state)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    T = q.shape[-2]
    if T == 0:
        return v.new_zeros(v.shape), S
    C = min(chunk_size, T)
    n = -(-T // C)
    pad = n * C - T
    if pad:
        q, k, v = (torch.nn.functional.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        beta = torch.nn.functional.pad(beta, (0, pad))
    lead = q.shape[:-2]
    Q = q.reshape(*lead, n, C, q.shape[-1])
    K = k.reshape(*lead, n, C, k.shape[-1])
    V = v.reshape(*lead, n, C, v.shape[-1])
    b = beta.reshape(*lead, n, C, 1)
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    strict = torch.tril(torch.ones(C, C, dtype=torch.bool, device=q.device), -1)
    causal = torch.tril(torch.ones(C, C, dtype=torch.bool, device=q.device))
    gram = K @ K.transpose(-1, -2)
    lower = eye + torch.where(strict, b * gram, torch.zeros((), dtype=q.dtype, device=q.device))
    WU = torch.linalg.solve_triangular(lower, b * torch.cat([K, V], dim=-1), upper=False,
                                       unitriangular=True)
    W, U = WU[..., :K.shape[-1]], WU[..., K.shape[-1]:]
    scores = torch.where(causal, Q @ K.transpose(-1, -2),
                         torch.zeros((), dtype=q.dtype, device=q.device))
    outs = []
    for c in range(n):
        Uc = U[..., c, :, :] - W[..., c, :, :] @ S
        outs.append(Q[..., c, :, :] @ S + scores[..., c, :, :] @ Uc)
        S = S + K[..., c, :, :].transpose(-1, -2) @ Uc
    o = torch.cat(outs, dim=-2)
    return o[..., :T, :], S
