"""`eaglelab reproduce NAME|all`: the paper's experiments, one command each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from eaglelab.cli._common import console, fail


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce)


def reproduce(
    name: Annotated[str, typer.Argument(help="an experiment name, or 'all'")],
    quick: Annotated[bool, typer.Option(help="reduced sizes and seeds (minutes)")] = False,
    seeds: Annotated[int | None, typer.Option(help="number of seeds (default per experiment)")] = None,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("reproduction"),
    threads: Annotated[int | None, typer.Option(help="BLAS threads (timings)")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=VALUE: change one config field, e.g. --set steps=10000 "
                      "(repeatable; see the experiment's Config); with 'all', NAME.KEY=VALUE "
                      "changes one experiment's field and KEY=VALUE every one that has it")] = None,
) -> None:
    """Run one experiment (figures, JSON, markdown section) or all of them (REPORT.md with our
    numbers beside the paper's and a verdict per claim)."""
    from eaglelab.experiments import cli_reproduce

    overrides = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = value.strip()
    try:
        path = cli_reproduce(name, quick, seeds, out, threads=threads, overrides=overrides)
    except (ValueError, OSError) as exc:     # OSError: an --out that cannot be created
        fail(str(exc))
    console.print(f"written: [bold]{path}[/]")
