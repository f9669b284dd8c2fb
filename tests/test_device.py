"""Solvers on the caller's device (issue: any device): the torch path of every EAGLE variant
and of the baselines with a GPU meaning equals the numpy path and the float64 literal
reference; the result's type, dtype and device follow the input; no host copy of the
problem is made.  The CUDA tests run only where a GPU is present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eaglelab.solvers import (
    Schedule,
    cg_normal,
    distributed_gd,
    eagle,
    eagle_distributed,
    eagle_estimate,
    gradient_descent,
    lstsq,
    update_reference,
)

KAPPA = 100.0
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _problem(seed: int = 0, d: int = 40, n: int = 56, r: int = 24, dp: int = 5, nq: int = 6):
    """A rank-r problem with condition number KAPPA (float64 numpy) and its answer."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((d, r)))[0]
    V = np.linalg.qr(rng.standard_normal((n, r)))[0]
    A = U @ np.diag(np.logspace(0, -np.log10(KAPPA), r)) @ V.T
    B = rng.standard_normal((dp, r)) @ V.T
    C = rng.standard_normal((d, nq))
    return A, B, C, B @ np.linalg.pinv(A) @ C


def _t(x, device="cpu", dtype=torch.float64):
    return torch.as_tensor(x, dtype=dtype, device=device)


def _rel(a, b) -> float:
    a = a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().cpu().double().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


EAGLE_VARIANTS = {
    "dense": (eagle, {}),
    "dense-no-rescale": (eagle, {"rescale": False}),
    "frozen": (eagle, {"freeze_tol": 1e-8}),
    "rows-sketch": (eagle, {"sketch": "rows", "r": 30, "seed": 3, "max_iter": 4000}),
    "orthogonal-sketch": (eagle, {"sketch": "orthogonal", "r": 30, "seed": 3,
                                  "max_iter": 4000}),
    "schedule": (eagle, {"schedule": Schedule.constant(0.2, 0.5, 40)}),
    "distributed": (eagle_distributed, {"workers": 4}),
    "distributed-gd": (distributed_gd, {"workers": 4, "max_iter": 400}),
}


@pytest.mark.parametrize("variant", sorted(EAGLE_VARIANTS))
@pytest.mark.parametrize("device", DEVICES)
def test_torch_eagle_equals_numpy_eagle_in_float64(variant, device):
    f, kw = EAGLE_VARIANTS[variant]
    A, B, C, ref = _problem()
    a = f(A, B, C, reference=ref, **kw)
    b = f(_t(A, device), _t(B, device), _t(C, device), reference=ref, **kw)
    assert isinstance(b.D, torch.Tensor) and b.D.dtype == torch.float64
    assert b.D.device.type == device
    assert b.iterations == a.iterations and b.code == a.code
    assert _rel(b.D, a.D) < 1e-12
    assert abs(b.relative_error - a.relative_error) <= 1e-12 + 1e-6 * a.relative_error


@pytest.mark.parametrize("device", DEVICES)
def test_torch_dense_steps_equal_the_literal_reference(device):
    """Five fixed-step UPDATEs on torch equal five literal float64 UPDATEs in numpy."""
    A, B, C, _ = _problem(1)
    rho = 1.0 / np.linalg.norm(A, 2) ** 2
    steps_A, steps_C = [rho / 3 * (1 + 0.1 * k) for k in range(5)], [rho] * 5
    X = (A, B, C, np.zeros((B.shape[0], C.shape[1])))
    for sA, sC in zip(steps_A, steps_C, strict=True):
        X = update_reference(*X, sA, sC)
    res = eagle(_t(A, device), _t(B, device), _t(C, device),
                schedule=Schedule(steps_A, steps_C))
    assert _rel(res.D, X[3]) < 1e-12


def test_torch_estimation_equals_numpy_estimation():
    A, B, C, _ = _problem(2)
    W = B @ np.linalg.pinv(A)
    a = eagle_estimate(A, B, C, reference=W)
    b = eagle_estimate(_t(A), _t(B), _t(C), reference=W)
    assert isinstance(b.W, torch.Tensor) and b.iterations == a.iterations
    assert _rel(b.W, a.W) < 1e-12 and _rel(b.D, a.D) < 1e-12


