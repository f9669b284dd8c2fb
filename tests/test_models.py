"""Models: fast path == float64 reference, gradients, hand-set EAGLE weights, layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import eaglelab.models as models
from eaglelab.models import (
    REGIMES,
    DistributedLayout,
    LinearTransformer,
    ModelConfig,
    eagle_weights,
    read_out,
    reference_layers,
    reference_prediction,
)
from eaglelab.solvers import Schedule, eagle, partition_columns, update_reference
from eaglelab.tasks import prompt, split, training_batch

F64 = torch.float64




def _batch(B: int = 4, seed: int = 1, cfg: ModelConfig | None = None) -> torch.Tensor:
    cfg = cfg or ModelConfig()
    g = torch.Generator().manual_seed(seed)
    from eaglelab.tasks import TrainingTaskConfig

    task = TrainingTaskConfig(n=cfg.n, d=cfg.d, n_prime=cfg.n_prime, d_prime=cfg.d_prime,
                              s=min(3, cfg.n, cfg.d))
    return training_batch(B, task, generator=g, dtype=F64)


def _random_model(regime: str, heads: int, form="auto", K: int = 2, **kw) -> LinearTransformer:
    cfg = ModelConfig(regime=regime, heads=heads, layers=3, init_std=0.3, **kw)
    m = LinearTransformer(cfg, list(range(10, 10 + K)), dtype=F64, form=form)
    with torch.no_grad():
        if "bq" in m.offsets:
            a, b = m.offsets["bq"]
            m.theta[:, a:b] = torch.randn(K, b - a, generator=torch.Generator().manual_seed(5),
                                          dtype=F64)
        if K > 1 and m.config.total_heads > 1:
            m.head_mask[1, 0, 0] = 0.0
    return m


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def test_public_api_is_pinned():
    assert sorted(models.__all__) == sorted([
        "ARCHITECTURES", "REGIMES", "SequenceModel", "DeltaNetLayer", "DeltaRNNLayer",
        "RecurrentDeltaNetLayer",
        "DistributedLayout", "LinearTransformer", "MachineBlocks", "ModelConfig",
        "PruneResult", "delta_rule_chunkwise", "delta_rule_recurrent", "eagle_weights",
        "param_shapes", "prune_heads", "read_out", "reference_layers", "reference_prediction"])


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("form", ["product", "factor"])
def test_fast_forward_matches_reference(regime, heads, form):
    m = _random_model(regime, heads, form)
    X = _batch(4)
    Z0 = prompt(X, 18, 18)
    with torch.no_grad():
        fast = m.layer_outputs(Z0)
        pred = m(Z0)
        loss = m.loss(Z0, X[:, 18:, 18:], fused=True)
    for k in range(m.num_seeds):
        ref = reference_layers(m.weights(k), m.config, Z0.numpy(), m.head_mask[k].numpy())
        for l, Zl in enumerate(ref):
            assert _rel(fast[l][k].numpy(), Zl) < 1e-10, (k, l)
        ref_pred = reference_prediction(m.weights(k), m.config, Z0.numpy(),
                                        m.head_mask[k].numpy())
        assert _rel(pred[k].numpy(), ref_pred) < 1e-10
        ref_loss = np.mean((ref_pred - X[:, 18:, 18:].numpy()) ** 2)
        assert abs(loss[k].item() - ref_loss) < 1e-10 * ref_loss


@pytest.mark.parametrize("regime", REGIMES)
def test_fused_gradient_matches_autograd(regime):
    m = _random_model(regime, 2)
    X = _batch(6).view(2, 3, 20, 20)
    Z0, D = prompt(X, 18, 18), X[:, :, 18:, 18:]
    w = torch.tensor([1.0, 2.5], dtype=F64)
    g1, = torch.autograd.grad((m.loss(Z0, D, fused=True) * w).sum(), m.theta)
    g2, = torch.autograd.grad((m.loss(Z0, D, fused=False) * w).sum(), m.theta)
    assert _rel(g1, g2) < 1e-10


@pytest.mark.parametrize("regime", REGIMES)
def test_fused_chunking_does_not_change_the_result(regime):
    m = _random_model(regime, 2, K=1)
    X = _batch(7)
    Z0, D = prompt(X, 18, 18), X[:, 18:, 18:]
    l1 = m.loss(Z0, D, chunk=1024)
    g1, = torch.autograd.grad(l1.sum(), m.theta)
    l2 = m.loss(Z0, D, chunk=3)
    g2, = torch.autograd.grad(l2.sum(), m.theta)
    assert _rel(l1.detach(), l2.detach()) < 1e-12 and _rel(g1, g2) < 1e-12
    with torch.no_grad():                     # evaluation: no gradient work, same value
        assert _rel(m.loss(Z0, D), l1.detach()) < 1e-14


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("fused", [True, False])
def test_gradcheck_tiny(regime, fused):
    cfg = ModelConfig(regime=regime, n=4, d=3, n_prime=1, d_prime=1, layers=2, heads=2, r=2,
                      machines=2, init_std=0.4)
    m = LinearTransformer(cfg, [0], dtype=F64)
    X = _batch(3, cfg=cfg)
    Z0, D = prompt(X, 3, 4), X[:, 3:, 4:]
    theta0 = m.theta.detach().clone()
    if "bq" in m.offsets:
        a, b = m.offsets["bq"]
        theta0[:, a:b] = 0.3
    theta0.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: m.loss(Z0, D, theta=t, fused=fused), (theta0,),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


def test_read_out_is_minus_the_d_slot():
    cfg = ModelConfig(layers=2)
    m = eagle_weights(cfg, [0.01, 0.02], [0.03, 0.04])
    X = _batch(3)
    Z0 = prompt(X, 18, 18)
    with torch.no_grad():
        ZL = m.layer_outputs(Z0)[-1][0]
        pred = m(Z0)[0]
    assert torch.equal(read_out(ZL, cfg), -ZL[:, 18:, 18:])
    assert torch.allclose(pred, -ZL[:, 18:, 18:], rtol=1e-12, atol=1e-14)
    # with EAGLE weights the prediction is EAGLE's D itself: the slot holds minus it
    for b in range(3):
        A, B, C, _ = (t.numpy() for t in split(X[b], 18, 18))
        res = eagle(A, B, C, schedule=Schedule([0.01, 0.02], [0.03, 0.04]))
        assert _rel(pred[b].numpy(), res.D) < 1e-12
        assert np.abs(res.D).max() > 1e-3


def _one_update(Z, sA, sC, S=None):
    A, B, C, D = (t.numpy() for t in split(Z, 18, 18))
    A1, B1, C1, D1 = update_reference(A, B, C, -D, sA, sC, S=S)
    return np.block([[A1, C1], [B1, -D1]])


def test_handset_unconstrained_is_one_eagle_update():
    cfg = ModelConfig(layers=3, heads=2)
    sA, sC = [0.011, 0.02, 0.015], [0.03, 0.025, 0.04]
    m = eagle_weights(cfg, sA, sC)
    P = m.products()
    n = 18
    W_QK, W_VP = P["W_QK"][0, 0, 0].numpy(), P["W_VP"][0, 0, 0].numpy()
    assert np.allclose(W_QK, np.diag(np.r_[np.ones(n), np.zeros(2)]))
    assert np.allclose(W_VP, np.diag(np.r_[np.full(n, -sA[0]), np.full(2, -sC[0])]))
    assert not P["W_QK"][0, :, 1].any() or not P["W_VP"][0, :, 1].any()
    X = _batch(4)
    Z = m.layer_outputs(prompt(X, 18, 18))
    for l in range(3):
        for b in range(4):
            assert _rel(Z[l + 1][0, b].detach().numpy(),
                        _one_update(Z[l][0, b].detach(), sA[l], sC[l])) < 1e-13


def test_handset_unconstrained_matches_schedule_solver():
    cfg = ModelConfig(layers=4)
    sA, sC = [0.01, 0.02, 0.03, 0.04], [0.05, 0.04, 0.03, 0.02]
    m = eagle_weights(cfg, sA, sC)
    X = _batch(3)
    with torch.no_grad():
        pred = m(prompt(X, 18, 18))[0]
    for b in range(3):
        A, B, C, _ = (t.numpy() for t in split(X[b], 18, 18))
        assert _rel(pred[b].numpy(), eagle(A, B, C, schedule=Schedule(sA, sC)).D) < 1e-12


@pytest.mark.parametrize("orthonormal", [True, False])
def test_handset_compute_limited_is_one_sketched_update(orthonormal):
    rng = np.random.default_rng(3)
    S = rng.standard_normal((18, 5))
    if orthonormal:
        S = np.linalg.qr(S)[0]
    cfg = ModelConfig(regime="compute-limited", layers=2)
    sA, sC = [0.02, 0.01], [0.04, 0.03]
    m = eagle_weights(cfg, sA, sC, sketch=S)
    P = m.products()
    assert np.allclose(P["W_QK"][0, 0, 0, :18, :18].numpy(), S @ S.T)
    assert not P["W_QK"][0, 0, 0, 18:].any() and not P["W_QK"][0, 0, 0, :, 18:].any()
    assert np.allclose(P["W_VP"][0, 0, 0, :18, :18].numpy(), -sA[0] * S @ S.T)
    assert np.allclose(P["W_VP"][0, 0, 0, 18:, 18:].numpy(), -sC[0] * np.eye(2))
    X = _batch(4)
    Z = m.layer_outputs(prompt(X, 18, 18))
    for l in range(2):
        for b in range(4):
            assert _rel(Z[l + 1][0, b].detach().numpy(),
                        _one_update(Z[l][0, b].detach(), sA[l], sC[l], S=S)) < 1e-12
    # and the prediction equals the schedule solver with the same sketch
    with torch.no_grad():
        pred = m(prompt(X, 18, 18))[0]
    for b in range(4):
        A, B, C, _ = (t.numpy() for t in split(X[b], 18, 18))
        res = eagle(A, B, C, schedule=Schedule(sA, sC, sketches=[S, S]))
        assert _rel(pred[b].numpy(), res.D) < 1e-11


def test_handset_distributed_is_one_round_with_averaging():
    cfg = ModelConfig(regime="distributed", layers=2, machines=3)
    sA = np.array([[0.02, 0.03, 0.025], [0.01, 0.04, 0.02]])
    sC = 2.5 * sA[::-1]
    m = eagle_weights(cfg, sA, sC)
    lay = DistributedLayout(18, 2, 3)
    P = m.products()
    for mu in range(3):
        J = lay.columns(mu)
        W_QK, W_VP = P["W_QK"][0, 0, mu].numpy(), P["W_VP"][0, 0, mu].numpy()
        expect_qk = np.zeros((20, 20))
        expect_qk[J, J] = 1.0
        expect_vp = np.zeros((20, 20))
        expect_vp[J, J] = -sA[0, mu]
        expect_vp[[18, 19], [18, 19]] = -sC[0, mu] / 3
        assert np.allclose(W_QK, expect_qk) and np.allclose(W_VP, expect_vp)
    X = _batch(4)
    Z = m.layer_outputs(prompt(X, 18, 18))
    for l in range(2):
        for b in range(4):
            Zl = Z[l][0, b].detach().numpy()
            blocks = lay.to_machines(Zl, 18)
            outs = [update_reference(blocks.A[mu], blocks.B[mu], blocks.C, -blocks.D,
                                     sA[l, mu], sC[l, mu]) for mu in range(3)]
            C1 = np.mean([o[2] for o in outs], axis=0)
            D1 = np.mean([o[3] for o in outs], axis=0)
            expect = lay.from_machines(type(blocks)(A=[o[0] for o in outs],
                                                    B=[o[1] for o in outs], C=C1, D=-D1))
            assert _rel(Z[l + 1][0, b].detach().numpy(), expect) < 1e-12


def test_layout_conversions_both_ways():
    lay = DistributedLayout(18, 2, 3)
    assert all(np.array_equal(a, b) for a, b in zip(lay.partition(), partition_columns(18, 3),
                                                    strict=True))
    X = _batch(2)
    blocks = lay.to_machines(X, 18)
    assert torch.equal(lay.from_machines(blocks), X)
    A, B, C, D = split(X, 18, 18)
    assert torch.equal(blocks.A[1], A[..., 6:12]) and torch.equal(blocks.D, D)
    # machines -> block -> machines
    rng = np.random.default_rng(0)
    mb = type(blocks)(A=[rng.standard_normal((18, 6)) for _ in range(3)],
                      B=[rng.standard_normal((2, 6)) for _ in range(3)],
                      C=rng.standard_normal((18, 2)), D=rng.standard_normal((2, 2)))
    back = lay.to_machines(lay.from_machines(mb), 18)
    assert all(np.array_equal(a, b) for a, b in zip(back.A, mb.A, strict=True))
    assert np.array_equal(back.C, mb.C) and np.array_equal(back.D, mb.D)
    # weights: compact <-> full (a head reads its machine's columns and the shared ones)
    compact = torch.randn(6, 8, 5, dtype=F64)          # H = 6 heads (2 per machine), k = 5
    full = lay.embed_local(compact, heads_per_machine=2)
    assert full.shape == (6, 20, 5)
    assert torch.equal(full[3, 6:12], compact[3, :6]) and torch.equal(full[3, 18:], compact[3, 6:])
    assert not full[3, :6].any() and not full[3, 12:18].any()
    assert torch.equal(lay.restrict_local(full, 2), compact)
    full[0, 7] = 1.0
    with pytest.raises(ValueError, match="local reads"):
        lay.restrict_local(full, 2)


def _head_update(m: LinearTransformer, Z0: torch.Tensor, layer_head: tuple[int, int]):
    """The update Z_1 - Z_0 of one head alone (all others masked) on the first layer."""
    one = m.seed_slice(0)
    with torch.no_grad():
        one.head_mask.zero_()
        one.head_mask[0, layer_head[0], layer_head[1]] = 1.0
        Z = one.layer_outputs(Z0)
    return (Z[1] - Z[0])[0]


@pytest.mark.parametrize("heads", [1, 2])
def test_distributed_head_reads_only_its_machine(heads):
    """Locality: with random float64 weights, a head's output does not change when another
    machine's columns change (query, key AND value are local), while it does change with
    its own columns and with the shared ones."""
    m = _random_model("distributed", heads, K=1)
    lay = DistributedLayout(18, 2, 3)
    Z0 = prompt(_batch(3), 18, 18)
    for mu in range(3):
        h = mu * heads
        base = _head_update(m, Z0, (0, h))
        assert base.abs().max() > 1e-3
        for nu in range(3):
            Zp = Z0.clone()
            Zp[..., lay.columns(nu)] += torch.randn(Zp[..., lay.columns(nu)].shape, dtype=F64,
                                                     generator=torch.Generator().manual_seed(nu))
            change = (_head_update(m, Zp, (0, h)) - base).abs().max()
            if nu == mu:
                assert change > 1e-3
            else:     # (Z_0 + u) - Z_0 rounds differently when Z_0 changes: 1e-13 allows it
                assert change < 1e-13 * base.abs().max(), (mu, nu, float(change))
        Zs = Z0.clone()
        Zs[:, :18, 18:] += 1.0                                   # the shared C columns
        assert (_head_update(m, Zs, (0, h)) - base).abs().max() > 1e-3


def test_distributed_read_factors_are_embedded_on_local_columns():
    m = _random_model("distributed", 2, K=1)
    p = m.full_factors()
    lay = DistributedLayout(18, 2, 3)
    for name in ("wq", "wk", "wv"):
        for h in range(6):
            off = np.setdiff1d(np.arange(20), lay.local_columns(h // 2))
            assert not p[name][0, :, h][:, off].any(), (name, h)
    W_VP = m.products()["W_VP"][0, 0, 0].numpy()
    assert np.abs(W_VP[6:18]).max() == 0.0                  # rows = reads: machine 0 only
    assert np.abs(W_VP[:6, 6:18]).max() > 0                  # columns = writes: anywhere


@pytest.mark.parametrize("regime", REGIMES)
def test_hidden_block_does_not_reach_the_visible_rows(regime):
    m = _random_model(regime, 2, K=1)
    X = _batch(3)
    Z0 = prompt(X, 18, 18)
    Z0p = Z0.clone()
    Z0p[:, 18, 18:] += torch.tensor([5.0, -3.0], dtype=F64)   # perturb D_0 in query row 0
    with torch.no_grad():
        a, b = m.layer_outputs(Z0), m.layer_outputs(Z0p)
    for za, zb in zip(a[1:], b[1:], strict=True):
        assert torch.equal(za[..., :18, :], zb[..., :18, :])    # A and C: exactly unchanged
        assert torch.equal(za[..., 19, :], zb[..., 19, :])      # other query rows unchanged
    # with the EAGLE weight structure (W_QK zero on the n' columns) B is unchanged too
    cfg = ModelConfig(regime=regime, layers=3) if regime != "compute-limited" else None
    if cfg is not None:
        e = eagle_weights(cfg, 0.01, 0.02)
        with torch.no_grad():
            a, b = e.layer_outputs(Z0), e.layer_outputs(Z0p)
        for za, zb in zip(a[1:], b[1:], strict=True):
            assert torch.equal(za[..., :, :18], zb[..., :, :18])
            assert torch.equal(za[..., :18, :], zb[..., :18, :])


def test_select_heads_equals_masking():
    m = _random_model("distributed", 2, K=2)
    keep = torch.tensor([[[0, 3, 5]] * 3, [[1, 2, 4]] * 3])
    sub = m.select_heads(keep)
    assert sub.config.heads == 1 and sub.config.total_heads == 3
    masked = LinearTransformer.stack([m.seed_slice(0), m.seed_slice(1)])
    with torch.no_grad():
        masked.head_mask.zero_()
        for k in range(2):
            masked.head_mask[k, :, keep[k, 0]] = m.head_mask[k, :, keep[k, 0]]
    X = _batch(3)
    Z0 = prompt(X, 18, 18)
    with torch.no_grad():
        assert _rel(sub(Z0).numpy(), masked(Z0).numpy()) < 1e-12
    with pytest.raises(ValueError, match="machine"):
        m.select_heads(torch.tensor([[[0, 1, 2]] * 3] * 2))


def _greedy_prune_reference(model, Z0, D, keep):
    """Plain greedy pruning, one seed at a time: mask each removable head of the FULL model,
    drop the one whose removal raises the loss least, repeat (brief section 3, step 1)."""
    c = model.config
    groups = c.machines if c.regime == "distributed" else 1
    per = c.total_heads // groups
    chosen = []
    for k in range(model.num_seeds):
        m = model.seed_slice(k)
        removed = []
        with torch.no_grad():
            while True:
                cands = [(l, h) for l in range(c.layers) for g in range(groups)
                         for h in range(g * per, (g + 1) * per)
                         if m.head_mask[0, l, h] != 0
                         and int(m.head_mask[0, l, g * per:(g + 1) * per].sum()) > keep]
                if not cands:
                    break
                losses = []
                for l, h in cands:
                    m.head_mask[0, l, h] = 0
                    losses.append(float(m.loss(Z0, D, fused=False)[0]))
                    m.head_mask[0, l, h] = 1
                j = int(np.argmin(losses))
                l, h = cands[j]
                m.head_mask[0, l, h] = 0
                removed.append((l, h, losses[j]))
        chosen.append(removed)
    return chosen


@pytest.mark.parametrize("regime,heads,keep", [("unconstrained", 4, 1),
                                               ("compute-limited", 3, 2),
                                               ("distributed", 3, 1),
                                               ("estimation", 3, 1)])
def test_greedy_pruning_matches_the_plain_reference(regime, heads, keep):
    """The fast pruner (candidates on a model compacted to the live heads, from the cached
    activations of their layer) removes the same heads in the same order, at the same
    losses, as the plain full-model loop."""
    cfg = ModelConfig(regime=regime, heads=heads, layers=3, init_std=0.1)
    m = LinearTransformer(cfg, [3, 4], dtype=F64)
    X = _batch(32, seed=4)
    D, Z0 = split(X, 18, 18)[3], prompt(X, 18, 18)
    pr = models.prune_heads(m, Z0, D, keep=keep)
    ref = _greedy_prune_reference(m, Z0, D, keep)
    for k in range(2):
        assert [(s["layer"], s["head"]) for s in pr.history[k]] == [r[:2] for r in ref[k]]
        assert [s["loss"] for s in pr.history[k]] == pytest.approx([r[2] for r in ref[k]],
                                                                   rel=1e-10)
    assert pr.model.config.heads == keep
    with torch.no_grad():
        assert torch.equal(m.head_mask, torch.ones_like(m.head_mask))   # input untouched


def test_seed_slice_and_stack_round_trip():
    m = LinearTransformer(ModelConfig(), [4, 7, 9])
    single = LinearTransformer(ModelConfig(), [7])
    assert torch.equal(m.seed_slice(1).theta, single.theta)
    assert torch.equal(LinearTransformer.stack([m.seed_slice(0), m.seed_slice([1, 2])]).theta,
                       m.theta)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"regime": "sparse"}, "regime"),
    ({"regime": "compute-limited", "r": 18}, "r < n"),
    ({"regime": "distributed", "machines": 4}, "divide n"),
    ({"layers": 0}, "layers"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_flop_counts_are_consistent():
    m = LinearTransformer(ModelConfig(heads=8))
    c = m.config
    W, T, d = c.width, c.tokens, c.d
    per_layer = 2 * 8 * (2 * T * W * W + 2 * T * d * W)
    assert m.flops_per_sample(full=True) == c.layers * per_layer
    assert m.flops_per_sample() < m.flops_per_sample(full=True)


@pytest.mark.parametrize("regime", ["unconstrained", "distributed"])
def test_float32_pruning_follows_the_float64_reference(regime):
    """Training prunes in float32: the fast pruner on the float32 copy of a model removes
    the same heads in the same order as the float64 plain loop (on these seeds no two
    candidates are within float32 rounding of each other), at losses equal to 1e-4."""
    cfg = ModelConfig(regime=regime, heads=3, layers=3, init_std=0.1)
    m64 = LinearTransformer(cfg, [3, 4], dtype=F64)
    m32 = LinearTransformer(cfg, [3, 4], dtype=torch.float32)
    with torch.no_grad():
        m32.theta.copy_(m64.theta.float())
    X = _batch(64, seed=5)
    D, Z0 = split(X, 18, 18)[3], prompt(X, 18, 18)
    pr = models.prune_heads(m32, Z0.float(), D.float(), keep=1)
    ref = _greedy_prune_reference(m64, Z0, D, 1)
    for k in range(2):
        got = [(s["layer"], s["head"]) for s in pr.history[k]]
        want = [r[:2] for r in ref[k]]
        n = next((i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b), None)
        assert n is None, (k, n, got, want)
        assert [s["loss"] for s in pr.history[k]] == pytest.approx([r[2] for r in ref[k]],
                                                                   rel=1e-4)
