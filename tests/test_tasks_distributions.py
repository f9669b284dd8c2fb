"""Tests for eaglelab.tasks.distributions (the ablation distributions behind `sample`)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eaglelab.tasks import (
    DISTRIBUTIONS,
    TrainingTaskConfig,
    default_params,
    nystrom_reference,
    sample,
    split,
    training_batch,
)

ABLATIONS = (
    "svd_loguniform",
    "student_t",
    "gaussian",
    "correlated_gaussian",
    "sparse_rademacher",
    "clustered",
)




def _draw(name, batch=512, seed=0, **kw):
    return sample(
        name, batch, generator=torch.Generator().manual_seed(seed), dtype=torch.float64, **kw
    )


def test_names():
    assert set(DISTRIBUTIONS) == {"paper", *ABLATIONS}


def _noiseless(X, d, n):
    A, B, C, D = split(X.numpy(), d, n)
    Dstar, _ = nystrom_reference(A, B, C)
    err = np.abs(Dstar - D).reshape(len(X), -1).max(axis=1)
    return err <= 1e-8 * np.abs(X.numpy()).max()


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_shape_rank_and_noiseless(name):
    X = _draw(name, batch=64, n=14, d=12, n_prime=3, d_prime=2, s=6)
    assert X.shape == (64, 14, 17) and X.dtype == torch.float64
    assert int(torch.linalg.matrix_rank(X).max()) <= 6
    ok = _noiseless(X, 12, 14)
    if name == "sparse_rademacher":
        # sparse factors often leave A with lower rank than X: not noiseless (documented)
        rank_A = torch.linalg.matrix_rank(X[:, :12, :14]).numpy()
        rank_X = torch.linalg.matrix_rank(X).numpy()
        assert np.all(ok[rank_A == rank_X]) and not np.all(ok)
    else:
        assert np.all(ok)


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_seeds_dtype_and_distinct(name):
    X64 = _draw(name, batch=8, seed=3)
    again = _draw(name, batch=8, seed=3)
    other = _draw(name, batch=8, seed=4)
    X32 = sample(name, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(X64, again, rtol=0, atol=0)
    assert not torch.allclose(X64, other)
    assert X32.dtype == torch.float32
    torch.testing.assert_close(X32, X64.to(torch.float32), rtol=0, atol=0)
    assert not torch.allclose(X64[0], X64[1])


def test_paper_matches_training_batch():
    cfg = TrainingTaskConfig(n=10, d=9, n_prime=1, d_prime=3, s=5, alpha=0.5, noise_std=0.1)
    a = sample(
        "paper",
        4,
        n=10,
        d=9,
        n_prime=1,
        d_prime=3,
        s=5,
        alpha=0.5,
        noise_std=0.1,
        generator=torch.Generator().manual_seed(0),
    )
    b = training_batch(4, cfg, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_second_moments():
    s = 10
    # E[X_ij^2] = tr(Sigma^2) / s for factor rows N(0, Sigma)
    assert (_draw("gaussian") ** 2).mean().item() == pytest.approx(1.0, rel=0.05)
    sig = 0.8 ** np.abs(np.subtract.outer(np.arange(s), np.arange(s)))
    expected = (sig**2).sum() / s
    assert (_draw("correlated_gaussian") ** 2).mean().item() == pytest.approx(expected, rel=0.05)
    # Student-t(4) entries have variance 2, so E[X^2] = 4
    assert (_draw("student_t", batch=2048) ** 2).mean().item() == pytest.approx(4.0, rel=0.1)
    # sparse Rademacher: E[X^2] = p^2
    assert (_draw("sparse_rademacher") ** 2).mean().item() == pytest.approx(0.01, rel=0.05)


def test_student_t_heavier_tails_than_gaussian():
    def kurtosis(X):
        x = X.flatten()
        return (((x - x.mean()) ** 4).mean() / x.var() ** 2).item()

    assert kurtosis(_draw("student_t")) > 2 * kurtosis(_draw("gaussian"))


def test_correlation_parameter_changes_moment():
    m_low = (_draw("correlated_gaussian", rho=0.1) ** 2).mean().item()
    m_high = (_draw("correlated_gaussian", rho=0.8) ** 2).mean().item()
    assert m_high > 2 * m_low


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_sparse_rademacher_sparsity(p):
    s = 10
    X = _draw("sparse_rademacher", batch=1024, p=p)
    frac = (X != 0).double().mean().item()
    # X_ij != 0 iff the sum of m ~ Bin(s, p^2) independent +-1 terms is nonzero
    q = p * p
    zero = sum(
        math.comb(s, m) * q**m * (1 - q) ** (s - m) * math.comb(m, m // 2) / 2**m
        for m in range(0, s + 1, 2)
    )
    assert frac == pytest.approx(1 - zero, rel=0.05)
    vals = torch.unique(X * math.sqrt(s))
    assert torch.allclose(vals, vals.round())  # integer multiples of 1/sqrt(s)


def test_sparse_rademacher_never_all_zero_A():
    X = _draw("sparse_rademacher", batch=2000, n=4, d=4, s=1, p=0.3)
    A = X[:, :4, :4]
    assert torch.all(A.abs().flatten(1).amax(dim=1) > 0)


def test_clustered_rows_collapse_without_noise():
    X = _draw("clustered", batch=16, cluster_noise=0.0)
    for Xi in X.numpy():
        assert np.unique(Xi.round(12), axis=0).shape[0] <= 5
        assert np.unique(Xi.round(12), axis=1).shape[1] <= 5
    Xn = _draw("clustered", batch=4)
    assert np.unique(Xn[0].numpy().round(12), axis=0).shape[0] == 20


def test_svd_loguniform_spectrum():
    X = _draw("svd_loguniform", batch=256, s=6)
    sv = torch.linalg.svdvals(X)
    assert torch.all(sv[:, :6] >= 1e-2 - 1e-12) and torch.all(sv[:, :6] <= 1 + 1e-12)
    assert torch.all(sv[:, 6:] < 1e-12)
    logs = torch.log10(sv[:, :6]).flatten()
    assert logs.mean().item() == pytest.approx(-1.0, abs=0.05)


def test_noise_std():
    clean = _draw("gaussian", batch=64)
    noisy = _draw("gaussian", batch=64, noise_std=0.1)
    # same seed: the noise is drawn after X, so the difference is exactly the noise
    assert (noisy - clean).std().item() == pytest.approx(0.1, rel=0.05)
    assert (noisy - clean).mean().abs().item() < 0.01
    assert int(torch.linalg.matrix_rank(noisy).min()) == 20


def test_default_params():
    assert default_params("sparse_rademacher") == {"p": 0.1}
    assert default_params("clustered") == {"k": 5, "cluster_noise": 0.1}
    d = default_params("student_t")
    d["nu"] = 1.0
    assert default_params("student_t") == {"nu": 4.0}


def test_unknown_distribution_lists_names():
    with pytest.raises(ValueError, match="distribution.*'gaussian'.*'clustered'"):
        sample("uniform", 2)


@pytest.mark.parametrize(
    ("name", "kwargs", "arg"),
    [
        ("gaussian", {"p": 0.5}, "p"),
        ("sparse_rademacher", {"p": 0.0}, "p"),
        ("sparse_rademacher", {"p": 1.5}, "p"),
        ("student_t", {"nu": -1.0}, "nu"),
        ("correlated_gaussian", {"rho": 1.0}, "rho"),
        ("clustered", {"k": 0}, "k"),
        ("clustered", {"cluster_noise": -0.1}, "cluster_noise"),
        ("svd_loguniform", {"smin": 0.0}, "smin"),
        ("paper", {"alpha": 2.0}, "alpha"),
        ("gaussian", {"s": 0}, "s"),
        ("gaussian", {"n": 0}, "n"),
        ("gaussian", {"d_prime": 0}, "d_prime"),
        ("gaussian", {"noise_std": -1.0}, "noise_std"),
    ],
)
def test_bad_parameters_raise(name, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        sample(name, 2, **kwargs)


def test_bad_batch_raises():
    with pytest.raises(ValueError, match="batch"):
        sample("gaussian", 0)


@settings(deadline=None, max_examples=20)
@given(
    name=st.sampled_from(DISTRIBUTIONS),
    n=st.integers(1, 8),
    d=st.integers(1, 8),
    n_prime=st.integers(1, 3),
    d_prime=st.integers(1, 3),
    s=st.integers(1, 6),
)
def test_shapes_property(name, n, d, n_prime, d_prime, s):
    X = sample(
        name,
        3,
        n=n,
        d=d,
        n_prime=n_prime,
        d_prime=d_prime,
        s=s,
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )
    assert X.shape == (3, d + d_prime, n + n_prime)
    assert torch.isfinite(X).all()
    assert int(torch.linalg.matrix_rank(X).max()) <= s
