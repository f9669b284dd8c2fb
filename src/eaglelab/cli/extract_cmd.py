"""`eaglelab extract RUN_DIR`: extract the algorithm from a trained run and report on it."""

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
    L = len(s["fidelity"])
    t = Table(title=f"Fidelity per layer, {ex.regime} (||Z_model - Z_alg||^2 / #entries)")
    t.add_column("")
    for l in range(L):
        t.add_column(f"layer {l + 1}", justify="right")
    t.add_row("extracted algorithm", *[f"{v:.1e}" for v in s["fidelity"]])
    t.add_row("  D slot only", *[f"{v:.1e}" for v in s["fidelity_prediction"]])
    t.add_row("canonical EAGLE", *[f"{v:.1e}" for v in s["fidelity_canonical"]])
    if "fidelity_paper" in s:
        t.add_row(f"paper's form ({s['paper_form']})",
                  *[f"{v:.1e}" for v in s["fidelity_paper"]])
    t.add_row("model test MSE", *[""] * (L - 1), f"{s['mse']:.1e}")
    t.add_row("median over tasks", *[f"{v:.1e}" for v in s["fidelity_median"]])
    t.add_row("  model median MSE", *[""] * (L - 1), f"{s['mse_median']:.1e}")
    return t


def run_extraction(run_dir: Path, val_size: int = 1024, quiet: bool = False):
    """load_run -> extract -> write_report; returns (Extraction, report path)."""
    from eaglelab.extract import extract
    from eaglelab.extract.report import write_report
    from eaglelab.train import load_run

    run = load_run(run_dir)
    if not run.finished:
        raise ValueError(f"{run_dir}: training has not finished (no final model); resume it "
                         f"with `eaglelab train --resume {run_dir}` first")
    if not quiet:
        console.print(f"extracting from {run_dir} ({run.config.regime}, "
                      f"{len(run.config.seeds)} seed(s), step {run.step}) ...")
    ex = extract(run.model, run.config.task, val_size=val_size)
    report = write_report(ex, run_dir / "extraction", title=str(run_dir))
    return ex, report


def extract_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a finished training run folder")],
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    val_size: Annotated[int, typer.Option(help="held-out prompts for fidelity")] = 1024,
) -> None:
    """Prune, simplify, test and fit the trained weights; write REPORT and figures into
    RUN_DIR/extraction; print the fidelity table (or JSON)."""
    from eaglelab.extract.report import update_rule

    try:
        ex, report = run_extraction(run_dir, val_size, quiet=json_out)
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
