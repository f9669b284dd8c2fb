"""The unified-prompts experiment: prompt families with their Nystrom answers, and the
scores of a model and its extracted algorithm on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eaglelab.experiments.unified import FAMILIES, evaluate, family_prompts
from eaglelab.extract import extract
from eaglelab.models import LinearTransformer, ModelConfig, eagle_weights
from eaglelab.tasks import TrainingTaskConfig

TASK = TrainingTaskConfig()


@pytest.mark.parametrize("name", FAMILIES)
def test_family_prompts_carry_their_nystrom_answers(name):
    Z0, Dstar, mask = family_prompts(name, 6, TASK)
    assert Z0.shape == (6, 20, 20) and Dstar.shape == (6, 2, 2) and mask.any()
    assert not Z0[:, 18:, 18:].any()                          # D is hidden
    for b in range(6):
        A, B, C = Z0[b, :18, :18].numpy(), Z0[b, 18:, :18].numpy(), Z0[b, :18, 18:].numpy()
        want = B @ np.linalg.pinv(A, rcond=18 * np.finfo(float).eps) @ C
        np.testing.assert_allclose(Dstar[b].numpy()[mask.numpy()], want[mask.numpy()],
                                   rtol=1e-6, atol=1e-8)
    if name == "regression":
        assert mask.sum() == 1 and not Z0[:, 19, :].any() and not Z0[:, :, 19].any()
    if name.startswith("rbf"):                                 # a symmetric kernel matrix
        X = Z0.clone()
        X[:, 18:, 18:] = torch.as_tensor(np.nan)
        torch.testing.assert_close(X[:, :18, 18:], X[:, 18:, :18].transpose(1, 2))


def test_evaluate_scores_the_model_the_algorithm_and_a_control():
    """Hand-set EAGLE: the model and its extracted algorithm score the same on every family
    (to rounding), and both beat predicting zero on the training family; an untrained model
    (the control) does not."""
    sA = [0.9 / 30] * 4
    sC = [1.8 / 30] * 4
    model = eagle_weights(ModelConfig(), sA, sC)
    alg = extract(model, TASK, val_size=64).seeds[0].algorithm
    for name in ("training", "regression"):
        s = evaluate(model, alg, TASK, name, 32, "power")
        for form in ("", " normalised"):
            assert s["model" + form]["median"] == pytest.approx(s["algorithm" + form]["median"],
                                                                rel=1e-8)
    s = evaluate(model, alg, TASK, "training", 32, "power")
    assert s["model"]["median"] < 0.5 * s["zero"]["median"]
    untrained = LinearTransformer(ModelConfig(), 1, dtype=torch.float64)
    u = evaluate(untrained, alg, TASK, "training", 32, "power")
    assert u["model"]["median"] > 0.9 * u["zero"]["median"]


def test_a_normalised_model_and_its_algorithm_score_alike():
    """A model with per-prompt normalisation is extracted on the scaled problems; the
    evaluation feeds its algorithm the prompts scaled the same way."""
    from eaglelab.tasks.scale import training_median

    target = training_median(TASK, "frobenius")
    N = 1.3 * target ** 2
    model = eagle_weights(ModelConfig(), [0.9 / N] * 4, [1.8 / N] * 4)
    model.config = model.config.with_normalisation("frobenius", target)
    alg = extract(model, TASK, val_size=64).seeds[0].algorithm
    s = evaluate(model, alg, TASK, "rbf synthetic", 32, "frobenius")
    for form in ("", " normalised"):
        assert s["model" + form]["median"] == pytest.approx(s["algorithm" + form]["median"],
                                                            rel=1e-8)
