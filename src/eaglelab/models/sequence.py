"""Causal sequence models for masked-block completion: one architecture per model, stacked
residually over the sequence view of the prompt (`tasks.sequence`; issue "Related systems
II", which algorithm each architecture learns).

Architectures (`ARCHITECTURES`), each layer mapping tokens x (..., T, W) to an update of
the same width W = n + n' + 1:

* "linear": causal linear attention, o_t = sum_{s <= t} (q_t . k_s) v_s (one head,
  q = W_q x, k = W_k x, v = W_v x; the row-token form of eaglelab's transformer, causal);
* "softmax": causal softmax attention, weights softmax_s<=t(q_t . k_s / sqrt(d_k)) (the
  control: not linear in the prompt's products);
* "delta": Delta Net (`rfwp.DeltaNetLayer`, the chunkwise delta rule);
* "delta-rnn": Delta RNN (`rfwp.DeltaRNNLayer`);
* "rec-delta": Recurrent Delta Net, "rec-update" (`rfwp.RecurrentDeltaNetLayer`).

`SequenceModel(arch, d, n, d', n', layers)` runs x <- x + layer(x) per layer and reads D
from the query tokens (`tasks.sequence.read_completion`, prediction = minus the D slot).
The attention layers start from N(0, init_std^2) weights (eaglelab's transformer's
initialisation), the fast weight layers from their own (`rfwp`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eaglelab.models.rfwp import DeltaNetLayer, DeltaRNNLayer, RecurrentDeltaNetLayer
from eaglelab.tasks.sequence import read_completion, sequence_width, to_sequence

__all__ = ["ARCHITECTURES", "CausalAttention", "SequenceModel", "attention_reference"]

ARCHITECTURES = ("linear", "softmax", "delta", "delta-rnn", "rec-delta")


class CausalAttention(nn.Module):
    """One head of causal attention, linear or softmax (see the module docstring)."""

    def __init__(self, width: int, d_key: int, softmax: bool, seed: int = 0,
                 dtype: torch.dtype = torch.float32, init_std: float = 0.02) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)

        def weight(rows: int, cols: int) -> nn.Parameter:
            return nn.Parameter((init_std * torch.randn(rows, cols, generator=gen,
                                                        dtype=torch.float64)).to(dtype))

        self.softmax, self.d_key = softmax, d_key
        self.Wq, self.Wk, self.Wv = weight(d_key, width), weight(d_key, width), weight(width,
                                                                                      width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = x @ self.Wq.T, x @ self.Wk.T, x @ self.Wv.T
        T = x.shape[-2]
        scores = q @ k.transpose(-1, -2)                       # (..., T, T): [t, s]
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        if self.softmax:
            weights = torch.softmax((scores / math.sqrt(self.d_key)).masked_fill(
                future, float("-inf")), dim=-1)
        else:
            weights = scores.masked_fill(future, 0.0)
        return weights @ v


def attention_reference(layer: CausalAttention, x):
    """The plain float64 loop of `CausalAttention` over the tokens of one sequence x (T, W):
    (T, W) numpy."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    Wq, Wk, Wv = (w.detach().double().numpy() for w in (layer.Wq, layer.Wk, layer.Wv))
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        s = np.array([(Wq @ x[t]) @ (Wk @ x[j]) for j in range(t + 1)])
        if layer.softmax:
            s = np.exp(s / np.sqrt(layer.d_key) - (s / np.sqrt(layer.d_key)).max())
            s = s / s.sum()
        out[t] = sum(s[j] * (Wv @ x[j]) for j in range(t + 1))
    return out


def _layer(arch: str, width: int, d_key: int, seed: int, dtype, init_std: float) -> nn.Module:
    if arch in ("linear", "softmax"):
        return CausalAttention(width, d_key, arch == "softmax", seed, dtype, init_std)
    cls = {"delta": DeltaNetLayer, "delta-rnn": DeltaRNNLayer,
           "rec-delta": RecurrentDeltaNetLayer}[arch]
    return cls(width, d_key, width, seed=seed, dtype=dtype)


class SequenceModel(nn.Module):
    """`layers` residual layers of one architecture over the sequence view of the prompts.

    forward(X) takes prompts X (..., d + d', n + n') - D's slot is ignored - and returns the
    predicted D (..., d', n'); `token_states(X)` the tokens after every layer, [x_0, ...,
    x_L], each (..., d + d', n + n' + 1)."""

    def __init__(self, arch: str, d: int, n: int, d_prime: int, n_prime: int, layers: int = 4,
                 d_key: int | None = None, seed: int = 0, dtype: torch.dtype = torch.float32,
                 init_std: float = 0.02) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"arch={arch!r} is not known; use one of {ARCHITECTURES}")
        for name, value in (("d", d), ("n", n), ("d_prime", d_prime), ("n_prime", n_prime),
                            ("layers", layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.arch, self.d, self.n, self.d_prime, self.n_prime = arch, d, n, d_prime, n_prime
        width = sequence_width(n, n_prime)
        self.d_key = width if d_key is None else d_key
        self.blocks = nn.ModuleList(
            _layer(arch, width, self.d_key, seed * 1000 + l, dtype, init_std)
            for l in range(layers))

    def _check(self, X: torch.Tensor) -> None:
        want = (self.d + self.d_prime, self.n + self.n_prime)
        if X.dim() < 2 or tuple(X.shape[-2:]) != want:
            raise ValueError(f"prompts must be (..., {want[0]}, {want[1]}), got "
                             f"{tuple(X.shape)}")

    def token_states(self, X: torch.Tensor) -> list[torch.Tensor]:
        self._check(X)
        x = to_sequence(X, self.d, self.n)
        states = [x]
        for block in self.blocks:
            x = x + block(x)
            states.append(x)
        return states

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return read_completion(self.token_states(X)[-1], self.d, self.n, self.n_prime)
