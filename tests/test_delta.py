"""The delta rule (related brief section 4): the recurrent and the chunkwise (WY / UT
transform) forms against a plain float64 loop - outputs, final state and gradients to
1e-12 in float64, and in float32 no less accurate than the recurrence itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eaglelab.models import delta_rule_chunkwise, delta_rule_recurrent


def _inputs(T: int, dk: int = 8, dv: int = 6, lead=(2, 3), dtype=torch.float64, seed=0,
            state: bool = True):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*lead, T, dk, generator=g, dtype=torch.float64)
    k = torch.nn.functional.normalize(torch.randn(*lead, T, dk, generator=g,
                                                  dtype=torch.float64), dim=-1)
    v = torch.randn(*lead, T, dv, generator=g, dtype=torch.float64)
    beta = torch.sigmoid(torch.randn(*lead, T, generator=g, dtype=torch.float64))
    S0 = torch.randn(*lead, dk, dv, generator=g, dtype=torch.float64) if state else None
    cast = lambda x: None if x is None else x.to(dtype)  # noqa: E731
    return cast(q), cast(k), cast(v), cast(beta), cast(S0)


def _loop(q, k, v, beta, S0):
    """The recurrence written out in numpy, one sequence and one step at a time."""
    q, k, v, beta = (np.asarray(x.detach(), dtype=np.float64) for x in (q, k, v, beta))
    lead = q.shape[:-2]
    dk, dv = q.shape[-1], v.shape[-1]
    o = np.zeros((*lead, q.shape[-2], dv))
    S_out = np.zeros((*lead, dk, dv))
    for idx in np.ndindex(*lead):
        S = np.zeros((dk, dv)) if S0 is None else np.asarray(S0.detach())[idx].copy()
        for t in range(q.shape[-2]):
            kt = k[idx][t]
            S = S + np.outer(kt, beta[idx][t] * (v[idx][t] - S.T @ kt))
            o[idx][t] = S.T @ q[idx][t]
        S_out[idx] = S
    return o, S_out


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("chunk", [16, 32, 64])
@pytest.mark.parametrize("T", [1, 37, 64, 100])
def test_both_forms_are_the_recurrence_in_float64(chunk, T):
    """Outputs and final state of both forms equal the loop to 1e-12, for T below, equal to
    and not a multiple of the chunk, with a nonzero initial state."""
    q, k, v, beta, S0 = _inputs(T, seed=T + chunk)
    want_o, want_S = _loop(q, k, v, beta, S0)
    for o, S in (delta_rule_recurrent(q, k, v, beta, S0),
                 delta_rule_chunkwise(q, k, v, beta, chunk_size=chunk, initial_state=S0)):
        assert o.shape == want_o.shape and S.shape == want_S.shape
        assert _rel(o, want_o) < 1e-12 and _rel(S, want_S) < 1e-12


@pytest.mark.parametrize("chunk", [16, 32])
def test_gradients_of_the_two_forms_agree_in_float64(chunk):
    """d(loss)/d(q, k, v, beta, S0) of the chunkwise form equals the recurrent form's (both
    by autograd) to 1e-12, with a loss on the outputs and on the final state; T = 45 is not
    a multiple of the chunk."""
    inputs = [x.requires_grad_(True) for x in _inputs(45, seed=chunk)]
    w = torch.randn(2, 3, 45, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def grads(fn):
        o, S = fn(*inputs)
        loss = (o * w).sum() + S.square().sum()
        return torch.autograd.grad(loss, inputs)

    rec = grads(lambda q, k, v, b, s: delta_rule_recurrent(q, k, v, b, s))
    chk = grads(lambda q, k, v, b, s: delta_rule_chunkwise(q, k, v, b, chunk, s))
    for a, b in zip(chk, rec, strict=True):
        assert _rel(a, b) < 1e-12
    # and the gradient is the true one: a central finite difference along a random direction
    d = [torch.randn_like(x) for x in inputs]
    h = 1e-6
    with torch.no_grad():
        def f(sign):
            q, k, v, b, s = (x + sign * h * dx for x, dx in zip(inputs, d, strict=True))
            o, S = delta_rule_chunkwise(q, k, v, b, chunk_size=chunk, initial_state=s)
            return float((o * w).sum() + S.square().sum())
        fd = (f(1) - f(-1)) / (2 * h)
    ad = sum(float((g * dx).sum()) for g, dx in zip(chk, d, strict=True))
    assert abs(fd - ad) < 1e-6 * max(1.0, abs(ad))


def test_float32_chunkwise_is_as_accurate_as_the_float32_recurrence():
    """In float32 neither form is exact; the tolerance is the recurrence's own error against
    float64: the chunkwise form must stay within 10x of it (and below 1e-4 relative) over
    T = 1000 with unit keys and beta in (0, 1), where every transition I - beta k k^T is a
    contraction so rounding errors do not grow."""
    q, k, v, beta, S0 = _inputs(1000, dk=16, dv=16, lead=(2,), seed=5)
    want_o, want_S = delta_rule_recurrent(q, k, v, beta, S0)
    low = [x.float() for x in (q, k, v, beta, S0)]
    o_r, S_r = delta_rule_recurrent(*low)
    o_c, S_c = delta_rule_chunkwise(*low[:4], chunk_size=64, initial_state=low[4])
    assert o_c.dtype == torch.float32
    err_r, err_c = _rel(o_r, want_o), _rel(o_c, want_o)
    assert err_c < max(10 * err_r, 1e-6) and err_c < 1e-4, (err_r, err_c)
    assert _rel(S_c, want_S) < max(10 * _rel(S_r, want_S), 1e-6)


def test_no_initial_state_means_zero_and_bad_shapes_are_named():
    q, k, v, beta, _ = _inputs(20, state=False)
    o1, S1 = delta_rule_chunkwise(q, k, v, beta, chunk_size=8)
    o2, S2 = delta_rule_chunkwise(q, k, v, beta, chunk_size=8,
                                  initial_state=torch.zeros(2, 3, 8, 6, dtype=torch.float64))
    assert torch.equal(o1, o2) and torch.equal(S1, S2)
    with pytest.raises(ValueError, match="beta must be"):
        delta_rule_recurrent(q, k, v, beta[..., :-1])
    with pytest.raises(ValueError, match="initial_state must be"):
        delta_rule_chunkwise(q, k, v, beta, initial_state=torch.zeros(8, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="chunk_size"):
        delta_rule_chunkwise(q, k, v, beta, chunk_size=0)
    with pytest.raises(ValueError, match="one dtype"):
        delta_rule_chunkwise(q.float(), k, v, beta)


@pytest.mark.parametrize("name", ["DeltaNetLayer", "DeltaRNNLayer", "RecurrentDeltaNetLayer"])
def test_fast_weight_programmers_are_their_loops(name):
    """Each recurrent fast weight programmer (Irie et al.) equals its float64 numpy loop on
    every sequence of a batch (Delta Net through the chunkwise delta rule, T = 50 not a
    multiple of the chunk), and is differentiable in its slow weights."""
    from eaglelab.models import rfwp

    layer = getattr(rfwp, name)(d_in=7, d_key=5, d_value=4, seed=3, dtype=torch.float64)
    if name == "DeltaNetLayer":
        layer.chunk_size = 16
    x = torch.randn(3, 50, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = layer(x)
    assert y.shape == (3, 50, 4)
    for b in range(3):
        assert _rel(y[b].detach(), rfwp.loop_reference(layer, x[b])) < 1e-12
    y.square().sum().backward()
    grads = [p.grad for p in layer.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="d_in = 7"):
        layer(torch.zeros(2, 5, 6, dtype=torch.float64))


def test_the_delta_rule_matches_flash_linear_attentions_reference_when_it_is_installed():
    """Cross-check with fla's naive delta rule (`fla.ops.delta_rule.naive`); fla imports
    triton, so on a CPU-only machine this skips.  fla scales q by d_k^-1/2 inside and
    computes in float32: the same scaling is applied here, the tolerance is float32's."""
    naive = pytest.importorskip("fla.ops.delta_rule.naive",
                                reason="flash-linear-attention (and triton) not installed")
    g = torch.Generator().manual_seed(0)
    b, h, T, dk, dv = 2, 3, 37, 8, 5
    q, k = (torch.randn(b, h, T, dk, generator=g) for _ in range(2))
    k = k / k.norm(dim=-1, keepdim=True)
    v, beta = torch.randn(b, h, T, dv, generator=g), torch.rand(b, h, T, generator=g)
    o_ref, S_ref = naive.delta_rule_recurrence(q, k, v, beta)
    o, S = delta_rule_chunkwise(q * dk ** -0.5, k, v, beta, chunk_size=16)
    torch.testing.assert_close(o, o_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(S, S_ref, rtol=1e-4, atol=1e-5)
