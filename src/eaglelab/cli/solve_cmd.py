"""`eaglelab solve`: run one or several solvers on a file or a synthetic problem."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from eaglelab.cli._common import console, fail, print_json

METHOD_HELP = ("eagle, eagle_estimate, distributed_gd, lstsq, cg, gd, sgd, lsmr, sketch_precond "
               "(repeat --method to compare several)")


def register(app: typer.Typer) -> None:
    app.command("solve")(solve)


def _problem(path: Path | None, n: int, d: int, n_prime: int, d_prime: int, kappa: float,
             rank: int | None, seed: int, on_full_rank: str | None = None):
    from eaglelab.tasks import conditioned_problem, load_problem

    if path is None:
        return conditioned_problem(n, d, n_prime, d_prime, kappa=kappa, rank=rank, seed=seed)
    if not path.exists():
        fail(f"{path} does not exist")
    if on_full_rank is not None:
        if path.name.lower().endswith(".npz"):
            import zipfile

            with zipfile.ZipFile(path) as z:
                if {"A.npy", "B.npy", "C.npy"} <= set(z.namelist()):
                    fail("--on-full-rank applies to a matrix file, not to a block archive "
                         f"({path.name} holds A, B, C)")
        return load_problem(path, on_full_rank=on_full_rank)
    return load_problem(path)


def solve(
    path: Annotated[Path | None, typer.Argument(
        help=".mtx matrix (the paper's real-matrix task is built from it) or .npz with A, B, C "
             "(optional D); omit for a synthetic problem")] = None,
    method: Annotated[list[str] | None, typer.Option("--method", "-m", help=METHOD_HELP)] = None,
    tol: Annotated[float, typer.Option(help="stop when ||D_k - D_{k-1}||_F <= tol ||D_k||_F")] = 1e-10,
    max_iter: Annotated[int, typer.Option(help="iteration (round) limit")] = 1000,
    sketch: Annotated[str | None, typer.Option(help="EAGLE sketch: orthogonal | rows")] = None,
    r: Annotated[int | None, typer.Option("-r", help="sketch size (eagle sketch, sgd)")] = None,
    workers: Annotated[int, typer.Option(help="workers for distributed EAGLE / GD")] = 1,
    engine: Annotated[str, typer.Option(
        help="distributed engine: 'process' (torch.distributed, gloo on loopback) or "
             "'simulate' (one process)")] = "process",
    freeze_tol: Annotated[float | None, typer.Option(help="accelerated EAGLE: freeze A below")] = None,
    dtype: Annotated[str, typer.Option(help="float64 | float32")] = "float64",
    n: Annotated[int, typer.Option(help="synthetic: columns of A")] = 240,
    d: Annotated[int, typer.Option(help="synthetic: rows of A")] = 240,
    n_prime: Annotated[int, typer.Option(help="synthetic: columns of C")] = 2,
    d_prime: Annotated[int, typer.Option(help="synthetic: rows of B")] = 2,
    kappa: Annotated[float, typer.Option(help="synthetic: condition number of A")] = 1e2,
    rank: Annotated[int | None, typer.Option(help="synthetic: rank of A")] = None,
    seed: Annotated[int, typer.Option(help="random seed (problem, sketches)")] = 0,
    on_full_rank: Annotated[str | None, typer.Option(
        help="matrix file of full row or column rank (no spare row or column for B, C, D): "
             "raise (default) | shrink (a rank min(p, q) - 1 block A; the task is then not "
             "noiseless)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    device: Annotated[str | None, typer.Option(
        help="cpu | cuda | cuda:N: solve on torch tensors on that device (default: numpy)")
    ] = None,
) -> None:
    """Complete D = B A^+ C and report iterations, time, error and communication."""
    from eaglelab.distributed.launch import DistributedError, exit_code
    from eaglelab.distributed.solve import solve_problem as run_method

    if dtype not in ("float64", "float32"):
        fail(f"--dtype {dtype!r} is not supported; use float64 or float32")
    if engine not in ("process", "simulate"):
        fail(f"--engine {engine!r} is not known; use process or simulate")
    methods = method or ["eagle"]
    _check_options_apply(methods, sketch=sketch, r=r, freeze_tol=freeze_tol)
    if path is not None:
        synthetic = {"--n": (n, 240), "--d": (d, 240), "--n-prime": (n_prime, 2),
                     "--d-prime": (d_prime, 2), "--kappa": (kappa, 1e2), "--rank": (rank, None)}
        given = [k for k, (v, default) in synthetic.items() if v != default]
        if given:
            fail(f"{', '.join(given)} shape(s) a synthetic problem; with a file ({path.name}) "
                 "the problem is the file's - drop them or omit the file")
    if workers < 1:
        fail(f"--workers must be at least 1, got {workers}")
    if "sgd" in methods and r is None:
        fail("-m sgd needs -r, the number of columns it samples per iteration")
    try:
        if on_full_rank is not None and path is None:
            fail("--on-full-rank applies to a matrix file; a synthetic problem has none")
        problem = _problem(path, n, d, n_prime, d_prime, kappa, rank, seed, on_full_rank)
        rows = []
        for m in methods:
            # -r is EAGLE's sketch size only together with --sketch; sgd always takes it
            r_m = r if (m == "sgd" or sketch is not None) else None
            res = run_method(problem, m, tol=tol, max_iter=max_iter, sketch=sketch, r=r_m,
                             workers=workers, engine=engine, freeze_tol=freeze_tol,
                             dtype=np.dtype(dtype), seed=seed, strict=len(methods) == 1,
                             device=device)
            rows.append(res)
    except ValueError as exc:
        fail(str(exc))
    except DistributedError as exc:          # a lost or failed worker: named, exit 3 / 1
        fail(str(exc), exit_code(exc))
    d_, n_, dp_, np_ = problem.shape
    meta = {k: v for k, v in problem.meta.items() if isinstance(v, (int, float, str, bool))}
    summaries = [_summary(res, problem) for res in rows]
    if json_out:
        body = summaries[0] if len(summaries) == 1 else {"results": summaries}
        print_json({**body, "problem": {"d": d_, "n": n_, "d_prime": dp_, "n_prime": np_, **meta}})
        return
    table = Table(title=f"D = B A^+ C   (A: {d_} x {n_}, C: {d_} x {np_}, B: {dp_} x {n_})")
    for col in ("method", "iterations", "converged", "seconds", "relative error",
                "residual / ||B||^2", "floats/worker/round"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for s in summaries:
        err = s["relative_error"]
        table.add_row(s["method"], str(s["iterations"]), "yes" if s["converged"] else "[red]no[/]",
                      f"{s['seconds']:.4f}", "-" if err is None else f"{err:.2e}",
                      f"{s['residual']:.2e}", str(s["floats_sent_per_worker"]))
    console.print(table)
    for s in summaries:
        if not s["converged"]:
            console.print(f"[yellow]{s['method']}[/]: {s['status']}")


def _check_options_apply(methods: list[str], **given) -> None:
    """An option set on the command line must be taken by at least one requested method."""
    import inspect

    from eaglelab.solvers.solve import solver_function

    try:
        params = [set(inspect.signature(solver_function(m)).parameters) for m in methods]
    except ValueError as exc:
        fail(str(exc))
    for name, value in given.items():
        if value is not None and not any(name in p for p in params):
            fail(f"--{name.replace('_', '-')} does not apply to {', '.join(methods)}")


def _summary(res, problem) -> dict:
    D = res.D.detach().cpu().numpy() if hasattr(res.D, "detach") else np.asarray(res.D)
    ref = problem.reference
    ref_norm = float(np.linalg.norm(ref))
    err = float(np.linalg.norm(D - ref))
    out = res.summary()
    out["relative_error"] = err / ref_norm if ref_norm > 0 else err
    b_norm = float(np.linalg.norm(problem.B))
    out["residual"] = err**2 / b_norm**2 if b_norm > 0 else err**2     # B = 0: absolute
    if "comm" in res.info:  # measured per-rank communication of the multi-process engine
        out["communication"] = res.info["comm"]
    return out
