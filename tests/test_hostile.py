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


@pytest.mark.parametrize("method", ["eagle", "cg", "lsmr", "lstsq", "eagle-rows"])
@pytest.mark.parametrize("torch_input", [False, True])
def test_entries_of_order_1e200_are_balanced_not_refused(method, torch_input):
    """||A||_F of entries ~1e200 overflows float64 although every entry is finite: A and B
    are divided by one power of two (D = B A^+ C unchanged), so every solver returns the
    unscaled problem's answer instead of refusing (before: ValueError)."""
    import torch

    from eaglelab.solvers._inputs import prepare

    A, B, C, ref = _problem(20, 10.0)
    big = [A * 1e200, B * 1e200, C]
    if torch_input:
        big = [torch.as_tensor(M) for M in big]
    prep = prepare(*big, native=True)
    assert prep.balanced > 600 and 1.0 <= float(np.max(np.abs(np.asarray(prep.A)))) < 2.0
    kw = dict(METHODS.get(method, {}))
    name = "eagle" if method.startswith("eagle") else method
    if name != "lstsq":
        kw.update(tol=1e-10, max_iter=3000)
    res = solve(*big, method=name, **kw)
    D = res.D.numpy() if torch_input and hasattr(res.D, "numpy") else np.asarray(res.D)
    assert np.linalg.norm(D - ref) / np.linalg.norm(ref) < 1e-8, res.status
    assert prepare(A, B, C).balanced == 0
