"""`eaglelab train`: train linear transformers (thin wrapper over eaglelab.train)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from eaglelab.cli._common import console, fail


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    regime: Annotated[str | None, typer.Option(
        help="unconstrained | compute-limited | distributed | estimation")] = None,
    seeds: Annotated[int | None, typer.Option(help="seeds trained together (vectorised)")] = None,
    steps: Annotated[int | None, typer.Option(help="optimisation steps (default 20,000)")] = None,
    out: Annotated[Path | None, typer.Option(help="run folder (must not exist)")] = None,
    resume: Annotated[Path | None, typer.Option(help="continue the run in this folder")] = None,
    quiet: Annotated[bool, typer.Option(help="no live progress display")] = False,
    device: Annotated[str | None, typer.Option(
        help="cpu | cuda | cuda:N (train.device; with --resume a run moves device)")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(
        help="section.field=value settings, e.g. train.batch=512 model.layers=3")] = None,
) -> None:
    """Train in one of the three regimes (or the estimation variant); writes a run folder
    with config, checkpoints (safetensors), metrics (JSONL) and environment."""
    from eaglelab.train import cli_train

    if (out is None) == (resume is None):
        fail("give exactly one of --out RUN_DIR (new run) or --resume RUN_DIR")
    pairs = {}
    for item in overrides or []:
        if "=" not in item:
            fail(f"override {item!r} is not of the form section.field=value")
        key, value = item.split("=", 1)
        pairs[key] = value
    if device is not None:
        pairs["train.device"] = device
    try:
        run_dir = cli_train(regime, seeds, steps, resume or out, resume=resume is not None,
                            overrides=pairs, quiet=quiet)
    except (ValueError, OSError) as exc:     # OSError: an --out that cannot be created
        fail(str(exc))
    console.print(f"run folder: [bold]{run_dir}[/]")
