"""Trained models shared by the training-based experiments (`layers`, `fidelity`).

`trained_run` trains a regime once per distinct training configuration and keeps the run
folder under <out>/_runs/<regime>-<heads>h-<steps>x<seeds>-<hash>, where <out> is the
`reproduce --out` folder: `reproduce all` trains each regime once for both experiments, a
re-run reuses finished runs, and an interrupted run is resumed from its last checkpoint.
The hash covers the whole resolved config (task, model, optimiser, seeds), so a changed
setting never picks up a stale model.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from eaglelab.experiments.base import Context

__all__ = ["TrainedConfig", "QUICK_TRAINING", "REGIMES", "trained_run", "runs_folder"]

REGIMES = ("unconstrained", "compute-limited", "distributed")


@dataclass
class TrainedConfig:
    """The fields every training-based experiment shares (defaults: the paper's recipe).
    Experiments subclass it, so equal values mean the same cached runs."""

    steps: int = 20000
    batch: int = 1024
    seeds: int = 10
    noise_std: float = 0.0
    val_size: int = 1024      # held-out tasks for extraction and fidelity
    base_seed: int = 0


# quick mode (what the tests run): a few hundred steps at a smaller batch, one seed
QUICK_TRAINING = dict(steps=400, batch=256, seeds=1, val_size=256)


def runs_folder(ctx: Context) -> Path:
    return ctx.out_dir.parent / "_runs"


def trained_run(ctx: Context, regime: str, *, steps: int, batch: int, noise_std: float = 0.0,
                heads: int = 1, seeds: int | None = None, prune_at: int = 0):
    """The finished run (`eaglelab.train.LoadedRun`) of `regime` with the first `seeds` of
    ctx.seeds (default all), training it (or resuming it) when the cache does not hold it
    yet.  heads: per layer (per machine in the distributed regime); prune_at > 0 prunes
    them greedily to one at that step and fine-tunes the rest of the run."""
    from eaglelab.train import cli_train, load_run
    from eaglelab.train.checkpoint import MODEL
    from eaglelab.train.config import resolve_config

    overrides = {"train.batch": str(batch), "train.seed": str(ctx.seeds[0]),
                 "task.noise_std": str(noise_std), "model.heads": str(heads)}
    if prune_at:
        overrides.update({"train.prune_to": "1", "train.prune_at": str(prune_at)})
    K = len(ctx.seeds) if seeds is None else seeds
    config = resolve_config(regime, K, steps, overrides)
    key = hashlib.sha1(config.to_json().encode()).hexdigest()[:10]
    tag = f"{heads}h" + (f"-pruned@{prune_at}" if prune_at else "")
    run_dir = runs_folder(ctx) / f"{regime}-{tag}-{steps}x{K}-{key}"
    resume = (run_dir / "config.json").exists()
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)       # a folder left by a crash before the config was written
    if not (run_dir / MODEL).exists():
        cli_train(None if resume else regime, None if resume else K,
                  None if resume else steps, run_dir, resume=resume,
                  overrides=None if resume else overrides, quiet=not ctx.progress)
    run = load_run(run_dir)
    if not run.finished:
        raise RuntimeError(f"training in {run_dir} stopped before its last step")
    return run
