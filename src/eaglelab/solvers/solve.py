"""`solve(A, B, C, method=...)`: one entry point over every solver, like lineax.linear_solve."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from eaglelab.solvers._result import SolveResult

__all__ = ["solve", "METHODS"]

# method name -> (module, function); imported on first use so one broken optional
# dependency never breaks the others.
METHODS: dict[str, tuple[str, str]] = {
    "eagle": ("eaglelab.solvers.eagle", "eagle"),
    "eagle_distributed": ("eaglelab.solvers.distributed", "eagle_distributed"),
    "eagle_estimate": ("eaglelab.solvers.estimation", "eagle_estimate"),
    "eagle_mixed": ("eaglelab.solvers.mixed", "eagle_mixed"),
    "distributed_gd": ("eaglelab.solvers.distributed", "distributed_gd"),
    "lstsq": ("eaglelab.solvers.lstsq", "lstsq"),
    "cg": ("eaglelab.solvers.cg", "cg_normal"),
    "gd": ("eaglelab.solvers.gd", "gradient_descent"),
    "sgd": ("eaglelab.solvers.sgd", "sgd_sketch"),
    "lsmr": ("eaglelab.solvers.lsmr", "lsmr"),
    "sketch_precond": ("eaglelab.solvers.sketch_precond", "sketch_precond_lsqr"),
}


def solver_function(method: str) -> Callable[..., SolveResult]:
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not known; choose one of {sorted(METHODS)}")
    module, name = METHODS[method]
    return getattr(import_module(module), name)


def solve(A, B, C, method: str = "eagle", **options) -> SolveResult:
    """Complete D = B A^+ C with the named method.

    `options` go to the method's function (tol, max_iter, reference, dtype, ...).  For
    "eagle", `workers=M` or `partition=` runs the simulated distributed variant and
    `sketch=`/`r=` the sketched one.  Unknown options raise TypeError naming them.
    Result: `SolveResult` with at least D, W, iterations, converged, history, seconds,
    floats_sent_per_worker.
    """
    if method == "eagle" and ("workers" in options or "partition" in options):
        method = "eagle_distributed"
    fn = solver_function(method)
    try:
        return fn(A, B, C, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise TypeError(f"solve(method={method!r}): {exc}") from None
        raise
