"""The experiment runner: one result type, one directory layout, one report.

Every experiment module (see `eaglelab.experiments` for the registry) exposes

    TITLE: str                      one line, used as the section heading
    PAPER_REF: str                  where the paper reports it ("Section 5.1, Figs 6 and 20")
    Config                          a dataclass whose defaults are the FULL (paper-size) run
    make_config(quick, seeds, **overrides) -> Config
    run(cfg, ctx) -> ExperimentResult

`run_experiment` resolves the config, runs it under a `Context` (output directory,
seeds, progress bars, figure saving) and writes

    <out>/<name>/result.json    data (every plotted number), claims, figure names
    <out>/<name>/config.json    resolved config, seeds, package versions, wall time
    <out>/<name>/section.md     the markdown section (text, claims table, figures)
    <out>/<name>/*.png          figures

`write_report(out)` assembles <out>/REPORT.md from every result.json under <out>, so
experiments can be run one at a time or all at once (`reproduce_all`).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import platform
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from eaglelab.experiments.report import section_markdown, write_report
from eaglelab.records import package_versions, to_jsonable, write_json

__all__ = [
    "Claim",
    "Context",
    "ExperimentResult",
    "VERDICTS",
    "cli_reproduce",
    "reproduce_all",
    "run_experiment",
    "write_report",
    "package_versions",
]

VERDICTS = ("agrees", "differs", "not tested")
T = TypeVar("T")


@dataclass
class Claim:
    """One checked claim: the paper's statement, its number (if it gives one), ours.

    claim:   the statement, e.g. "EAGLE needs ~100x fewer iterations than CG at kappa = 1e4"
    paper:   the paper's value (number or short text), None when it gives no number
    ours:    our measured value (number or short text, e.g. ">= 178")
    verdict: "agrees", "differs", or "not tested" when the measurement cannot decide the
             claim (e.g. a ratio of iteration counts where one solver never reached the target)
    reason:  one line: why it agrees or, when it differs, the most likely reason
    """

    claim: str
    paper: Any
    ours: Any
    verdict: str
    reason: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict={self.verdict!r}; use one of {VERDICTS}")

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "paper": to_jsonable(self.paper), "ours": to_jsonable(self.ours),
                "verdict": self.verdict, "reason": self.reason}

    def __iter__(self) -> Iterator[Any]:  # allows `claim, paper, ours, verdict, reason = c`
        return iter((self.claim, self.paper, self.ours, self.verdict, self.reason))


@dataclass
class ExperimentResult:
    """What an experiment returns.

    name:     registry name ("centralized", ...)
    data:     JSON-ready dict holding every number that is plotted or claimed
    figures:  paths of the PNG files written (inside the experiment directory)
    section:  markdown body (the runner adds the heading, claims table and figures)
    claims:   the checked claims
    captions: optional figure captions keyed by file name
    """

    name: str
    data: dict[str, Any]
    figures: list[Path] = field(default_factory=list)
    section: str = ""
    claims: list[Claim] = field(default_factory=list)
    captions: dict[str, str] = field(default_factory=dict)


class Context:
    """What an experiment gets besides its config: where to write, seeds, progress."""

    def __init__(self, name: str, out_dir: Path, seeds: list[int], quick: bool,
                 progress: bool = True) -> None:
        self.name = name
        self.out_dir = out_dir
        self.seeds = seeds
        self.quick = quick
        self.progress = progress
        self.figures: list[Path] = []
        self.trained_runs: dict[str, float] = {}   # run folder -> measured training seconds
        self.training_wall = 0.0                    # seconds this experiment spent training

    def track(self, items: Iterable[T] | Sequence[T], description: str,
              total: int | None = None) -> Iterator[T]:
        """Iterate with a rich progress bar (on stderr; hidden when progress=False)."""
        if not self.progress:
            yield from items
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        columns = (TextColumn(f"[bold]{self.name}[/]"), TextColumn("{task.description}"),
                   BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)

    def save_figure(self, fig: Any, stem: str) -> Path:
        """Save a matplotlib Figure as <out_dir>/<stem>.png and remember it."""
        path = self.out_dir / f"{stem}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        self.figures.append(path)
        return path


# ----------------------------------------------------------------------------------------
# registry access


def _registry() -> dict[str, str]:
    from eaglelab.experiments import EXPERIMENTS

    return EXPERIMENTS


def _module(name: str):
    reg = _registry()
    if name not in reg:
        raise ValueError(f"unknown experiment {name!r}; valid names: {', '.join(sorted(reg))} "
                         f"(or 'all')")
    return importlib.import_module(reg[name])


# ----------------------------------------------------------------------------------------
# running one experiment


def run_experiment(name: str, out_dir: str | os.PathLike, quick: bool = False,
                   seeds: int | None = None, *, overrides: dict[str, Any] | None = None,
                   threads: int | None = None, progress: bool = True) -> ExperimentResult:
    """Run one experiment and write its files under <out_dir>/<name>/.

    Parameters
    ----------
    name : registry name (see `eaglelab.experiments.EXPERIMENTS`).
    out_dir : root output directory.
    quick : the reduced run (fewer seeds, smaller sizes) used by the tests.
    seeds : number of seeds K (default: the experiment's quick/full default).
    overrides : config fields to change, e.g. {"n": 120}; unknown keys raise ValueError.
    threads : BLAS threads during the run (default: the library default, all cores).
    progress : show rich progress bars on stderr.
    """
    module = _module(name)
    _check_override_keys(overrides or {})
    if seeds is not None and (not isinstance(seeds, (int, np.integer)) or seeds < 1):
        raise ValueError(f"seeds must be a positive integer (number of seeds), got {seeds!r}")
    cfg = module.make_config(quick=quick, seeds=seeds, **(overrides or {}))
    exp_dir = Path(out_dir) / name
    exp_dir.mkdir(parents=True, exist_ok=True)
    for old in exp_dir.glob("*.png"):  # figures from an earlier run would linger in the report
        old.unlink()
    seed_list = [int(cfg.base_seed) + i for i in range(int(cfg.seeds))]
    ctx = Context(name, exp_dir, seed_list, quick, progress)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with _blas_threads(threads):
        result = module.run(cfg, ctx)
    wall = time.perf_counter() - t0
    if result.name != name:
        raise RuntimeError(f"experiment module {module.__name__} returned name {result.name!r}")
    figures = [Path(p) for p in (result.figures or ctx.figures)]
    result.figures = figures

    config = {
        "experiment": name,
        "title": module.TITLE,
        "quick": quick,
        "config": to_jsonable(dataclasses.asdict(cfg)),
        "seeds": seed_list,
        "base_seed": int(cfg.base_seed),
        "blas_threads": threads,
        "versions": package_versions(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_seconds": wall,
        "trained_runs": ctx.trained_runs,
        "training_wall_seconds": ctx.training_wall,
        "command": f"eaglelab reproduce {name}" + (" --quick" if quick else "")
                   + (f" --seeds {seeds}" if seeds is not None else "")
                   + "".join(f" --set {k}={v}" for k, v in (overrides or {}).items())
                   + f" --out {out_dir}",
    }
    payload = {
        "name": name,
        "title": module.TITLE,
        "paper_ref": module.PAPER_REF,
        "quick": quick,
        "wall_seconds": wall,
        "data": to_jsonable(result.data),
        "claims": [c.to_dict() for c in result.claims],
        "figures": [p.name for p in figures],
        "captions": result.captions,
        "section": result.section,
    }
    write_json(exp_dir / "config.json", config)
    write_json(exp_dir / "result.json", payload)
    (exp_dir / "section.md").write_text(section_markdown(payload, prefix="", level=1))
    return result


class _blas_threads:
    def __init__(self, threads: int | None) -> None:
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self.threads = threads
        self._ctl: Any = None

    def __enter__(self) -> None:
        if self.threads is not None:
            from threadpoolctl import threadpool_limits

            self._ctl = threadpool_limits(limits=self.threads)

    def __exit__(self, *exc: Any) -> None:
        if self._ctl is not None:
            self._ctl.restore_original_limits()


# ----------------------------------------------------------------------------------------
# all experiments and the report


def reproduce_all(out: str | os.PathLike, quick: bool = False, names: Sequence[str] | None = None,
                  seeds: int | None = None, *, threads: int | None = None,
                  progress: bool = True, overrides: dict[str, Any] | None = None) -> Path:
    """Run the named experiments (default: every implemented one) and write REPORT.md.

    overrides: config fields as for `run_experiment`, keyed "NAME.KEY" for one experiment
    or "KEY" for every experiment whose config has that field (`split_overrides`).
    An experiment that raises is recorded in the report (with its traceback) and the
    others still run; afterwards RuntimeError names the failures.  Returns REPORT.md.
    """
    from eaglelab.experiments import available

    todo = list(names) if names is not None else available()
    for name in todo:
        _module(name)  # unknown or unimplemented names fail before anything runs
    _check_override_keys(overrides or {})
    per_name = split_overrides(overrides or {}, todo, quick)
    for name in todo:    # bad values fail before anything runs, too
        _module(name).make_config(quick=quick, seeds=seeds, **per_name[name])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    failures: dict[str, str] = {}
    t0 = time.perf_counter()
    for name in todo:
        try:
            run_experiment(name, out, quick=quick, seeds=seeds, threads=threads, progress=progress,
                           overrides=per_name[name])
        except Exception:  # noqa: BLE001 - recorded in the report, re-raised below
            failures[name] = traceback.format_exc()
    wall = time.perf_counter() - t0
    report = write_report(out, failures=failures, total_wall=wall, ran=todo)
    if failures:
        raise RuntimeError(f"experiments {sorted(failures)} failed; the report {report} has the "
                           "tracebacks")
    return report


def _check_override_keys(overrides: dict[str, Any]) -> None:
    """Seeds have their own option; a config field of that name would be set twice."""
    for key in overrides:
        if key.rpartition(".")[2] in ("seeds", "quick"):
            raise ValueError(f"--set {key}: use --seeds K / --quick, not a config override")


def split_overrides(overrides: dict[str, Any], names: Sequence[str],
                    quick: bool = False) -> dict[str, dict[str, Any]]:
    """Per experiment, the config fields `reproduce all` changes: "NAME.KEY" goes to NAME
    alone, a bare "KEY" to every experiment in `names` whose config has it.  A name not
    being run, or a bare key no such config has, raises ValueError."""
    out: dict[str, dict[str, Any]] = {n: {} for n in names}
    fields = {n: {f.name for f in dataclasses.fields(_module(n).make_config(quick=quick))}
              for n in names}
    for key, value in overrides.items():
        name, dot, field = key.rpartition(".")
        if dot:
            if name not in out:
                raise ValueError(f"--set {key}: {name!r} is not one of the experiments being "
                                 f"run {list(names)}")
            out[name][field] = value
            continue
        having = [n for n in names if key in fields[n]]
        if not having:
            raise ValueError(f"--set {key}: no experiment being run has a config field {key!r}")
        for n in having:
            out[n][key] = value
    return out


def cli_reproduce(name: str, quick: bool, seeds: int | None, out: Path, *,
                  threads: int | None = None, progress: bool = True,
                  overrides: dict[str, str] | None = None) -> Path:
    """Entry point for `eaglelab reproduce NAME|all [--quick] [--seeds K] [--out DIR]`.

    NAME "all" runs every implemented experiment and returns <out>/REPORT.md; any other
    name runs that experiment, refreshes <out>/REPORT.md from the results present in
    <out>, and returns <out>/<name>/section.md.  Unknown names raise ValueError listing
    the valid ones.
    """
    out = Path(out)
    if name == "all":
        return reproduce_all(out, quick=quick, seeds=seeds, threads=threads, progress=progress,
                             overrides=overrides)
    run_experiment(name, out, quick=quick, seeds=seeds, threads=threads, progress=progress,
                   overrides=overrides)
    write_report(out)
    return out / name / "section.md"


# ----------------------------------------------------------------------------------------
# markdown and JSON helpers
