"""The `eaglelab` command line: thin wrappers over the library (typer + rich)."""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting make torch many times slower whenever another job
# holds a core; passive waiting costs nothing when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

from eaglelab.cli import (  # noqa: E402
    demo_cmd,
    distributed_cmd,
    extract_cmd,
    reproduce_cmd,
    solve_cmd,
    train_cmd,
)

app = typer.Typer(
    name="eaglelab",
    help="Linear transformers that discover EAGLE, and EAGLE as a solver.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
demo_cmd.register(app)
train_cmd.register(app)
extract_cmd.register(app)
solve_cmd.register(app)
distributed_cmd.register(app)
reproduce_cmd.register(app)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="print the version and exit"),
) -> None:
    """Linear transformers that discover EAGLE, and EAGLE as a solver."""
    if version:
        from eaglelab.records import __version__

        typer.echo(__version__)
        raise typer.Exit()


def main() -> None:
    app()