@pytest.mark.parametrize("variant", ["dense", "rows-sketch", "schedule", "distributed"])
def test_float32_torch_eagle_is_accurate_to_its_precision(variant):
    """float32 on torch: the error against the float64 answer is within
    50 * kappa * eps(float32) (forward error of a backward-stable method, with margin),
    and the result stays float32."""
    f, kw = EAGLE_VARIANTS[variant]
    # full row rank for the sketch (a rank-deficient A is its own test); the distributed
    # round needs the rank-24 problem's diversity to converge within max_iter
    A, B, C, ref = _problem(4, r=24 if variant == "distributed" else 40)
    f32 = torch.float32
    res = f(_t(A, dtype=f32), _t(B, dtype=f32), _t(C, dtype=f32), **{**kw, "tol": 1e-6})
    assert res.D.dtype == f32
    bound = 50 * KAPPA * float(np.finfo(np.float32).eps)
    if variant != "schedule":          # a fixed 40-step schedule is not run to convergence
        assert _rel(res.D, ref) < bound
    want = f(A, B, C, **kw).D
    assert _rel(res.D, want) < (bound if variant != "schedule" else 1e-4)


@pytest.mark.parametrize("solver,kw,tol", [(lstsq, {}, 1e-12), (cg_normal, {}, 1e-9),
                                           (gradient_descent, {"max_iter": 300}, 1e-12)])
@pytest.mark.parametrize("device", DEVICES)
def test_torch_baselines_equal_their_numpy_path(solver, kw, tol, device):
    A, B, C, ref = _problem(5, d=30, n=50, r=30)          # full row rank: CG terminates
    a = solver(A, B, C, reference=ref, **kw)
    b = solver(_t(A, device), _t(B, device), _t(C, device), reference=ref, **kw)
    assert isinstance(b.D, torch.Tensor) and b.D.device.type == device
    assert b.code == a.code
    assert _rel(b.D, a.D) < tol
    if a.W is not None:
        assert isinstance(b.W, torch.Tensor) and _rel(b.W, a.W) < tol


def test_result_type_follows_the_input():
    A, B, C, _ = _problem(6)
    assert isinstance(eagle(A, B, C).D, np.ndarray)
    mixed = eagle(A, _t(B, dtype=torch.float32), C)          # any tensor: torch, common dtype
    assert isinstance(mixed.D, torch.Tensor) and mixed.D.dtype == torch.float64
    forced = eagle(_t(A), _t(B), _t(C), dtype=np.float32, tol=1e-5)
    assert forced.D.dtype == torch.float32


def test_native_solvers_never_copy_the_problem_to_numpy(monkeypatch):
    """EAGLE on tensors computes in torch: Tensor.numpy is never called (the reference is
    given in numpy and moved to the device once)."""
    A, B, C, ref = _problem(7)
    tensors = (_t(A), _t(B), _t(C))

    def refuse(self, *args, **kwargs):
        raise AssertionError("a tensor was copied to numpy during a native solve")

    monkeypatch.setattr(torch.Tensor, "numpy", refuse)
    for kw in ({}, {"sketch": "rows", "r": 30, "seed": 0, "max_iter": 50},
               {"schedule": Schedule.constant(0.2, 0.5, 5)}, {"freeze_tol": 1e-8}):
        res = eagle(*tensors, reference=ref, **kw)
        assert isinstance(res.D, torch.Tensor)
    eagle_distributed(*tensors, workers=2, reference=ref)
    lstsq(*tensors, reference=ref)


def test_torch_divergence_is_reported_not_hidden():
    """torch has no floating-point traps: a step that overflows is still reported as
    DIVERGED, with the last finite iterate."""
    A, B, C, _ = _problem(8)
    big = Schedule.constant(1e3, 1e3, 60)
    a = eagle(A, B, C, schedule=big)
    b = eagle(_t(A), _t(B), _t(C), schedule=big)
    assert a.code == "diverged" and b.code == "diverged"
    assert bool(torch.isfinite(b.D).all())
