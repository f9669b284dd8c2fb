"""Training of the linear transformers: the paper's recipe, vectorised seeds, spike guard,
checkpoints and resume.  See `loop.py` for the loop and `checkpoint.py` for the run folder.
"""

from eaglelab.train.cli import cli_train, resume, train, train_run
from eaglelab.train.config import (
    EstimationTaskConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    resolve_config,
)
from eaglelab.train.data import BatchStream, data_seed, draw_batch, evaluation_set, split_prompt
from eaglelab.train.loop import FlatAdam, SpikeGuard, Trainer, clip_per_seed
from eaglelab.train.runs import LoadedRun, load_run, merge_runs, select_seeds

__all__ = [
    "BatchStream",
    "EstimationTaskConfig",
    "FlatAdam",
    "LoadedRun",
    "RunConfig",
    "SpikeGuard",
    "TrainConfig",
    "Trainer",
    "apply_overrides",
    "clip_per_seed",
    "cli_train",
    "data_seed",
    "draw_batch",
    "evaluation_set",
    "load_run",
    "merge_runs",
    "resolve_config",
    "resume",
    "select_seeds",
    "split_prompt",
    "train",
    "train_run",
]
