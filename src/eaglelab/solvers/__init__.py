"""Solvers for D = B A^+ C: EAGLE (dense, sketched, distributed, estimation) and baselines."""

from eaglelab.solvers._result import History, SolveResult
from eaglelab.solvers._update import update_reference
from eaglelab.solvers.distributed import (
    distributed_gd,
    eagle_distributed,
    partition_columns,
)
from eaglelab.solvers.eagle import eagle
from eaglelab.solvers.estimation import eagle_estimate
from eaglelab.solvers.schedule import Schedule

__all__ = [
    "History",
    "Schedule",
    "SolveResult",
    "distributed_gd",
    "eagle",
    "eagle_distributed",
    "eagle_estimate",
    "partition_columns",
    "update_reference",
]
