"""Masked-block completion tasks: layout, reference answers and generators."""

from eaglelab.tasks.blocks import BlockProblem, assemble, nystrom_reference, prompt, split
from eaglelab.tasks.training import TrainingTaskConfig, training_batch

__all__ = [
    "BlockProblem",
    "TrainingTaskConfig",
    "assemble",
    "nystrom_reference",
    "prompt",
    "split",
    "training_batch",
]
