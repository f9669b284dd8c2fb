"""`eaglelab demo` end to end at a tiny budget: it trains, extracts, compares with lstsq and
writes demo.json whose numbers must make sense (the 10,000-step default is measured in
docs/demo.md and checked by the slow trained-extraction test)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from eaglelab.cli import app


def test_demo_runs_end_to_end_and_records_its_verdict(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--steps", "300", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "discovered update rule" in res.output and "verdict" in res.output
    rec = json.loads((out / "demo.json").read_text())
    s = rec["summary"]
    assert rec["steps"] == 300 and s["seeds"] == 1
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in line]
    untrained = evals[0]["median_mse"][0]       # step 0: the initial model predicts ~0
    assert evals[0]["step"] == 0 and s["mse_median"] < 0.5 * untrained
    assert len(s["fidelity"]) == 4 and all(f >= 0 for f in s["fidelity"])
    e = rec["solver_comparison"]["eagle"]
    assert e["converged"] and e["relative_error"] < 1e-10
    assert (out / "extraction" / "REPORT-unconstrained.md").exists()

