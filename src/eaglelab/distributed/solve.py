"""`solve_problem`: a `tasks.BlockProblem` solved by any method, in one process or - for the
distributed methods with engine="process" - as real processes over torch.distributed.  It
sits above `solvers` (every method) and the process engine, so neither imports upward."""

from __future__ import annotations

import numpy as np

from eaglelab.devices import resolve_device
from eaglelab.distributed.launch import solve_distributed
from eaglelab.solvers._result import SolveResult
from eaglelab.solvers.solve import solver_function

__all__ = ["solve_problem"]

# options every iterative method understands; passed only where the method accepts them
_COMMON = ("tol", "max_iter", "dtype", "reference")


def solve_problem(problem, method: str = "eagle", *, workers: int = 1, engine: str = "simulate",
                  strict: bool = True, device: str | None = None, **options) -> SolveResult:
    """Solve a `BlockProblem` (records the error against its float64 reference).

    Options set to None are ignored; `tol`, `max_iter` and `dtype` go to methods that take
    them; any other option the method does not take raises ValueError naming it (with
    strict=False it is dropped: used when one set of options serves several methods).  With
    workers > 1, "eagle" and "distributed_gd" run distributed: engine "simulate" in one
    process, "process" as real processes over torch.distributed (gloo, loopback).
    device ("cpu", "cuda", "cuda:N"; None: numpy) hands the solver torch tensors on that
    device (A densified), so the native solvers compute there (docs/devices.md).
    """
    import inspect

    if workers > 1 and method not in ("eagle", "eagle_distributed", "distributed_gd"):
        raise ValueError(f"--workers applies to eagle and distributed_gd, not {method}")
    options = {k: v for k, v in options.items() if v is not None}
    options.setdefault("reference", problem.reference)
    if method == "eagle" and workers > 1:
        method = "eagle_distributed"
    A, B, C = problem.A, problem.B, problem.C
    if device is not None:
        if engine == "process" and method in ("eagle_distributed", "distributed_gd"):
            raise ValueError("--device does not apply to the torch.distributed engine (its "
                             "ranks compute in numpy over gloo); use --engine simulate")
        A, B, C = _on_device((A, B, C), resolve_device(device, "--device"))
    if method in ("eagle_distributed", "distributed_gd"):
        options["workers"] = workers
        if engine == "process":
            options.pop("seed", None)
            kind = "gd" if method == "distributed_gd" else "eagle"
            return solve_distributed(A, B, C, method=kind, **options)
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
    return fn(A, B, C, **options)


def _on_device(arrays, device):
    import scipy.sparse as sp
    import torch

    return tuple(torch.as_tensor(np.asarray(x.toarray() if sp.issparse(x) else x),
                                 device=device) for x in arrays)
