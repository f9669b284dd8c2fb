"""Masked-block completion tasks: layout, reference answers and generators.

- `blocks`: the block layout (`BlockProblem`, `split`, `assemble`, `prompt`) and the float64
  Nystrom reference answer (`nystrom_reference`);
- `training`: the paper's training distribution (`training_batch`);
- `estimation`: the least-squares estimation task of Appendix D (`EstimationTaskConfig`);
- `sampling`: one batch of a training-type task from a generator (`draw_batch`);
- `haar`: the one Haar sampler;
- `conditioned`: problems with a prescribed condition number and rank (SVD construction);
- `distributions`: the ablation distributions behind one entry point, `sample`;
- `diverse`: distributed problems with a prescribed diversity index alpha (`diverse_problem`);
- `regression`: in-context linear regression in the block layout;
- `icl`: the family's in-context regression tasks (Ahn et al., von Oswald et al.,
  Vladymyrov et al.) with tokens as rows - the block layout with d' = n' = 1;
- `kernels`: Nystrom kernel-slice tasks on synthetic or user-supplied point sets;
- `realdata`: problems from real (e.g. SuiteSparse) matrices by pivoted-QR selection;
- `sequence`: the sequence view of a prompt for causal sequence layers (`to_sequence`,
  `read_completion`).
"""

from eaglelab.tasks.blocks import (
    BlockProblem,
    assemble,
    nystrom_reference,
    prompt,
    split,
    split_prompt,
)
from eaglelab.tasks.conditioned import (
    SINGULAR_VALUE_LAWS,
    conditioned_batch,
    conditioned_problem,
    singular_value_profile,
)
from eaglelab.tasks.distributions import DISTRIBUTIONS, default_params, sample
from eaglelab.tasks.diverse import DiverseProblem, diverse_problem, max_alpha_below_one
from eaglelab.tasks.estimation import EstimationTaskConfig, estimation_batch
from eaglelab.tasks.kernels import (
    KERNELS,
    POINT_CLOUDS,
    kernel_batch,
    kernel_matrix,
    nystrom_problem,
    synthetic_points,
)
from eaglelab.tasks.realdata import load_matrix, load_problem, matrix_task, save_problem
from eaglelab.tasks.regression import regression_batch, regression_problem
from eaglelab.tasks.sampling import draw_batch
from eaglelab.tasks.training import TrainingTaskConfig, training_batch

__all__ = [
    "DISTRIBUTIONS",
    "KERNELS",
    "POINT_CLOUDS",
    "SINGULAR_VALUE_LAWS",
    "BlockProblem",
    "DiverseProblem",
    "EstimationTaskConfig",
    "TrainingTaskConfig",
    "assemble",
    "conditioned_batch",
    "conditioned_problem",
    "default_params",
    "diverse_problem",
    "draw_batch",
    "estimation_batch",
    "kernel_batch",
    "kernel_matrix",
    "load_matrix",
    "load_problem",
    "matrix_task",
    "max_alpha_below_one",
    "nystrom_problem",
    "nystrom_reference",
    "prompt",
    "regression_batch",
    "regression_problem",
    "sample",
    "save_problem",
    "singular_value_profile",
    "split",
    "split_prompt",
    "synthetic_points",
    "training_batch",
]
