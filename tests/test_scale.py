"""Per-prompt normalisation (tasks.scale, ModelConfig.normalise): estimates against float64
numpy, scale equivariance of a normalised model, fused loss == autograd loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eaglelab.models import LinearTransformer, ModelConfig
from eaglelab.tasks import TrainingTaskConfig, prompt, training_batch
from eaglelab.tasks.scale import norm_estimate, prompt_scale, training_median

F64 = torch.float64


def _X(B=16, seed=3):
    return training_batch(B, TrainingTaskConfig(), generator=torch.Generator().manual_seed(seed),
                          dtype=F64)


def test_estimates_match_numpy():
    A = _X()[:, :18, :18]
    fro = norm_estimate(A, "frobenius").numpy()
    spec = np.array([np.linalg.norm(a, 2) for a in A.numpy()])
    np.testing.assert_allclose(fro, [np.linalg.norm(a) for a in A.numpy()], rtol=1e-12)
    power = norm_estimate(A, "power").numpy()
    assert np.all(power <= spec * (1 + 1e-12))          # a Rayleigh quotient: a lower bound
    assert np.all(power >= 0.9 * spec), power / spec    # training tasks: a clear top gap
    with pytest.raises(ValueError, match="not known"):
        norm_estimate(A, "spectral")


def test_prompt_scale_brings_the_estimate_to_the_target():
    Z0 = prompt(_X(), 18, 18)
    Z0[0] = 0.0                                          # an all-zero A keeps scale 1
    for method in ("frobenius", "power"):
        c = prompt_scale(Z0, 18, 18, method, 2.5)
        est = norm_estimate(c[:, None, None] * Z0[:, :18, :18], method)
        np.testing.assert_allclose(est[1:].numpy(), 2.5, rtol=1e-12)
        assert c[0] == 1.0
    assert torch.equal(prompt_scale(Z0, 18, 18, "none", 1.0), torch.ones(16, dtype=F64))
    med = training_median(TrainingTaskConfig(), "power")
    assert med > 0 and med == training_median(TrainingTaskConfig(), "power")   # fixed draw


@pytest.mark.parametrize("method", ["frobenius", "power"])
def test_a_normalised_model_is_scale_equivariant(method):
    cfg = ModelConfig(init_std=0.3, layers=3).with_normalisation(method, 1.7)
    m = LinearTransformer(cfg, 2, dtype=F64)
    plain = LinearTransformer(ModelConfig(init_std=0.3, layers=3), 2, dtype=F64)
    with torch.no_grad():
        plain.theta.copy_(m.theta)
        Z0 = prompt(_X(8), 18, 18)
        for c in (0.01, 7.0):
            torch.testing.assert_close(m(c * Z0), c * m(Z0), rtol=1e-10, atol=1e-14)
        # without normalisation the cubic layers are not equivariant
        assert (plain(7.0 * Z0) - 7.0 * plain(Z0)).abs().max() > 1e-3
        # the normalised model is the plain one on the scaled prompts, scaled back
        s = m.prompt_scale(Z0)[:, None, None]
        torch.testing.assert_close(m(Z0), plain(s * Z0) / s, rtol=1e-12, atol=1e-14)


def test_normalised_loss_fused_equals_autograd_and_is_the_scaled_problem():
    cfg = ModelConfig(init_std=0.3, layers=2).with_normalisation("power", 1.0)
    m = LinearTransformer(cfg, 2, dtype=F64)
    X = _X(8)
    Z0, D = prompt(X, 18, 18), X[:, 18:, 18:]
    fused, plain = m.loss(Z0, D), m.loss(Z0, D, fused=False)
    torch.testing.assert_close(fused, plain, rtol=1e-10, atol=1e-14)
    s = m.prompt_scale(Z0)[:, None, None]
    with torch.no_grad():
        want = ((m(Z0) - D) * s).square().mean(dim=(1, 2, 3))
    torch.testing.assert_close(fused.detach(), want, rtol=1e-10, atol=1e-14)
    g1 = torch.autograd.grad(m.loss(Z0, D).sum(), m.theta)[0]
    g2 = torch.autograd.grad(m.loss(Z0, D, fused=False).sum(), m.theta)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-12)


def test_bad_normalisation_settings_are_named():
    with pytest.raises(ValueError, match="normalise"):
        ModelConfig(normalise="max")
    with pytest.raises(ValueError, match="norm_target"):
        ModelConfig(normalise="power", norm_target=0.0)


def test_a_normalised_handset_model_is_extracted_on_the_scaled_problem():
    from eaglelab.extract import extract
    from eaglelab.models import eagle_weights
    from eaglelab.tasks.scale import training_median

    task = TrainingTaskConfig()
    target = training_median(task, "power")
    N = 1.3 * target ** 2                       # a step scale for prompts of that norm
    m = eagle_weights(ModelConfig(), [0.9 / N] * 4, [1.8 / N] * 4)
    m.config = m.config.with_normalisation("power", target)
    ex = extract(m, task, val_size=64)
    s = ex.seeds[0]
    assert max(s.fidelity) < 1e-26              # the algorithm runs on the same scaled prompts
    assert len(s.out_of_range) <= 2             # scaled prompts share one norm estimate
    # the measures in the prompts' own units: the model's real prediction against the true D
    from eaglelab.extract import held_out
    from eaglelab.extract.pipeline import HELD_OUT_SEED

    Z0, D = held_out(task, 64, HELD_OUT_SEED)
    inside = np.ones(64, bool)
    inside[s.out_of_range] = False
    with torch.no_grad():
        pred = m.double()(Z0)[0]
    own = float((pred[inside] - D[inside]).square().mean())
    assert s.original_units["mse"] == pytest.approx(own, rel=1e-10)
    assert s.original_units["mse"] != pytest.approx(s.mse, rel=1e-3)   # other units
    assert ex.summary()["original_units"]["fidelity"] == pytest.approx(
        s.original_units["fidelity"])
