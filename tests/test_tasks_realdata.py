"""Tests for eaglelab.tasks.realdata (completion problems from real matrices)."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from eaglelab.tasks import load_matrix, load_problem, matrix_task, save_problem

DATA = Path("/work/shared/data/suitesparse")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="SuiteSparse test matrices not present")




def _low_rank(p, q, r, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((p, r)) @ rng.standard_normal((r, q))


def _check_layout(M, prob):
    m = prob.meta
    P = np.asarray(M.toarray() if sp.issparse(M) else M)[
        np.ix_(m["row_permutation"], m["col_permutation"])
    ]
    r = m["rank_used"]
    np.testing.assert_array_equal(P[:r, :r], prob.A)
    np.testing.assert_array_equal(P[r : r + 1, :r], prob.B)
    np.testing.assert_array_equal(P[:r, r:], prob.C)
    np.testing.assert_array_equal(P[r : r + 1, r:], prob.D)
    assert sorted(m["row_permutation"]) == list(range(P.shape[0]))
    assert sorted(m["col_permutation"]) == list(range(P.shape[1]))


def test_exact_low_rank_completion_is_exact():
    M = _low_rank(30, 25, 7)
    prob = matrix_task(M)
    assert prob.shape == (7, 7, 1, 18)
    assert prob.meta["rank"] == 7 and not prob.meta["shrunk"]
    assert np.linalg.matrix_rank(prob.A) == 7 and np.isfinite(prob.meta["cond_A"])
    np.testing.assert_allclose(prob.reference, prob.D, rtol=1e-9, atol=1e-9 * np.abs(M).max())
    _check_layout(M, prob)


def test_sparse_input_same_as_dense():
    M = _low_rank(12, 9, 4, seed=1)
    M[np.abs(M) < 0.5] = 0.0  # sparsify (makes M full rank, hence "shrink")
    a = matrix_task(M, on_full_rank="shrink")
    b = matrix_task(sp.csr_array(M), on_full_rank="shrink")
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.meta["rows"], b.meta["rows"])


def test_given_rank_and_rtol():
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((20, 6)))
    V, _ = np.linalg.qr(rng.standard_normal((15, 6)))
    M = (U * np.array([1, 0.5, 0.1, 1e-7, 1e-8, 1e-9])) @ V.T
    assert matrix_task(M).meta["rank"] == 6
    assert matrix_task(M, rtol=1e-5).meta["rank"] == 3
    prob = matrix_task(M, rank=2)
    assert prob.shape == (2, 2, 1, 13) and prob.meta["rank_used"] == 2


def test_extra_row():
    M = _low_rank(10, 8, 3, seed=2)
    prob = matrix_task(M, extra_row=4)
    assert prob.meta["extra_row"] == 4 and 4 not in prob.meta["rows"]
    np.testing.assert_array_equal(prob.B, M[[4]][:, prob.meta["cols"]])
    np.testing.assert_allclose(prob.reference, prob.D, rtol=1e-9, atol=1e-9)
    # row 1 alone carries the second direction: it cannot be the extra row
    N = np.array([[1.0, 0, 1], [0, 1, 1], [1, 0, 1], [2, 0, 2]])
    with pytest.raises(ValueError, match="extra_row=1"):
        matrix_task(N, extra_row=1)


def test_default_extra_row_has_nonzero_blocks():
    # rank 2, column 2 == column 0.  Rows 0 and 1 are the pivots; row 2 is the spare row of
    # largest norm but is zero outside column 1, so its D part is zero and it is skipped.
    G = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    F = np.vstack(
        [
            [1000.0, 0.0],
            [0.0, 1000.0],
            [0.0, 900.0],
            np.random.default_rng(3).standard_normal((5, 2)),
        ]
    )
    M = F @ G
    prob = matrix_task(M)
    assert set(prob.meta["rows"]) == {0, 1}
    assert prob.meta["extra_row"] != 2
    assert np.abs(prob.B).max() > 0 and np.abs(prob.D).max() > 0
    np.testing.assert_allclose(prob.reference, prob.D, rtol=1e-9)
    # asked for explicitly, row 2 is used (a trivial task with D = 0)
    assert np.all(matrix_task(M, extra_row=2).D == 0)


def test_full_row_rank_raises_or_shrinks():
    M = _low_rank(5, 9, 5, seed=4)
    with pytest.raises(ValueError, match="on_full_rank.*full row rank|full row rank.*on_full_rank"):
        matrix_task(M)
    prob = matrix_task(M, on_full_rank="shrink")
    assert prob.shape == (4, 4, 1, 5)
    assert prob.meta["shrunk"] and prob.meta["rank"] == 5 and prob.meta["rank_used"] == 4
    assert np.linalg.matrix_rank(prob.A) == 4
    assert np.abs(prob.reference - prob.D).max() > 1e-6  # no longer noiseless
    _check_layout(M, prob)


def test_full_column_rank_raises_or_shrinks():
    M = _low_rank(9, 4, 4, seed=5)
    with pytest.raises(ValueError, match="full column rank"):
        matrix_task(M)
    prob = matrix_task(M, on_full_rank="shrink")
    assert prob.shape == (3, 3, 1, 1)
    assert np.linalg.matrix_rank(prob.A) == 3
    _check_layout(M, prob)


@pytest.mark.parametrize(
    ("M", "kwargs", "name"),
    [
        (np.ones((1, 4)), {}, "M"),
        (np.zeros((4, 4)), {}, "M"),
        (np.full((3, 3), np.nan), {}, "M"),
        (np.ones((3, 3, 1)), {}, "M"),
        (np.ones((4, 4)), {"rank": 0}, "rank"),
        (np.ones((4, 4)), {"rank": 5}, "rank"),
        (np.ones((4, 4)), {"rtol": -1.0}, "rtol"),
        (np.ones((4, 4)), {"extra_row": 4}, "extra_row"),
        (np.ones((4, 4)), {"on_full_rank": "ignore"}, "on_full_rank"),
    ],
)
def test_bad_arguments_raise(M, kwargs, name):
    with pytest.raises(ValueError, match=name):
        matrix_task(M, **kwargs)


@needs_data
@pytest.mark.parametrize(("name", "rank"), [("Maragal_1", 10), ("abb313", 128)])
def test_real_matrices_with_spare_rows_and_columns(name, rank):
    M = load_matrix(DATA / f"{name}.mtx")
    assert sp.issparse(M)
    prob = matrix_task(M)
    p, q = M.shape
    assert prob.shape == (rank, rank, 1, q - rank)
    assert prob.meta["rank"] == rank and prob.meta["A_rank"] == rank
    assert np.linalg.matrix_rank(prob.A) == rank
    assert 1 <= prob.meta["cond_A"] < 1e6
    # these matrices are exactly rank deficient: the completion is exact
    np.testing.assert_allclose(prob.reference, prob.D, atol=1e-9 * np.abs(prob.D).max())
    _check_layout(M, prob)


@needs_data
@pytest.mark.parametrize(
    ("name", "shape"), [("lp_afiro", (26, 26, 1, 25)), ("ash85", (84, 84, 1, 1))]
)
def test_real_full_rank_matrices(name, shape):
    M = load_matrix(DATA / f"{name}.mtx")
    with pytest.raises(ValueError, match="on_full_rank"):
        matrix_task(M)
    prob = load_problem(DATA / f"{name}.mtx", on_full_rank="shrink")
    assert prob.shape == shape and prob.meta["shrunk"]
    assert np.linalg.matrix_rank(prob.A) == shape[0]
    assert np.isfinite(prob.meta["cond_A"])
    assert prob.meta["path"].endswith(f"{name}.mtx")


def test_file_round_trips(tmp_path):
    M = _low_rank(6, 5, 2, seed=6)
    np.save(tmp_path / "m.npy", M)
    np.testing.assert_array_equal(load_matrix(tmp_path / "m.npy"), M)
    np.savez(tmp_path / "m.npz", M=M)
    np.testing.assert_array_equal(load_matrix(tmp_path / "m.npz"), M)
    S = sp.random(8, 7, density=0.3, random_state=0, format="csr")
    sp.save_npz(tmp_path / "s.npz", S)
    np.testing.assert_array_equal(load_matrix(tmp_path / "s.npz").toarray(), S.toarray())
    import scipy.io

    scipy.io.mmwrite(tmp_path / "s.mtx", S)
    np.testing.assert_allclose(load_matrix(tmp_path / "s.mtx").toarray(), S.toarray())

    prob = matrix_task(M)
    save_problem(prob, tmp_path / "p.npz")
    back = load_problem(tmp_path / "p.npz")
    np.testing.assert_array_equal(back.X, prob.X)
    with pytest.raises(ValueError, match="load_problem"):
        load_matrix(tmp_path / "p.npz")
    with pytest.raises(ValueError, match="path"):
        load_matrix(tmp_path / "m.txt")
    np.savez(tmp_path / "bad.npz", A=np.ones((3, 2)), B=np.ones((1, 3)), C=np.ones((3, 1)))
    with pytest.raises(ValueError, match="path"):
        load_problem(tmp_path / "bad.npz")


@settings(deadline=None, max_examples=20)
@given(p=st.integers(2, 12), q=st.integers(2, 12), data=st.data())
def test_shapes_property(p, q, data):
    r = data.draw(st.integers(1, min(p, q) - 1))
    M = _low_rank(p, q, r, seed=p * 100 + q)
    prob = matrix_task(M)
    assert prob.shape == (r, r, 1, q - r)
    assert np.linalg.matrix_rank(prob.A) == r
    scale = np.abs(M).max()
    np.testing.assert_allclose(prob.reference, prob.D, atol=1e-8 * scale)


def test_a_matrix_market_header_asking_for_too_much_memory_is_refused(tmp_path):
    """A 200000 x 200000 "array" header (320 GB if read) is refused before any allocation;
    the same header with a small size reads."""
    from eaglelab.tasks import load_matrix

    big = tmp_path / "big.mtx"
    big.write_text("%%MatrixMarket matrix array real general\n200000 200000\n1.0\n")
    with pytest.raises(ValueError, match="header declares a 200000 x 200000 array"):
        load_matrix(big)
    small = tmp_path / "small.mtx"
    small.write_text("%%MatrixMarket matrix array real general\n2 1\n1.0\n2.0\n")
    assert load_matrix(small).shape == (2, 1)
