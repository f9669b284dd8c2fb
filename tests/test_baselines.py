"""The classical baselines (lstsq, cg, gd, sgd, lsmr, sketch_precond) against a float64
pinv reference, on fresh random problems with controlled spectrum and rank."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from eaglelab.solvers._result import SolveResult, Status
from eaglelab.solvers.cg import cg_normal
from eaglelab.solvers.gd import gradient_descent
from eaglelab.solvers.lsmr import lsmr
from eaglelab.solvers.lstsq import lstsq
from eaglelab.solvers.sgd import sgd_sketch
from eaglelab.solvers.sketch_precond import sketch_precond_lsqr


def make_problem(seed: int, d: int = 60, n: int = 60, dp: int = 2, nq: int = 2,
                 rank: int | None = None, noise: float = 0.0, c_in_range: bool = True):
    """A = U diag(s) V^T with s uniform in [0.1, 1] (zeros beyond `rank`), B = W A (+ noise),
    C = A G (or Gaussian), and the float64 reference D* = B pinv(A) C."""
    rng = np.random.default_rng(seed)
    k = min(d, n)
    U = np.linalg.qr(rng.standard_normal((d, k)))[0]
    V = np.linalg.qr(rng.standard_normal((n, k)))[0]
    s = rng.uniform(0.1, 1.0, k)
    s[0] = 1.0
    if rank is not None:
        s[rank:] = 0.0
    A = (U * s) @ V.T
    B = rng.standard_normal((dp, d)) @ A + noise * rng.standard_normal((dp, n))
    C = A @ rng.standard_normal((n, nq)) if c_in_range else rng.standard_normal((d, nq))
    W_ref = B @ np.linalg.pinv(A)
    return A, B, C, W_ref @ C, W_ref


def rel(X, Y) -> float:
    X = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    return float(np.linalg.norm(X.astype(np.float64) - Y) / np.linalg.norm(Y))


# name -> (solver, options for float64 runs, tolerance on ||D - D*|| / ||D*||)
SOLVERS = {
    "lstsq": (lstsq, {}, 1e-10),
    "cg": (cg_normal, {"tol": 1e-12}, 1e-8),
    "gd": (gradient_descent, {"tol": 1e-12, "max_iter": 20_000}, 1e-8),
    "sgd": (sgd_sketch, {"r": 30, "tol": 1e-12, "max_iter": 50_000, "seed": 3}, 1e-6),
    "lsmr": (lsmr, {"tol": 1e-12, "max_iter": 1000}, 1e-8),
    "sketch_precond": (sketch_precond_lsqr, {"seed": 4}, 1e-8),
}
METHOD_NAMES = {"lstsq": "lstsq", "cg": "cg", "gd": "gd", "sgd": "sgd", "lsmr": "lsmr",
                "sketch_precond": "sketch_precond"}
RANK_SAFE = ["lstsq", "cg", "lsmr", "sketch_precond"]


def run(name: str, A, B, C, **extra) -> SolveResult:
    fn, opts, _ = SOLVERS[name]
    return fn(A, B, C, **{**opts, **extra})


@pytest.mark.parametrize("name", list(SOLVERS))
def test_agrees_with_pinv_reference(name):
    A, B, C, D_ref, W_ref = make_problem(101)
    res = run(name, A, B, C, reference=D_ref)
    tol = SOLVERS[name][2]
    assert res.converged, res.status
    assert res.method == METHOD_NAMES[name]
    assert rel(res.D, D_ref) < tol
    assert res.relative_error == pytest.approx(rel(res.D, D_ref), rel=1e-6, abs=1e-15)
    assert rel(res.W, W_ref) < tol * 100
    assert res.floats_sent_per_worker == 0 and res.total_floats_sent == 0
    assert res.seconds > 0
    assert len(res.history.change) == len(res.history.error) == len(res.history.seconds)
    assert res.history.seconds == sorted(res.history.seconds)
    if name in ("cg", "gd", "sgd"):
        assert len(res.history.change) == res.iterations
    else:
        assert len(res.history.change) == 1


@pytest.mark.parametrize("name", RANK_SAFE)
def test_rank_deficient_gives_minimum_norm_answer(name):
    # C is NOT in range(A) here, so D depends on W's null-space part: only B A^+ passes
    A, B, C, D_ref, W_ref = make_problem(202, rank=30, c_in_range=False)
    res = run(name, A, B, C)
    assert res.converged, res.status
    assert rel(res.D, D_ref) < 1e-8
    assert rel(res.W, W_ref) < 1e-8


@pytest.mark.parametrize("noise", [0.0, 0.1])
@pytest.mark.parametrize("rank", [None, 12])
def test_sketch_precond_countsketch_path(rank, noise):
    # n >> d so that a real CountSketch (s = 4d < n) is used; noise makes LSQR iterate
    A, B, C, D_ref, W_ref = make_problem(303, d=20, n=400, rank=rank, noise=noise,
                                         c_in_range=False)
    res = sketch_precond_lsqr(A, B, C, seed=5, reference=D_ref)
    assert res.converged, res.status
    assert res.info["sketch"] == "countsketch" and res.info["sketch_rows"] == 80
    assert res.info["rank"] == (rank or 20)
    assert "fallback" not in res.info
    assert rel(res.D, D_ref) < 1e-9
    assert rel(res.W, W_ref) < 1e-9  # minimum norm also when rank < d
    if noise:
        assert 1 < res.iterations < 80  # preconditioned: a few tens, independent of cond(A)
        assert res.iterations == max(res.info["iterations_per_row"])


def test_sketch_precond_recovers_when_countsketch_loses_rank():
    # coherent A: A^T = [diag(s); 0], so hash collisions among the 30 nonzero rows of A^T
    # (near certain with 120 buckets) merge them and the sketch loses rank
    rng = np.random.default_rng(404)
    d, n = 30, 600
    A = np.zeros((d, n))
    A[:, :d] = np.diag(rng.uniform(0.5, 1.0, d))
    B = rng.standard_normal((2, d)) @ A
    C = rng.standard_normal((d, 3))
    D_ref = B @ np.linalg.pinv(A) @ C
    res = sketch_precond_lsqr(A, B, C, seed=6)
    assert "fallback" in res.info
    assert res.info["sketch"] == "identity" and res.info["rank"] == d
    assert res.converged and rel(res.D, D_ref) < 1e-12


def test_gd_auto_ridge_on_rank_deficient_input_is_the_ridge_solution():
    A, B, C, D_ref, _ = make_problem(505, rank=30)
    res = gradient_descent(A, B, C, tol=1e-13, max_iter=20_000, ridge="auto")
    lam = res.info["ridge"]
    assert lam == pytest.approx(1e-3 * res.info["sigma_max"] ** 2)
    assert "Lanczos" in res.info["ridge_rule"]
    W_ridge = B @ A.T @ np.linalg.inv(A @ A.T + lam * np.eye(A.shape[0]))
    assert res.converged and rel(res.D, W_ridge @ C) < 1e-8
    assert rel(res.D, D_ref) > 1e-5  # the documented bias, and the status names it
    assert "ridge-regularised answer" in res.status
    # the default, ridge = 0: unbiased, converges to B A^+ C on range(A)
    res0 = gradient_descent(A, B, C, tol=1e-13, max_iter=20_000)
    assert res0.info["ridge"] == 0.0 and rel(res0.D, D_ref) < 1e-8
    assert res0.status == "converged"


def test_gd_default_is_unbiased_where_the_auto_ridge_said_converged_7_percent_off():
    """Rank 12 of a 20 x 24 A with kappa 10 over its nonzero spectrum: the automatic ridge
    (the old default) 'converged' with relative error 7.5e-2; the default must be right."""
    rng = np.random.default_rng(0)
    U = np.linalg.qr(rng.standard_normal((20, 12)))[0]
    V = np.linalg.qr(rng.standard_normal((24, 12)))[0]
    A = U @ np.diag(np.logspace(0, -1, 12)) @ V.T
    B, C = rng.standard_normal((3, 12)) @ V.T, rng.standard_normal((20, 2))
    ref = B @ np.linalg.pinv(A) @ C
    res = gradient_descent(A, B, C, tol=1e-10, max_iter=3000, reference=ref)
    assert res.converged and res.relative_error < 1e-7, res.relative_error
    auto = gradient_descent(A, B, C, tol=1e-10, max_iter=3000, reference=ref, ridge="auto")
    assert auto.relative_error > 1e-2 and "not B A^+ C" in auto.status
    with pytest.raises(ValueError, match="ridge must be"):
        gradient_descent(A, B, C, ridge=None)


def test_gd_ridge_rule():
    A, B, C, *_ = make_problem(606)
    full = gradient_descent(A, B, C, max_iter=2, ridge="auto")
    assert full.info["ridge"] == 0.0 and "no rank deficiency" in full.info["ridge_rule"]
    At, Bt, Ct, *_ = make_problem(607, d=40, n=20)  # d > n: structurally rank deficient
    wide = gradient_descent(At, Bt, Ct, max_iter=2, ridge="auto")
    assert wide.info["ridge"] > 0 and "d = 40 > n = 20" in wide.info["ridge_rule"]
    sigma = np.linalg.norm(A, 2)
    assert full.info["sigma_max"] == pytest.approx(sigma, rel=1e-3)
    assert full.info["step"] == pytest.approx(1 / full.info["sigma_max"] ** 2)


def test_sgd_with_r_equal_n_is_gradient_descent():
    A, B, C, *_ = make_problem(707)
    g = gradient_descent(A, B, C, tol=1e-9, ridge=0.0, seed=9)
    s = sgd_sketch(A, B, C, r=A.shape[1], tol=1e-9, seed=9)
    assert s.iterations == g.iterations
    np.testing.assert_allclose(s.D, g.D, rtol=1e-12, atol=0)


def test_sgd_default_step_is_scaled_by_r_over_n():
    A, B, C, *_ = make_problem(708)
    res = sgd_sketch(A, B, C, r=15, max_iter=3, seed=1)
    assert res.info["step"] == pytest.approx((15 / 60) / res.info["sigma_max"] ** 2)
    assert res.iterations == 3 and not res.converged and "max_iter=3" in res.status


@pytest.mark.parametrize("name", list(SOLVERS))
def test_sparse_input_equals_dense_input(name):
    rng = np.random.default_rng(808)
    d, n = 20, 200
    As = (sp.random(d, n, density=0.15, random_state=rng, format="csr")
          + sp.eye(d, n, format="csr"))
    A = As.toarray()
    # noise makes the least-squares problem inconsistent (LSQR/LSMR must iterate); not for
    # sgd, whose constant step would leave a noise floor above any small tol
    noise = 0.0 if name == "sgd" else 0.01
    B = rng.standard_normal((2, d)) @ A + noise * rng.standard_normal((2, n))
    C = rng.standard_normal((d, 2))
    extra = {"r": 100, "max_iter": 100_000, "tol": 1e-11} if name == "sgd" else {}
    dense = run(name, A, B, C, **extra)
    sparse = run(name, As, sp.csr_matrix(B), C, **extra)
    assert isinstance(sparse.D, np.ndarray)
    assert dense.converged and sparse.converged, (dense.status, sparse.status)
    assert dense.code is sparse.code is Status.CONVERGED
    D_ref = B @ np.linalg.pinv(A) @ C
    tol = 1e-7 if name == "sgd" else 1e-8
    assert rel(sparse.D, D_ref) < tol and rel(dense.D, D_ref) < tol
    assert rel(sparse.D, dense.D) < (1e-7 if name == "sgd" else 1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_torch_in_torch_out(name, dtype):
    A, B, C, D_ref, _ = make_problem(909)
    At, Bt, Ct = (torch.tensor(M, dtype=dtype) for M in (A, B, C))
    extra = {} if dtype == torch.float64 or name == "lstsq" else {"tol": 1e-6}
    res = run(name, At, Bt, Ct, **extra)
    assert isinstance(res.D, torch.Tensor) and res.D.dtype == dtype
    assert isinstance(res.W, torch.Tensor) and res.W.dtype == dtype
    assert res.D.shape == (2, 2)
    assert res.converged, res.status
    tol = SOLVERS[name][2] if dtype == torch.float64 else 2e-3
    assert rel(res.D, D_ref) < tol


@pytest.mark.parametrize("name", list(SOLVERS))
def test_numpy_float32_stays_float32(name):
    A, B, C, D_ref, _ = make_problem(1010)
    A32, B32, C32 = (M.astype(np.float32) for M in (A, B, C))
    extra = {} if name == "lstsq" else {"tol": 1e-6}
    res = run(name, A32, B32, C32, **extra)
    assert res.D.dtype == np.float32 and res.converged, res.status
    assert rel(res.D, D_ref) < 2e-3


def test_lsmr_iteration_limit_is_reported():
    A, B, C, D_ref, _ = make_problem(1111)
    res = lsmr(A, B, C, tol=1e-12, max_iter=3, reference=D_ref)
    assert not res.converged and res.code is Status.MAX_ITER
    assert "iteration limit" in res.status and "max_iter=3" in res.status
    assert res.iterations == 3 and res.info["istop_per_row"] == [7, 7]
    assert res.relative_error > 1e-6
    assert np.all(np.isfinite(res.D))


def test_sketch_precond_iteration_limit_is_reported():
    A, B, C, *_ = make_problem(1212, d=20, n=400, noise=0.1)
    res = sketch_precond_lsqr(A, B, C, max_iter=2, seed=0)
    assert not res.converged and "iteration limit" in res.status
    assert res.code is Status.MAX_ITER and res.summary()["code"] == "max_iter"
    assert res.iterations == 2


@pytest.mark.parametrize("name", ["cg", "gd", "sgd"])
def test_max_iter_one_means_one_iteration(name):
    A, B, C, *_ = make_problem(1313)
    res = run(name, A, B, C, max_iter=1)
    assert res.iterations == 1 and len(res.history.change) == 1
    assert not res.converged and "max_iter=1" in res.status and res.code is Status.MAX_ITER


@pytest.mark.parametrize("name", ["gd", "sgd"])
def test_too_large_step_is_reported_as_divergence(name):
    A, B, C, *_ = make_problem(1414)
    res = run(name, A, B, C, step=50.0, max_iter=5000)
    assert not res.converged and "diverged" in res.status and res.code is Status.DIVERGED
    assert np.all(np.isfinite(res.D)) and res.W is None


@pytest.mark.parametrize("driver", ["gelsd", "gelsy", "gelss"])
def test_lstsq_drivers_agree(driver):
    A, B, C, D_ref, _ = make_problem(1515, rank=25, c_in_range=False)
    res = lstsq(A, B, C, driver=driver)
    assert res.info["rank"] == 25 and rel(res.D, D_ref) < 1e-10


BAD_OPTIONS = [
    ("lstsq", {"driver": "gels"}, "driver"),
    ("cg", {"tol": 0.0}, "tol"),
    ("cg", {"max_iter": 0}, "max_iter"),
    ("gd", {"tol": -1.0}, "tol"),
    ("gd", {"max_iter": 0}, "max_iter"),
    ("gd", {"step": -0.5}, "step"),
    ("gd", {"ridge": -1.0}, "ridge"),
    ("gd", {"power_iters": 0}, "power_iters"),
    ("sgd", {"r": 0}, "r"),
    ("sgd", {"r": 61}, "r"),
    ("sgd", {"r": 2.5}, "r"),
    ("sgd", {"step": 0.0}, "step"),
    ("lsmr", {"tol": float("nan")}, "tol"),
    ("lsmr", {"max_iter": 0}, "max_iter"),
    ("sketch_precond", {"oversample": 0.5}, "oversample"),
    ("sketch_precond", {"tol": 0.0}, "tol"),
    ("sketch_precond", {"max_iter": -3}, "max_iter"),
]


@pytest.mark.parametrize(("name", "opts", "option"), BAD_OPTIONS)
def test_bad_options_raise_naming_the_option(name, opts, option):
    A, B, C, *_ = make_problem(1616)
    with pytest.raises(ValueError, match=rf"^{option}\b"):
        run(name, A, B, C, **opts)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_bad_reference_shape_raises(name):
    A, B, C, *_ = make_problem(1717)
    with pytest.raises(ValueError, match="reference"):
        run(name, A, B, C, reference=np.zeros((3, 2)))


@pytest.mark.parametrize("block", ["A", "B", "C"])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_nan_input_raises(name, block):
    A, B, C, *_ = make_problem(1818)
    blocks = {"A": A.copy(), "B": B.copy(), "C": C.copy()}
    blocks[block][1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run(name, blocks["A"], blocks["B"], blocks["C"])


@pytest.mark.parametrize("name", list(SOLVERS))
def test_inputs_are_not_modified(name):
    # regression: the S = I path once ran an in-place QR on a view of A
    for d, n in ((60, 60), (20, 400)):
        A, B, C, *_ = make_problem(1919, d=d, n=n, noise=0.1)
        copies = [M.copy() for M in (A, B, C)]
        run(name, A, B, C, **({} if name == "lstsq" else {"max_iter": 3}))
        for M, M0 in zip((A, B, C), copies, strict=True):
            np.testing.assert_array_equal(M, M0)


def test_row_solver_codes_follow_scipy_istop():
    """LSQR/LSMR's istop per row maps to one code: solved, the iteration limit, an early
    stop of scipy's own (BREAKDOWN), or non-finite output."""
    from eaglelab.solvers._kernels import row_solver_status

    D = np.ones((2, 1))
    assert row_solver_status("LSMR", D, [1, 2], 5, 1e-8, "h")[0] is Status.CONVERGED
    assert row_solver_status("LSMR", D, [1, 7], 5, 1e-8, "h")[0] is Status.MAX_ITER
    code, msg = row_solver_status("LSMR", D, [3, 1], 5, 1e-8, "h")
    assert code is Status.BREAKDOWN and "istop=[3]" in msg
    assert row_solver_status("LSMR", D * np.nan, [1, 1], 5, 1e-8, "h")[0] is Status.NONFINITE


