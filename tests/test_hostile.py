"""Hostile-input cross product (docs/hostile-input.md): every iterative method x scale x
precision x rank x conditioning.  The contract: a result that says converged is within a
tolerance derived from tol, the dtype's eps and kappa of the float64 answer B A^+ C;
otherwise its status says why it is not converged.

The bound: methods with a quadratic local rate (EAGLE, dense and sketched) stop when the
change is below tol, so their error is about tol plus the conditioning of the data,
kappa eps; the linear-rate methods (GD, CG, LSMR) contract by about 1 - 1/kappa^2 per
step, so a change of tol leaves up to kappa^2 tol.  A factor 10 of margin on both.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from eaglelab.solvers import solve

# an overflow inside a solver is an error here, not a warning to scroll past
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

METHODS = {"eagle": {}, "eagle-orthogonal": {"sketch": "orthogonal", "r": 8, "seed": 1},
           "eagle-rows": {"sketch": "rows", "r": 8, "seed": 1}, "cg": {}, "lsmr": {},
           "gd": {}}
QUADRATIC = ("eagle", "eagle-orthogonal", "eagle-rows")
SCALES = (1e-150, 1e-12, 1.0, 1e12)
SHAPES = ((20, 10.0), (20, 1e4), (12, 10.0), (12, 1e4))     # (rank of 20 x 24 A, kappa)


def _problem(rank: int, kappa: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((20, rank)))[0]
    V = np.linalg.qr(rng.standard_normal((24, rank)))[0]
    A = U @ np.diag(np.logspace(0, -np.log10(kappa), rank)) @ V.T
    B, C = rng.standard_normal((3, rank)) @ V.T, rng.standard_normal((20, 2))
    return A, B, C, B @ np.linalg.pinv(A) @ C


def _cases():
    for method, scale, dtype, (rank, kappa) in itertools.product(
            METHODS, SCALES, (np.float64, np.float32), SHAPES):
        if dtype == np.float32 and scale == 1e-150:
            continue                      # not representable in float32
        marks = []
        if method.startswith("eagle-") and dtype == np.float32 and rank < 20 and kappa > 100:
            marks = [pytest.mark.xfail(reason="open (issue 17): a sketched run on a rank-"
                                       "deficient A past its attainable accuracy has no "
                                       "settled test and drifts to an O(1) error", strict=False)]
        yield pytest.param(method, scale, dtype, rank, kappa, marks=marks,
                           id=f"{method}-{scale:g}-{dtype.__name__}-rank{rank}-k{kappa:g}")


@pytest.mark.parametrize("method,scale,dtype,rank,kappa", list(_cases()))
def test_converged_means_right_at_every_scale_and_precision(method, scale, dtype, rank, kappa):
    A, B, C, ref = _problem(rank, kappa)
    ref = ref / scale                       # A scaled by `scale`: D* = B (s A)^+ C
    tol = 1e-10 if dtype == np.float64 else 1e-5
    eps = float(np.finfo(dtype).eps)
    name = "eagle" if method.startswith("eagle") else method
    res = solve((A * scale).astype(dtype), B.astype(dtype), C.astype(dtype), method=name,
                tol=tol, max_iter=3000, reference=ref, **METHODS[method])
    big = np.abs(ref).max()                 # norms of 1e150-sized entries would overflow
    with np.errstate(over="ignore", invalid="ignore"):
        err = np.linalg.norm((np.asarray(res.D, dtype=np.float64) - ref) / big) / np.linalg.norm(
            ref / big)
    rate = 1.0 if method in QUADRATIC else kappa ** 2
    bound = 10 * (rate * tol + kappa * eps)
    if res.converged:
        assert err <= bound, (res.iterations, err, bound)
    else:
        assert res.status and res.status != "converged", res.status
