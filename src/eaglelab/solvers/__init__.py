"""Solvers for D = B A^+ C: EAGLE (dense, sketched, distributed, estimation) and baselines.

Every solver is a plain function returning a `SolveResult`; `solve(A, B, C, method=...)`
dispatches by name (see `METHODS`).
"""

from eaglelab.solvers._result import History, SolveResult, Status
from eaglelab.solvers._update import update_reference
from eaglelab.solvers.cg import cg_normal
from eaglelab.solvers.distributed import distributed_gd, eagle_distributed, partition_columns
from eaglelab.solvers.eagle import draw_sketch, eagle
from eaglelab.solvers.estimation import eagle_estimate
from eaglelab.solvers.gd import gradient_descent
from eaglelab.solvers.lsmr import lsmr
from eaglelab.solvers.lstsq import lstsq
from eaglelab.solvers.mixed import eagle_mixed
from eaglelab.solvers.schedule import Schedule
from eaglelab.solvers.sgd import sgd_sketch
from eaglelab.solvers.sketch_precond import sketch_precond_lsqr
from eaglelab.solvers.solve import METHODS, solve

__all__ = [
    "METHODS",
    "History",
    "Schedule",
    "SolveResult",
    "Status",
    "cg_normal",
    "distributed_gd",
    "draw_sketch",
    "eagle",
    "eagle_distributed",
    "eagle_estimate",
    "eagle_mixed",
    "gradient_descent",
    "lsmr",
    "lstsq",
    "partition_columns",
    "sgd_sketch",
    "sketch_precond_lsqr",
    "solve",
    "update_reference",
]