def test_the_result_code_is_the_source_of_converged():
    """converged is derived from the code, so a result cannot say both."""
    from eaglelab.solvers._result import History

    r = SolveResult(D=None, method="x", iterations=1, code="max_iter", status="m",
                    history=History(), seconds=0.0)
    assert r.code is Status.MAX_ITER and not r.converged
    with pytest.raises(ValueError):
        SolveResult(D=None, method="x", iterations=1, code="done", status="m",
                    history=History(), seconds=0.0)


@pytest.mark.parametrize("scale", [2.0 ** -600, 2.0 ** 600])
@pytest.mark.parametrize("method", ["eagle", "cg", "lsmr", "gd", "lstsq"])
def test_convergence_means_the_same_at_every_scale(method, scale):
    """B scaled by 2^-600 or 2^600 (exact in binary floating point): the same iterations,
    status and relative error, and D scaled by the same power of two, bit for bit.  At such
    scales the squared entries underflow or overflow: CG, LSMR and every stop rule used to
    call an untouched iterate 'converged' with 100 % error (issue 17, item 1)."""
    from eaglelab.solvers import solve
    from eaglelab.tasks import conditioned_problem

    p = conditioned_problem(60, 60, kappa=100, seed=0)
    opts = {} if method == "lstsq" else {"max_iter": 400}
    base = solve(p.A, p.B, p.C, method=method, reference=p.reference, **opts)
    res = solve(p.A, p.B * scale, p.C, method=method, reference=p.reference * scale, **opts)
    assert res.code == base.code and res.iterations == base.iterations
    assert res.relative_error == base.relative_error
    assert np.array_equal(res.D, base.D * scale)


