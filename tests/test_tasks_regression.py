"""Tests for eaglelab.tasks.regression (in-context linear regression in the block layout)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eaglelab.tasks import nystrom_reference, regression_batch, regression_problem, split


def test_layout_and_noiseless_least_squares():
    g = torch.Generator().manual_seed(0)
    X = regression_batch(32, 20, 5, generator=g, dtype=torch.float64)
    assert X.shape == (32, 6, 21)
    A, B, C, D = split(X.numpy(), 5, 20)
    assert B.shape == (32, 1, 20) and C.shape == (32, 5, 1) and D.shape == (32, 1, 1)
    # one weight vector per task explains every column, queries included
    w = np.linalg.lstsq(A[0].T, B[0].ravel(), rcond=None)[0]
    np.testing.assert_allclose(w @ C[0], D[0].ravel(), rtol=1e-10)
    Dstar, _ = nystrom_reference(A, B, C)
    np.testing.assert_allclose(Dstar, D, atol=1e-10)


def test_underdetermined_is_min_norm_not_exact():
    p = regression_problem(3, 8, seed=1)
    assert p.shape == (8, 3, 1, 1)
    assert abs(p.reference - p.D).max() > 1e-3
    w_min = np.linalg.pinv(p.A.T) @ p.B.ravel()
    np.testing.assert_allclose(p.reference.ravel(), w_min @ p.C, rtol=1e-10)


def test_noise_on_training_responses_only():
    p = regression_problem(4000, 3, noise_std=0.5, seed=2, n_queries=4)
    w = p.meta["w"]
    resid = p.B - w @ p.A
    assert resid.std() == pytest.approx(0.5, rel=0.05)
    np.testing.assert_allclose(p.D, w @ p.C, rtol=1e-12)  # D is noiseless
    np.testing.assert_allclose(p.W_star, w, atol=0.05)  # OLS recovers w


def test_covariance_is_respected():
    cov = np.array([[4.0, 1.0], [1.0, 1.0]])
    X = regression_batch(
        2000, 10, 2, covariance=cov, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    feats = X[:, :2, :].permute(1, 0, 2).reshape(2, -1).numpy()
    np.testing.assert_allclose(np.cov(feats), cov, atol=0.1)
    wvar = (X[:, 2:, :] ** 2).mean().item()  # E[y^2] = tr(cov) for w ~ N(0, I)
    assert wvar == pytest.approx(5.0, rel=0.1)


def test_seed_dtype_and_distinct():
    a = regression_batch(
        4, 6, 3, noise_std=0.1, generator=torch.Generator().manual_seed(7), dtype=torch.float64
    )
    b = regression_batch(4, 6, 3, noise_std=0.1, generator=torch.Generator().manual_seed(7))
    c = regression_batch(4, 6, 3, noise_std=0.1, generator=torch.Generator().manual_seed(8))
    assert b.dtype == torch.float32
    torch.testing.assert_close(b, a.to(torch.float32), rtol=0, atol=0)
    assert not torch.allclose(b, c)
    np.testing.assert_array_equal(
        regression_problem(5, 2, seed=3).X, regression_problem(5, 2, seed=3).X
    )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_features": 0}, "n_features"),
        ({"n_queries": 0}, "n_queries"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"covariance": np.eye(2)}, "covariance"),
        ({"covariance": np.array([[1.0, 2.0, 0], [0, 1, 0], [0, 0, 1]])}, "covariance"),
        ({"covariance": -np.eye(3)}, "covariance"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    args = {"n_samples": 5, "n_features": 3, **kwargs}
    with pytest.raises(ValueError, match=name):
        regression_batch(2, **args)
    with pytest.raises(ValueError, match=name):
        regression_problem(**args)


@settings(deadline=None, max_examples=15)
@given(n=st.integers(1, 12), d=st.integers(1, 6), nq=st.integers(1, 3))
def test_shapes_property(n, d, nq):
    X = regression_batch(2, n, d, n_queries=nq)
    assert X.shape == (2, d + 1, n + nq)
    p = regression_problem(n, d, n_queries=nq, seed=0)
    assert p.shape == (d, n, 1, nq)
    if n >= d:
        np.testing.assert_allclose(p.reference, p.D, atol=1e-8 * max(1.0, np.abs(p.D).max()))
