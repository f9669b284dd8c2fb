"""`eaglelab distributed run | shard`: distributed EAGLE / GD on column shards.

`python -m eaglelab.distributed [run options]` (what torchrun starts on every rank) and
`python -m eaglelab.distributed shard ...` are the same commands (`module_main`).  Exit
codes: 0 ok, 2 bad input or shards, 3 a lost peer or a failed collective, 1 anything else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from eaglelab.cli._common import invoke

app = typer.Typer(help="Distributed EAGLE / GD on column shards (torch.distributed, gloo). "
                       "Under torchrun every rank reads its own shard (torchrun "
                       "--nproc-per-node M -m eaglelab.distributed --shards DIR); without "
                       "torchrun, --workers M starts M local processes.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="distributed")


def _stderr(message: str, code: int) -> typer.Exit:
    print(message, file=sys.stderr)
    return typer.Exit(code)


@app.command("run")
def run(
    shards: Annotated[Path, typer.Option(help="shard directory (write_shards)")],
    method: Annotated[str, typer.Option(help="eagle | gd")] = "eagle",
    tol: Annotated[float, typer.Option(help="relative-change tolerance")] = 1e-10,
    max_iter: Annotated[int, typer.Option(help="most rounds")] = 1000,
    eta: Annotated[float, typer.Option(help="EAGLE's eta")] = 1 / 3,
    gamma: Annotated[float, typer.Option(help="EAGLE's gamma")] = 1.0,
    freeze_tol: Annotated[float | None, typer.Option(
        help="accelerated EAGLE: freeze A^mu once it is a partial isometry")] = None,
    timeout: Annotated[float, typer.Option(
        help="seconds a rank waits for a silent peer")] = 60.0,
    workers: Annotated[int | None, typer.Option(
        help="start this many local processes (not under torchrun)")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="print a JSON record with per-rank traffic")] = False,
    output: Annotated[Path | None, typer.Option(
        help="save D (and the history) to this .npz")] = None,
    no_reference: Annotated[bool, typer.Option(
        "--no-reference", help="ignore the reference D* stored in the shards")] = False,
) -> None:
    """Solve from shards; rank 0 (or the launcher) prints the result."""
    import numpy as np

    from eaglelab.distributed.launch import (
        DistributedError,
        exit_code,
        result_to_json,
        solve_from_shards,
    )

    try:
        result = solve_from_shards(shards, workers=workers, method=method, tol=tol,
                                   max_iter=max_iter, eta=eta, gamma=gamma,
                                   freeze_tol=freeze_tol, timeout=timeout,
                                   use_reference=not no_reference)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an exit code
        raise _stderr(str(exc) if isinstance(exc, DistributedError)
                      else f"{type(exc).__name__}: {exc}", exit_code(exc)) from None
    if result is None:                       # a torchrun rank other than 0
        return
    if output:
        np.savez(output, D=result.D, change=np.asarray(result.history.change),
                 error=np.asarray(result.history.error))
    if as_json:
        print(json.dumps(result_to_json(result), indent=1, default=float))
        return
    c = result.info["comm"]
    err = result.relative_error
    print(f"{result.method}: {result.status} after {result.iterations} rounds "
          f"({result.seconds:.3f} s) on {c['world_size']} workers"
          + (f", relative error {err:.3e}" if err is not None else ""))
    print(f"sent per rank per round: {c['floats_per_round_per_rank']} floats "
          f"({c['bytes_per_round_per_rank']} bytes; expected (d + d') n' = "
          f"{c['expected_floats_per_round']}); total {c['total_floats']} floats, "
          f"{c['total_bytes']} bytes")


@app.command("shard")
def shard(
    problem: Annotated[Path, typer.Argument(help="npz file with arrays A, B, C (and optionally D)")],
    workers: Annotated[int, typer.Option(help="number of shards M")],
    out: Annotated[Path, typer.Option(help="output directory")],
    kind: Annotated[str, typer.Option(help="contiguous | random")] = "contiguous",
    seed: Annotated[int | None, typer.Option(help="seed of the random partition")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace existing shards")] = False,
    no_report: Annotated[bool, typer.Option(
        "--no-report", help="skip alpha / condition numbers")] = False,
) -> None:
    """Write the shards of a problem stored as an npz and print the partition report as
    JSON."""
    from eaglelab.distributed.shards import shard_npz

    try:
        s = shard_npz(problem, out, workers=workers, kind=kind, seed=seed,
                      report=not no_report, overwrite=overwrite)
    except (ValueError, OSError) as exc:
        raise _stderr(f"{type(exc).__name__}: {exc}", 2) from None
    print(json.dumps({"directory": str(s.directory), "workers": len(s.paths),
                      "problem_id": s.problem_id,
                      "report": s.report.to_dict() if s.report else None}, indent=1))


def module_main(argv: list[str] | None = None) -> int:
    """``python -m eaglelab.distributed``: `shard ...` writes shards, anything else is
    `run`'s options; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv if argv[:1] in (["run"], ["shard"]) else ["run", *argv]
    return invoke(app, command, "python -m eaglelab.distributed")
