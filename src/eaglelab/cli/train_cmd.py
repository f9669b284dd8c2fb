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
    arch: Annotated[str, typer.Option(
        help="transformer (eaglelab's linear transformer, the regimes) or a causal sequence "
             "model: linear | softmax | delta | delta-rnn | rec-delta")] = "transformer",
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
    if arch != "transformer":
        _train_sequence(arch, regime, seeds, steps, out, resume, device, pairs, quiet)
        return
    if device is not None:
        pairs["train.device"] = device
    try:
        run_dir = cli_train(regime, seeds, steps, resume or out, resume=resume is not None,
                            overrides=pairs, quiet=quiet)
    except (ValueError, OSError) as exc:     # OSError: an --out that cannot be created
        fail(str(exc))
    console.print(f"run folder: [bold]{run_dir}[/]")


# `--arch` settings a sequence run takes, by the transformer's names
SEQUENCE_KEYS = {"train.batch": ("batch", int), "train.lr": ("lr", float),
                 "train.seed": ("seed", int), "train.clip": ("clip", float),
                 "train.eval_every": ("eval_every", int), "model.layers": ("layers", int),
                 "model.init_std": ("init_std", float)}


def _train_sequence(arch, regime, seeds, steps, out, resume, device, pairs, quiet) -> None:
    """--arch linear | softmax | delta | delta-rnn | rec-delta: one causal sequence model on
    the paper's training distribution (`train.sequence`; CPU, one seed, no resume)."""
    from eaglelab.models.sequence import ARCHITECTURES
    from eaglelab.train.sequence import SequenceRunConfig, train_sequence

    if arch not in ARCHITECTURES:
        fail(f"--arch {arch!r} is not known; use transformer or one of {', '.join(ARCHITECTURES)}")
    for given, name in ((regime not in (None, "unconstrained"), "--regime"),
                        (seeds not in (None, 1), "--seeds"), (resume is not None, "--resume"),
                        (device not in (None, "cpu"), "--device")):
        if given:
            fail(f"{name} is not available with --arch {arch} (a sequence run is one seed on "
                 "the CPU, trained in one go)")
    unknown = sorted(set(pairs) - set(SEQUENCE_KEYS))
    if unknown:
        fail(f"--arch {arch} takes only {', '.join(sorted(SEQUENCE_KEYS))}; got "
             + ", ".join(unknown))
    if out is None or out.exists():
        fail(f"--out {out} must be a new folder")
    try:
        values = {SEQUENCE_KEYS[k][0]: SEQUENCE_KEYS[k][1](v) for k, v in pairs.items()}
    except ValueError as exc:
        fail(f"a setting is not a number: {exc}")
    cfg = SequenceRunConfig(arch=arch, **({} if steps is None else {"steps": steps}), **values)
    train_sequence(cfg, out, progress=not quiet)
    console.print(f"run folder: [bold]{out}[/]")
