"""Shared by the family's experiments (`ahn`, `von_oswald`): one trained model on one of
the family's tasks, kept in a run folder of the experiment and reused when its resolved
config is unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path


def trained_icl_run(overrides: dict[str, str], steps: int, folder: Path):
    """The finished run in `folder` when its config equals
    `resolve_config("unconstrained", 1, steps, overrides, task="icl")`; otherwise the folder
    is cleared and the model trained there.  Returns the `LoadedRun`."""
    from eaglelab.train import load_run, resolve_config, train

    config = resolve_config("unconstrained", 1, steps, overrides, task="icl")
    if (folder / "model.safetensors").exists():
        run = load_run(folder)
        if run.config == config:
            return run
    if folder.exists():
        shutil.rmtree(folder)
    return train(config, folder)