@pytest.mark.parametrize("method", ["eagle", "sgd"])
def test_a_sketch_that_leaves_d_unchanged_for_a_step_is_not_converged(method):
    """With one sampled column per step, a step can leave D unchanged by chance; that used
    to stop the iteration as converged (10 of 10 seeds, errors up to 73 %).  A randomised
    iteration converges only after ceil(n / r) small changes in a row."""
    from eaglelab.solvers import solve
    from eaglelab.tasks import conditioned_problem

    p = conditioned_problem(60, 60, kappa=100, seed=0)
    opts = {"sketch": "rows"} if method == "eagle" else {}
    for seed in range(5):
        res = solve(p.A, p.B, p.C, method=method, r=1, seed=seed, reference=p.reference,
                    max_iter=2000, tol=1e-8, **opts)
        assert not res.converged or res.relative_error < 1e-4, (seed, res.relative_error)
    if method == "sgd":      # SGD needs ~kappa^2 steps here; the positive case is EAGLE's
        return
    # and the rule still lets a sketch converge: r = n/4 reaches the answer and says so
    res = solve(p.A, p.B, p.C, method=method, r=15, seed=0, reference=p.reference,
                max_iter=20000, tol=1e-8, **opts)
    assert res.converged and res.relative_error < 1e-4, res.status


