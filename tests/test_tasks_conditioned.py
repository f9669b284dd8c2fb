"""Tests for eaglelab.tasks.conditioned (SVD construction with prescribed kappa and rank)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eaglelab.tasks import (
    conditioned_batch,
    conditioned_problem,
    singular_value_profile,
    split,
)


def _cond_nonzero(A: np.ndarray, rank: int) -> float:
    s = np.linalg.svd(A, compute_uv=False)
    return s[0] / s[rank - 1]


@pytest.mark.parametrize("law", ["geometric", "loguniform"])
@pytest.mark.parametrize("kappa", [1.0, 1e2, 1e5])
def test_condition_number_is_kappa(law, kappa):
    p = conditioned_problem(30, 20, 2, 3, kappa=kappa, seed=1, singular_values=law)
    assert p.shape == (20, 30, 3, 2)
    assert _cond_nonzero(p.A, 20) == pytest.approx(kappa, rel=1e-8)
    assert np.linalg.matrix_rank(p.A) == 20


@pytest.mark.parametrize("law", ["geometric", "loguniform"])
def test_rank_deficient_and_noiseless(law):
    p = conditioned_problem(25, 20, 2, 2, kappa=1e3, rank=7, seed=3, singular_values=law)
    assert np.linalg.matrix_rank(p.A) == 7
    assert np.linalg.matrix_rank(p.X) == 7  # rank [A C; B D] = rank A
    assert _cond_nonzero(p.A, 7) == pytest.approx(1e3, rel=1e-8)
    np.testing.assert_allclose(p.reference, p.D, atol=1e-10 * np.abs(p.D).max())
    assert p.meta["rank"] == 7 and p.meta["kappa"] == 1e3 and p.meta["seed"] == 3
    assert p.meta["singular_values"] == law


def test_singular_values_recorded_and_spaced():
    p = conditioned_problem(10, 8, kappa=1e4, seed=0)
    sigma = p.meta["sigma"]
    np.testing.assert_allclose(sigma, np.geomspace(1, 1e-4, 8))
    np.testing.assert_allclose(np.linalg.svd(p.A, compute_uv=False), sigma, rtol=1e-10)


def test_loguniform_profile_statistics():
    u = np.random.default_rng(0).random((4000, 8))
    sigma = singular_value_profile(10, 1e4, "loguniform", uniforms=u)
    assert sigma.shape == (4000, 10)
    assert np.all(np.diff(sigma, axis=-1) <= 0)
    np.testing.assert_allclose(sigma[:, 0], 1.0)
    np.testing.assert_allclose(sigma[:, -1], 1e-4)
    logs = np.log10(sigma[:, 1:-1]).ravel()  # uniform on [-4, 0]: mean -2, var 16/12
    assert logs.mean() == pytest.approx(-2.0, abs=0.05)
    assert logs.var() == pytest.approx(16 / 12, rel=0.05)


def test_seed_reproducible_and_distinct():
    a = conditioned_problem(12, 10, seed=5, noise_std=0.01)
    b = conditioned_problem(12, 10, seed=5, noise_std=0.01)
    c = conditioned_problem(12, 10, seed=6, noise_std=0.01)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.allclose(a.X, c.X)


def test_noise_breaks_noiselessness():
    clean = conditioned_problem(12, 10, seed=5)
    noisy = conditioned_problem(12, 10, seed=5, noise_std=1e-3)
    diff = noisy.X - clean.X
    assert 0.5e-3 < diff.std() < 2e-3
    assert np.abs(noisy.D - noisy.reference).max() > 1e-6


def test_batch_shapes_kappa_rank_and_dtype():
    g = torch.Generator().manual_seed(0)
    X = conditioned_batch(6, 15, 12, 2, 3, kappa=1e3, rank=9, generator=g, dtype=torch.float64)
    assert X.shape == (6, 15, 17)
    A, B, C, D = split(X, 12, 15)
    s = torch.linalg.svdvals(A)
    torch.testing.assert_close(
        s[:, 0] / s[:, 8], torch.full((6,), 1e3, dtype=torch.float64), rtol=1e-8, atol=0
    )
    assert torch.all(s[:, 9] < 1e-12)
    assert torch.all(torch.linalg.matrix_rank(X) == 9)
    X32 = conditioned_batch(
        6, 15, 12, 2, 3, kappa=1e3, rank=9, generator=torch.Generator().manual_seed(0)
    )
    assert X32.dtype == torch.float32
    torch.testing.assert_close(X32, X.to(torch.float32), rtol=0, atol=0)


def test_batch_items_differ_and_loguniform():
    X = conditioned_batch(
        3,
        8,
        8,
        kappa=50.0,
        singular_values="loguniform",
        generator=torch.Generator().manual_seed(2),
        dtype=torch.float64,
    )
    assert not torch.allclose(X[0], X[1])
    s = torch.linalg.svdvals(X[:, :8, :8])
    torch.testing.assert_close(s[:, 0] / s[:, -1], torch.full((3,), 50.0, dtype=torch.float64))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"kappa": 0.5}, "kappa"),
        ({"kappa": float("inf")}, "kappa"),
        ({"kappa": float("nan")}, "kappa"),
        ({"rank": 0}, "rank"),
        ({"rank": 11}, "rank"),
        ({"rank": 1, "kappa": 10.0}, "kappa"),
        ({"n_prime": 0}, "n_prime"),
        ({"d_prime": 0}, "d_prime"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"singular_values": "linear"}, "singular_values"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        conditioned_problem(12, 10, **kwargs)
    with pytest.raises(ValueError, match=name):
        conditioned_batch(2, 12, 10, **kwargs)


@pytest.mark.parametrize(("n", "d", "name"), [(0, 3, "n"), (3, 0, "d"), (2.5, 3, "n")])
def test_bad_sizes_raise(n, d, name):
    with pytest.raises(ValueError, match=f"^{name} "):
        conditioned_problem(n, d)


def test_bad_batch_raises():
    with pytest.raises(ValueError, match="batch"):
        conditioned_batch(0, 4, 4)


@settings(deadline=None, max_examples=15)
@given(
    n=st.integers(1, 9),
    d=st.integers(1, 9),
    n_prime=st.integers(1, 3),
    d_prime=st.integers(1, 3),
    data=st.data(),
)
def test_shapes_property(n, d, n_prime, d_prime, data):
    rank = data.draw(st.integers(1, min(n, d)))
    kappa = 1.0 if rank == 1 else data.draw(st.floats(1.0, 1e6))
    p = conditioned_problem(n, d, n_prime, d_prime, kappa=kappa, rank=rank, seed=0)
    assert p.A.shape == (d, n) and p.B.shape == (d_prime, n)
    assert p.C.shape == (d, n_prime) and p.D.shape == (d_prime, n_prime)
    assert np.linalg.matrix_rank(p.A) == rank
    assert _cond_nonzero(p.A, rank) == pytest.approx(kappa, rel=1e-8)
    X = conditioned_batch(2, n, d, n_prime, d_prime, kappa=kappa, rank=rank)
    assert X.shape == (2, d + d_prime, n + n_prime)
