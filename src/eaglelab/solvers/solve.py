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


# options every iterative method understands; passed only where the method accepts them
_COMMON = ("tol", "max_iter", "dtype", "reference")


def solve_problem(problem, method: str = "eagle", *, workers: int = 1, engine: str = "simulate",
                  strict: bool = True, **options) -> SolveResult:
    """Solve a `BlockProblem` (records the error against its float64 reference).

    Options set to None are ignored; `tol`, `max_iter` and `dtype` go to methods that take
    them; any other option the method does not take raises ValueError naming it (with
    strict=False it is dropped: used when one set of options serves several methods).  With
    workers > 1, "eagle" and "distributed_gd" run distributed: engine "simulate" in one
    process, "process" as real processes over torch.distributed (gloo, loopback).
    """
    import inspect

    if workers > 1 and method not in ("eagle", "eagle_distributed", "distributed_gd"):
        raise ValueError(f"--workers applies to eagle and distributed_gd, not {method}")
    options = {k: v for k, v in options.items() if v is not None}
    options.setdefault("reference", problem.reference)
    if method == "eagle" and workers > 1:
        method = "eagle_distributed"
    if method in ("eagle_distributed", "distributed_gd"):
        options["workers"] = workers
        if engine == "process":
            from eaglelab.distributed import solve_distributed

            options.pop("seed", None)
            kind = "gd" if method == "distributed_gd" else "eagle"
            return solve_distributed(problem.A, problem.B, problem.C, method=kind, **options)
    if method == "eagle_estimate":
        options["reference"] = problem.W_star
    fn = solver_function(method)
    accepted = inspect.signature(fn).parameters
    for key in list(options):
        if key not in accepted:
            if key in _COMMON or key == "seed" or not strict:
                options.pop(key)
            else:
                raise ValueError(f"option {key}={options[key]!r} does not apply to method {method}")
    return fn(problem.A, problem.B, problem.C, **options)
