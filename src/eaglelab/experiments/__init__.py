"""The paper's experiments, each one command: `eaglelab reproduce NAME [--quick]`.

Registry: `EXPERIMENTS` maps a name to the module that implements it.  A module plugs in
by providing TITLE, PAPER_REF, a `Config` dataclass (defaults = the full, paper-size run),
`make_config(quick, seeds, **overrides)` and `run(cfg, ctx) -> ExperimentResult` (see
`eaglelab.experiments.base`); the runner is `base.py`, the report writer `report.py`.

    from eaglelab.experiments import run_experiment, reproduce_all
    run_experiment("centralized", "out", quick=True)     # out/centralized/{result,config}.json ...
    reproduce_all("out", quick=True)                     # every one + out/REPORT.md
"""

from __future__ import annotations

from eaglelab.experiments.base import (
    Claim,
    Context,
    ExperimentResult,
    cli_reproduce,
    reproduce_all,
    run_experiment,
)
from eaglelab.experiments.report import write_report

__all__ = [
    "EXPERIMENTS",
    "Claim",
    "Context",
    "ExperimentResult",
    "available",
    "cli_reproduce",
    "reproduce_all",
    "run_experiment",
    "write_report",
]

# name -> module, in report order (the paper's order: model first, then the solver).
EXPERIMENTS: dict[str, str] = {
    "layers": "eaglelab.experiments.layers",
    "fidelity": "eaglelab.experiments.fidelity",
    "unified": "eaglelab.experiments.unified",
    "centralized": "eaglelab.experiments.centralized",
    "distributed": "eaglelab.experiments.distributed",
    "sketched": "eaglelab.experiments.sketched",
    "ablations": "eaglelab.experiments.ablations",
    "estimation": "eaglelab.experiments.estimation",
    "realdata": "eaglelab.experiments.realdata",
    "theory": "eaglelab.experiments.theory",
    # the family (related brief)
    "ahn": "eaglelab.experiments.ahn",
    "von_oswald": "eaglelab.experiments.von_oswald",
    "vladymyrov": "eaglelab.experiments.vladymyrov",
    "dynamics": "eaglelab.experiments.dynamics",
    "architectures": "eaglelab.experiments.architectures",
}


def available() -> list[str]:
    """Every registered experiment (registry order); each has its module."""
    return list(EXPERIMENTS)
