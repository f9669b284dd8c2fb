"""`eaglelab extract RUN_DIR [RUN_DIR...]`: extract the algorithm from a trained run (or
from seed blocks of one configuration, joined) and report on it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from eaglelab.cli._common import console, fail, print_json


def register(app: typer.Typer) -> None:
    app.command("extract")(extract_cmd)


def fidelity_rich_table(ex) -> Table:
    s = ex.summary()
    L = len(s.fidelity)
    out = ", ".join(map(str, s.out_of_range))
    t = Table(title=f"Fidelity per layer, {ex.regime} (||Z_model - Z_alg||^2 / #entries)",
              caption=f"over the test tasks with an input norm in range ({out} of "
                      f"{s.tasks} outside, per seed), except the 'all tasks' rows")
    t.add_column("")
    for l in range(L):
        t.add_column(f"layer {l + 1}", justify="right")
    t.add_row("extracted algorithm", *[f"{v:.1e}" for v in s.fidelity])
    t.add_row("  D slot only", *[f"{v:.1e}" for v in s.fidelity_prediction])
    t.add_row("canonical EAGLE", *[f"{v:.1e}" for v in s.fidelity_canonical])
    if s.fidelity_paper is not None:
        t.add_row(f"paper's form ({s.paper_form})",
                  *[f"{v:.1e}" for v in s.fidelity_paper])
    t.add_row("model test MSE", *[""] * (L - 1), f"{s.mse:.1e}")
    t.add_row(f"all {s.tasks} tasks", *[f"{v:.1e}" for v in s.fidelity_all_tasks])
    t.add_row("  model test MSE", *[""] * (L - 1), f"{s.mse_all_tasks:.1e}")
    t.add_row("median over tasks", *[f"{v:.1e}" for v in s.fidelity_median])
    t.add_row("  model median MSE", *[""] * (L - 1), f"{s.mse_median:.1e}")
    return t


def run_extraction(run_dirs: Path | list[Path], val_size: int = 1024, quiet: bool = False,
                   out: Path | None = None):
    """load_run (each folder; several are seed blocks of one configuration, joined by
    `merge_runs`) -> extract -> write_report into `out` (default RUN_DIR/extraction; required
    for several folders); returns (Extraction, report path)."""
    from eaglelab.extract import extract
    from eaglelab.extract.report import write_report
    from eaglelab.train import load_run, merge_runs

    run_dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    if not run_dirs:
        raise ValueError("name at least one run folder")
    if out is None and len(run_dirs) > 1:
        raise ValueError(f"{len(run_dirs)} run folders: pass --out for the joint report")
    runs = []
    for run_dir in run_dirs:
        run = load_run(run_dir)
        if not run.finished:
            raise ValueError(f"{run_dir}: training has not finished (no final model); resume "
                             f"it with `eaglelab train --resume {run_dir}` first")
        runs.append(run)
    run = merge_runs(runs)
    if not quiet:
        console.print(f"extracting from {run.name} ({run.config.regime}, "
                      f"{len(run.config.seeds)} seed(s), step {run.step}) ...")
    ex = extract(run.model, run.config.task, val_size=val_size)
    report = write_report(ex, out or run_dirs[0] / "extraction",
                          title=" + ".join(str(p) for p in run_dirs))
    return ex, report


def extract_cmd(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="a finished training run folder, or several seed blocks of one configuration "
             "(runs that differ only in train.seed / --seeds), extracted as one run")],
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    val_size: Annotated[int, typer.Option(help="held-out prompts for fidelity")] = 1024,
    out: Annotated[Path | None, typer.Option(
        help="report folder (default RUN_DIR/extraction; required for several runs)")] = None,
) -> None:
    """Prune, simplify, test and fit the trained weights; write REPORT and figures into
    RUN_DIR/extraction (or --out); print the fidelity table (or JSON)."""
    from eaglelab.extract.report import update_rule

    try:
        ex, report = run_extraction(run_dirs, val_size, quiet=json_out, out=out)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    if json_out:
        summary = ex.summary()
        per_seed = [{"seed": s.seed, "fidelity": s.fidelity, "mse": s.mse,
                     "nystrom_error": ex.nystrom_mse, "eta": s.eta, "gamma": s.gamma}
                    for s in ex.seeds]
        print_json({"regime": ex.regime, "summary": summary, "seeds": per_seed,
                    "report": str(report)})
        return
    console.print(update_rule(ex))
    console.print(fidelity_rich_table(ex))
    console.print(f"report: [bold]{report}[/]")
