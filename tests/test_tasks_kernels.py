"""Tests for eaglelab.tasks.kernels (Nystrom kernel-slice tasks)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_iris
from sklearn.kernel_approximation import Nystroem

from eaglelab.tasks import (
    KERNELS,
    POINT_CLOUDS,
    kernel_batch,
    kernel_matrix,
    nystrom_problem,
    split,
    synthetic_points,
)


@pytest.fixture(scope="module")
def cloud():
    return synthetic_points(200, 3, "gaussian", seed=0)


def test_kernel_formulas():
    x = np.array([[0.0, 0.0], [1.0, 2.0]])
    y = np.array([[1.0, 0.0]])
    np.testing.assert_allclose(
        kernel_matrix(x, y, "rbf", gamma=0.5).ravel(), np.exp(-0.5 * np.array([1.0, 4.0]))
    )
    np.testing.assert_allclose(
        kernel_matrix(x, y, "laplacian", gamma=0.5).ravel(), np.exp(-0.5 * np.array([1.0, 2.0]))
    )
    np.testing.assert_allclose(
        kernel_matrix(x, y, "polynomial", degree=2).ravel(), np.array([1.0, 1.5**2])
    )  # gamma = 1/dim, coef0 = 1
    r = np.sqrt(3) * np.array([1.0, 2.0]) / 2.0
    np.testing.assert_allclose(
        kernel_matrix(x, y, "matern32", length_scale=2.0).ravel(), (1 + r) * np.exp(-r)
    )
    K = kernel_matrix(x)  # default rbf, gamma = 1/dim, symmetric
    np.testing.assert_allclose(K, K.T)
    np.testing.assert_allclose(np.diag(K), 1.0)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("kind", POINT_CLOUDS)
def test_batch_matches_numpy_kernel(kernel, kind):
    X = kernel_batch(
        1,
        6,
        6,
        2,
        2,
        dim=4,
        kernel=kernel,
        kind=kind,
        generator=torch.Generator().manual_seed(11),
        dtype=torch.float64,
    )
    P = synthetic_points(8, 4, kind, seed=11)
    np.testing.assert_allclose(X[0].numpy(), kernel_matrix(P, P, kernel), rtol=1e-12, atol=1e-12)


def test_nystrom_blocks_are_kernel_slices(cloud):
    p = nystrom_problem(
        cloud, landmarks=12, queries=3, columns=15, extra=2, seed=4, kernel="laplacian", gamma=0.7
    )
    m = p.meta
    L, J, Q, E = m["landmarks"], m["columns"], m["queries"], m["extra"]
    assert p.shape == (12, 15, 2, 3)
    assert len(np.intersect1d(L, Q)) == 0 and len(np.intersect1d(J, np.union1d(L, Q))) == 0
    assert len(np.intersect1d(E, np.concatenate([L, Q, J]))) == 0
    K = kernel_matrix(cloud, cloud, "laplacian", gamma=0.7)
    np.testing.assert_array_equal(p.A, K[np.ix_(L, J)])
    np.testing.assert_array_equal(p.B, K[np.ix_(E, J)])
    np.testing.assert_array_equal(p.C, K[np.ix_(L, Q)])
    np.testing.assert_array_equal(p.D, K[np.ix_(E, Q)])
    assert m["kernel"] == "laplacian" and m["kernel_params"] == {"gamma": 0.7}
    assert m["seed"] == 4


def test_defaults_are_classical_nystrom(cloud):
    p = nystrom_problem(cloud, landmarks=10, queries=4, seed=0)
    np.testing.assert_array_equal(p.meta["columns"], p.meta["landmarks"])
    np.testing.assert_array_equal(p.meta["extra"], p.meta["queries"])
    np.testing.assert_allclose(p.A, p.A.T)
    np.testing.assert_allclose(p.B, p.C.T)
    # the Nystrom residual K_QQ - K_QL K_LL^+ K_LQ is a PSD Schur complement, nonzero
    resid = p.D - p.reference
    assert np.linalg.eigvalsh((resid + resid.T) / 2).min() > -1e-10
    assert np.abs(resid).max() > 1e-3


def test_error_decreases_with_more_landmarks(cloud):
    order = np.random.default_rng(1).permutation(len(cloud))
    queries = order[:20]
    errors = []
    for m in (5, 10, 20, 40, 80):
        p = nystrom_problem(cloud, landmarks=order[20 : 20 + m], queries=queries, kernel="rbf")
        errors.append(np.linalg.norm(p.D - p.reference))
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False))
    assert errors[-1] < errors[0] / 3


def test_matches_sklearn_nystroem(cloud):
    L, E, Q = np.arange(10), np.arange(40, 43), np.arange(50, 55)
    p = nystrom_problem(cloud, landmarks=L, queries=Q, extra=E, kernel="rbf", gamma=0.5)
    ny = Nystroem(kernel="rbf", gamma=0.5, n_components=len(L)).fit(cloud[L])
    approx = ny.transform(cloud[E]) @ ny.transform(cloud[Q]).T
    np.testing.assert_allclose(p.reference, approx, rtol=1e-8, atol=1e-12)
    assert np.abs(p.D - p.reference).max() > 1e-6  # the true slice differs


def test_polynomial_kernel_is_exactly_low_rank():
    P = synthetic_points(60, 2, "clusters", seed=2)
    p = nystrom_problem(P, landmarks=10, queries=5, kernel="polynomial", degree=2, seed=3)
    assert np.linalg.matrix_rank(p.X) <= 6  # C(2 + 2, 2)
    np.testing.assert_allclose(p.reference, p.D, rtol=1e-8, atol=1e-8)


def test_user_point_set_iris():
    data = load_iris().data
    p = nystrom_problem(data, landmarks=30, queries=4, kernel="matern32", seed=0)
    assert p.shape == (30, 30, 4, 4)
    assert p.meta["n_points"] == 150 and p.meta["dim"] == 4
    rel = np.linalg.norm(p.D - p.reference) / np.linalg.norm(p.D)
    assert rel < 0.5


def test_synthetic_points_kinds():
    g = synthetic_points(3000, 2, "gaussian", seed=0)
    np.testing.assert_allclose(np.cov(g.T), np.eye(2), atol=0.1)
    c = synthetic_points(500, 3, "clusters", seed=0)
    assert c.shape == (500, 3)
    m = synthetic_points(300, 5, "manifold", seed=0)
    assert np.all(np.abs(m) <= 1.0)

    def decay(P):  # 31st / 1st eigenvalue of the RBF kernel matrix
        ev = np.linalg.eigvalsh(kernel_matrix(P))[::-1]
        return ev[30] / ev[0]

    # a 1-D curve has a much faster-decaying kernel spectrum than a 5-D Gaussian cloud
    assert decay(m) < 1e-5 < 1e-3 < decay(synthetic_points(300, 5, "gaussian", seed=0))
    np.testing.assert_array_equal(
        synthetic_points(7, 3, "clusters", seed=9), synthetic_points(7, 3, "clusters", seed=9)
    )
    assert not np.allclose(synthetic_points(7, 3, seed=9), synthetic_points(7, 3, seed=10))


def test_kernel_batch_layouts_seed_dtype():
    X = kernel_batch(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert X.shape == (5, 20, 20)
    torch.testing.assert_close(X, X.transpose(-1, -2))
    assert torch.linalg.eigvalsh(X).min() > -1e-10
    X32 = kernel_batch(5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(X32, X.to(torch.float32), rtol=0, atol=0)
    assert not torch.allclose(X[0], X[1])
    Y = kernel_batch(
        3,
        7,
        5,
        1,
        2,
        layout="independent",
        kind="manifold",
        kernel="matern32",
        generator=torch.Generator().manual_seed(0),
    )
    assert Y.shape == (3, 7, 8)
    A, B, C, D = split(Y, 5, 7)
    assert D.shape == (3, 2, 1)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda P: kernel_matrix(P, kernel="cosine"), "kernel"),
        (lambda P: kernel_matrix(P, kernel="rbf", gamma=-1.0), "gamma"),
        (lambda P: kernel_matrix(P, kernel="rbf", degree=2), "degree"),
        (lambda P: kernel_matrix(P, kernel="polynomial", degree=0), "degree"),
        (lambda P: kernel_matrix(P, kernel="matern32", length_scale=0.0), "length_scale"),
        (lambda P: kernel_matrix(P, P[:, :2]), "points_y"),
        (lambda P: nystrom_problem(P, landmarks=25, queries=2), "landmarks"),
        (lambda P: nystrom_problem(P, landmarks=15, queries=8), "queries"),
        (lambda P: nystrom_problem(P, landmarks=5, queries=2, columns=20), "columns"),
        (lambda P: nystrom_problem(P, landmarks=5, queries=2, extra=20), "extra"),
        (lambda P: nystrom_problem(P, landmarks=np.array([0, 0, 1]), queries=2), "landmarks"),
        (lambda P: nystrom_problem(P, landmarks=np.array([0, 30]), queries=2), "landmarks"),
        (lambda P: nystrom_problem(P, landmarks=0, queries=2), "landmarks"),
        (lambda P: nystrom_problem(P, landmarks=3, queries=np.array([1.5])), "queries"),
        (lambda P: synthetic_points(10, 2, "spiral"), "kind"),
        (lambda P: synthetic_points(0, 2), "n_points"),
        (lambda P: kernel_batch(2, 4, 5), "layout"),
        (lambda P: kernel_batch(2, dim=0), "dim"),
        (lambda P: kernel_batch(0), "batch"),
    ],
)
def test_bad_arguments_raise(call, name):
    P = synthetic_points(20, 3, seed=0)
    with pytest.raises(ValueError, match=name):
        call(P)


@settings(deadline=None, max_examples=15)
@given(
    d=st.integers(1, 8),
    n=st.integers(1, 8),
    d_prime=st.integers(1, 3),
    n_prime=st.integers(1, 3),
    kernel=st.sampled_from(KERNELS),
    kind=st.sampled_from(POINT_CLOUDS),
)
def test_shapes_property(d, n, d_prime, n_prime, kernel, kind):
    X = kernel_batch(2, n, d, n_prime, d_prime, layout="independent", kernel=kernel, kind=kind)
    assert X.shape == (2, d + d_prime, n + n_prime)
    assert torch.isfinite(X).all()
    P = synthetic_points(40, 2, kind, seed=0)
    p = nystrom_problem(
        P, landmarks=d, queries=n_prime, columns=n, extra=d_prime, kernel=kernel, seed=1
    )
    assert p.shape == (d, n, d_prime, n_prime)
