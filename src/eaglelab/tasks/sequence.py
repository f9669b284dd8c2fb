"""The sequence view of a masked-block prompt, for causal sequence layers (delta rule, fast
weight programmers, causal linear or softmax attention; related brief sections 4-5).

A prompt X = [[A, C], [B, D]] (d + d') x (n + n') (`tasks.blocks`) becomes T = d + d'
tokens of width n + n' + 1, in this order:

    token i      (i < d):  [A_i, C_i, 0]   the d complete rows,
    token d + j  (j < d'): [B_j, 0,   1]   the d' query rows, D's slot zeroed,

the last channel flagging a query.  Why nothing leaks from D: `to_sequence` writes zeros
into D's slot whatever X holds there (the task generators return X with D inside), so no
token carries any entry of D; and a causal layer's output at query j reads the d complete
rows and queries 0..j only, so the order adds no path from one query's answer to another.
The prediction of D_j is read from query j's output in the D slot, with the transformer's
sign (`models.transformer.read_out`: prediction = minus the slot), by `read_completion`.

This is the row-token order of eaglelab's transformer (its prompt Z0 holds the same rows,
and its masked attention lets every row read the d complete rows); the sequence layers see
it causally, so a query also reads the queries before it - rows whose D slots are zero.
"""

from __future__ import annotations

import torch

__all__ = ["to_sequence", "read_completion", "sequence_width"]


def sequence_width(n: int, n_prime: int) -> int:
    """Token width of the sequence view: n + n' features and the query flag."""
    return n + n_prime + 1


def to_sequence(X: torch.Tensor, d: int, n: int) -> torch.Tensor:
    """(..., d + d', n + n') prompts (D's slot ignored) -> (..., d + d', n + n' + 1) tokens
    (see the module docstring).  A new tensor; X is not changed."""
    if not isinstance(X, torch.Tensor) or X.dim() < 2:
        raise ValueError("X must be a tensor (..., d + d', n + n')")
    T, W = X.shape[-2:]
    if not 0 < d < T or not 0 < n < W:
        raise ValueError(f"need 0 < d < {T} rows and 0 < n < {W} columns, got d={d}, n={n}")
    seq = torch.cat([X, X.new_zeros(*X.shape[:-1], 1)], dim=-1)
    seq[..., d:, n:W] = 0.0                   # D never enters
    seq[..., d:, W] = 1.0                     # the query flag
    return seq


def read_completion(Y: torch.Tensor, d: int, n: int, n_prime: int) -> torch.Tensor:
    """The predicted D (..., d', n'): minus the D slot of the query tokens' outputs Y
    (..., d + d', n + n' + 1)."""
    if Y.shape[-1] != sequence_width(n, n_prime) or Y.shape[-2] <= d:
        raise ValueError(f"outputs must be (..., T > {d}, {sequence_width(n, n_prime)}), got "
                         f"{tuple(Y.shape)}")
    return -Y[..., d:, n:n + n_prime]
