"""benchmarks/gpu_check.py: it skips cleanly without a GPU, and its whole pipeline
(correctness, solver and training timings, JSON and table) runs at toy sizes on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "no CUDA device" in out.stdout and "skipped" in out.stdout
    assert not (tmp_path / "gpu_check.json").exists()


def test_cpu_smoke_run_writes_a_passing_report(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["correctness"] and all(r["ok"] for r in report["correctness"])
    checks = {r["check"] for r in report["correctness"]}
    assert {"eagle dense", "eagle rows sketch", "eagle estimation", "lstsq (svd)", "cg"} <= checks
    assert all(r["eagle"]["seconds_to_target"] is not None for r in report["solvers"])
    regimes = {r["regime"] for r in report["training"] if "protocol_estimate_s" in r}
    assert regimes == {"unconstrained", "compute-limited", "distributed"}
    assert (tmp_path / "gpu_check.txt").read_text().startswith("gpu_check on CPU")