def test_a_tolerance_below_the_working_precision_is_never_called_converged():
    """float32 CG on a rank-deficient problem with tol = 1e-10 stopped 'converged' at a
    relative error of 3.7: its iterate had only stopped moving at rounding level.  Below the
    dtype's resolution the status is STAGNATED; above it, convergence is certified as before."""
    from eaglelab.solvers import Status, solve
    from eaglelab.tasks import conditioned_problem

    p = conditioned_problem(60, 60, kappa=10, rank=30, seed=0)
    res = solve(p.A, p.B, p.C, method="cg", dtype=np.float32, reference=p.reference)
    assert res.code is Status.STAGNATED and not res.converged and "not certified" in res.status
    ok = solve(p.A, p.B, p.C, method="eagle", dtype=np.float32, tol=1e-5,
               reference=p.reference)
    assert ok.converged and ok.relative_error < 1e-3


def test_a_tiny_but_nonzero_a_is_not_called_all_zero():
    """Entries of order 1e-170 make ||A||_F underflow to 0; the input check used to answer
    'A is all zero'.  CG (balanced by powers of two) solves it."""
    from eaglelab.solvers import solve
    from eaglelab.tasks import conditioned_problem

    p = conditioned_problem(40, 40, kappa=10, seed=1)
    res = solve(p.A * 1e-170, p.B, p.C, method="cg", reference=p.reference * 1e170)
    assert res.converged and res.relative_error < 1e-8
    with pytest.raises(ValueError, match="all zero"):
        solve(np.zeros((4, 5)), np.ones((1, 5)), np.ones((4, 1)), method="cg")


def test_cg_stop_on_a_lost_conjugacy_is_a_breakdown_not_convergence():
    """float32 CG on a rank-deficient A (rank 4 of 25): the recursion loses conjugacy, a
    step falls to zero and the change test stops with relative error 3.5; the true
    normal-equations residual refutes it, so the status is BREAKDOWN, and float64 on the
    same problem still converges to rounding."""
    from eaglelab.solvers import Status, cg_normal
    from eaglelab.tasks import conditioned_problem

    p = conditioned_problem(26, 25, 2, 2, kappa=1.1, rank=4, seed=21)
    low = cg_normal(*(x.astype(np.float32) for x in (p.A, p.B, p.C)), tol=4e-7,
                    reference=p.reference)
    assert low.relative_error > 1 and low.code == Status.BREAKDOWN and not low.converged
    assert "true normal-equations residual" in low.status
    full = cg_normal(p.A, p.B, p.C, tol=4e-7, reference=p.reference)
    assert full.converged and full.relative_error < 1e-9
