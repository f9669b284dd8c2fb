"""Helpers shared by the CLI commands."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

from eaglelab.records import to_jsonable

console = Console(stderr=False)
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2) + "\n")


def invoke(app: typer.Typer, args: list[str], prog_name: str) -> int:
    """Run a typer app on `args` and return its exit code instead of exiting (for module
    entry points and tests): usage errors print click's message and give 2."""
    import click

    try:
        out = app(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 1
    return out if isinstance(out, int) else 0
