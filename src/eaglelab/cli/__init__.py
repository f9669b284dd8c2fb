"""The `eaglelab` command line: thin wrappers over the library (typer + rich)."""

from __future__ import annotations

import typer

from eaglelab.cli import demo_cmd, extract_cmd, solve_cmd, train_cmd

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


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="print the version and exit"),
) -> None:
    """Linear transformers that discover EAGLE, and EAGLE as a solver."""
    if version:
        from eaglelab import __version__

        typer.echo(__version__)
        raise typer.Exit()


def main() -> None:
    app()
