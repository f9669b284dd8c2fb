"""eaglelab: linear transformers that discover EAGLE, and EAGLE as a solver.

Public API: `solve` and the solver functions (`eaglelab.solvers`), the task generators
(`eaglelab.tasks`), models (`eaglelab.models`), training (`eaglelab.train`) and extraction
(`eaglelab.extract`).
"""

from eaglelab.records import __version__
from eaglelab.solvers import SolveResult, solve

__all__ = ["SolveResult", "__version__", "solve"]
