"""Recurrent fast weight programmers (Irie, Schlag, Csordas, Schmidhuber, NeurIPS 2021, arXiv
2106.06295; related brief section 5): three sequence layers whose fast weight matrix W_t
(d_v x d_k) is written by the delta rule, W_t = W_{t-1} + beta_t (v_t - W_{t-1} k_t) k_t^T,
and read by y_t = W_t q_t.  Slow (trained) weights make q, k, v, beta from the input.

* `DeltaNetLayer`: q_t, k_t, v_t, beta_t from x_t alone; keys and queries through the
  positive feature map phi(z) = elu(z) + 1 and sum-normalised, beta = sigmoid.  The
  recurrence is the delta rule with W_t = S_t^T, so the forward is
  `delta.delta_rule_chunkwise` (parallel over chunks).
* `DeltaRNNLayer`: y_t = W_t q_t + R_t f(y_{t-1}), R_t (d_v x d_v) a second fast weight
  matrix written by its own delta rule with key, value and beta made from x_t (its key is
  phi-normalised like the first); f = tanh (the brief leaves f open: our choice).
* `RecurrentDeltaNetLayer` ("rec-update"): q_t, k_t, v_t, beta_t also read
  h_{t-1} = tanh(y_{t-1}) through recurrent slow matrices R_q, R_k, R_v and r_beta.

The last two feed y back, so they run one step at a time.  Input x (..., T, d_in), output
y (..., T, d_v).  `loop_reference(layer, x)` is the plain float64 numpy transcription of
each layer's recurrence that the tests hold the modules to.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from eaglelab.models.delta import delta_rule_chunkwise

__all__ = ["DeltaNetLayer", "DeltaRNNLayer", "RecurrentDeltaNetLayer", "loop_reference",
           "phi_normalised"]


def phi_normalised(z: torch.Tensor) -> torch.Tensor:
    """phi(z) / sum(phi(z)) with phi = elu + 1 (positive), over the last axis."""
    p = torch.nn.functional.elu(z) + 1.0
    return p / p.sum(dim=-1, keepdim=True)


def _linear(d_in: int, d_out: int, gen: torch.Generator, dtype) -> nn.Parameter:
    return nn.Parameter(torch.randn(d_out, d_in, generator=gen, dtype=torch.float64)
                        .div(np.sqrt(d_in)).to(dtype))


class _FastWeightLayer(nn.Module):
    def __init__(self, d_in: int, d_key: int, d_value: int, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        for name, value in (("d_in", d_in), ("d_key", d_key), ("d_value", d_value)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.d_in, self.d_key, self.d_value = d_in, d_key, d_value
        self._gen = torch.Generator().manual_seed(seed)
        self._dtype = dtype
        self.Wq = _linear(d_in, d_key, self._gen, dtype)
        self.Wk = _linear(d_in, d_key, self._gen, dtype)
        self.Wv = _linear(d_in, d_value, self._gen, dtype)
        self.wb = _linear(d_in, 1, self._gen, dtype)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() < 2 or x.shape[-1] != self.d_in:
            raise ValueError(f"input must be (..., T, d_in = {self.d_in}), got {tuple(x.shape)}")


class DeltaNetLayer(_FastWeightLayer):
    """Delta Net (see the module docstring); `chunk_size` of the chunkwise delta rule."""

    def __init__(self, d_in: int, d_key: int, d_value: int, seed: int = 0,
                 dtype: torch.dtype = torch.float32, chunk_size: int = 64) -> None:
        super().__init__(d_in, d_key, d_value, seed, dtype)
        self.chunk_size = chunk_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        q, k = phi_normalised(x @ self.Wq.T), phi_normalised(x @ self.Wk.T)
        v, beta = x @ self.Wv.T, torch.sigmoid(x @ self.wb.T)[..., 0]
        return delta_rule_chunkwise(q, k, v, beta, self.chunk_size)[0]


class DeltaRNNLayer(_FastWeightLayer):
    """Delta RNN (see the module docstring)."""

    def __init__(self, d_in: int, d_key: int, d_value: int, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(d_in, d_key, d_value, seed, dtype)
        self.Wk2 = _linear(d_in, d_value, self._gen, dtype)   # key of R (reads f(y) in R^dv)
        self.Wv2 = _linear(d_in, d_value, self._gen, dtype)
        self.wb2 = _linear(d_in, 1, self._gen, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        lead, T = x.shape[:-2], x.shape[-2]
        q, k = phi_normalised(x @ self.Wq.T), phi_normalised(x @ self.Wk.T)
        v, beta = x @ self.Wv.T, torch.sigmoid(x @ self.wb.T)[..., 0]
        k2, v2 = phi_normalised(x @ self.Wk2.T), x @ self.Wv2.T
        beta2 = torch.sigmoid(x @ self.wb2.T)[..., 0]
        W = x.new_zeros(*lead, self.d_value, self.d_key)
        R = x.new_zeros(*lead, self.d_value, self.d_value)
        y = x.new_zeros(*lead, self.d_value)
        outs = []
        for t in range(T):
            W = _delta(W, k[..., t, :], v[..., t, :], beta[..., t])
            R = _delta(R, k2[..., t, :], v2[..., t, :], beta2[..., t])
            y = _apply(W, q[..., t, :]) + _apply(R, torch.tanh(y))
            outs.append(y)
        return torch.stack(outs, dim=-2)


class RecurrentDeltaNetLayer(_FastWeightLayer):
    """Recurrent Delta Net, "rec-update" (see the module docstring)."""

    def __init__(self, d_in: int, d_key: int, d_value: int, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(d_in, d_key, d_value, seed, dtype)
        self.Rq = _linear(d_value, d_key, self._gen, dtype)
        self.Rk = _linear(d_value, d_key, self._gen, dtype)
        self.Rv = _linear(d_value, d_value, self._gen, dtype)
        self.rb = _linear(d_value, 1, self._gen, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        lead, T = x.shape[:-2], x.shape[-2]
        xq, xk, xv, xb = x @ self.Wq.T, x @ self.Wk.T, x @ self.Wv.T, x @ self.wb.T
        W = x.new_zeros(*lead, self.d_value, self.d_key)
        y = x.new_zeros(*lead, self.d_value)
        outs = []
        for t in range(T):
            h = torch.tanh(y)
            q = phi_normalised(xq[..., t, :] + h @ self.Rq.T)
            k = phi_normalised(xk[..., t, :] + h @ self.Rk.T)
            v = xv[..., t, :] + h @ self.Rv.T
            beta = torch.sigmoid(xb[..., t, :] + h @ self.rb.T)[..., 0]
            W = _delta(W, k, v, beta)
            y = _apply(W, q)
            outs.append(y)
        return torch.stack(outs, dim=-2)


def _delta(W: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor
           ) -> torch.Tensor:
    """W + beta (v - W k) k^T, batched: W (..., dv, dk), k (..., dk), v (..., dv)."""
    u = beta[..., None] * (v - _apply(W, k))
    return W + u[..., :, None] * k[..., None, :]


def _apply(W: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return torch.einsum("...ij,...j->...i", W, z)


# --- the float64 numpy loops the tests hold the layers to ---------------------------------

def _np_phi(z: np.ndarray) -> np.ndarray:
    p = np.where(z > 0, z + 1.0, np.exp(z))
    return p / p.sum()


def _np_sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))


def loop_reference(layer: _FastWeightLayer, x) -> np.ndarray:
    """The layer's output for one sequence x (T, d_in), one step at a time in float64 numpy
    (the recurrences of the module docstring written out)."""
    P = {name: p.detach().cpu().double().numpy() for name, p in layer.named_parameters()}
    x = np.asarray(x, dtype=np.float64)
    dv, dk = layer.d_value, layer.d_key
    W, R, y = np.zeros((dv, dk)), np.zeros((dv, dv)), np.zeros(dv)
    out = []
    for xt in x:
        if isinstance(layer, RecurrentDeltaNetLayer):
            h = np.tanh(y)
            q, k = _np_phi(P["Wq"] @ xt + P["Rq"] @ h), _np_phi(P["Wk"] @ xt + P["Rk"] @ h)
            v = P["Wv"] @ xt + P["Rv"] @ h
            b = _np_sigmoid((P["wb"] @ xt + P["rb"] @ h)[0])
        else:
            q, k, v = _np_phi(P["Wq"] @ xt), _np_phi(P["Wk"] @ xt), P["Wv"] @ xt
            b = _np_sigmoid((P["wb"] @ xt)[0])
        W = W + b * np.outer(v - W @ k, k)
        if isinstance(layer, DeltaRNNLayer):
            k2, v2 = _np_phi(P["Wk2"] @ xt), P["Wv2"] @ xt
            b2 = _np_sigmoid((P["wb2"] @ xt)[0])
            R = R + b2 * np.outer(v2 - R @ k2, k2)
            y = W @ q + R @ np.tanh(y)
        else:
            y = W @ q
        out.append(y)
    return np.stack(out)
