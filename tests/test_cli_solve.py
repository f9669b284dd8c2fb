"""`eaglelab solve` under hostile input: errors that name the problem, never a traceback
or a silently different solve."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from eaglelab.cli import app


def test_solve_command_refuses_what_it_cannot_do_honestly(tmp_path):
    """Hostile input to `eaglelab solve` gets an error naming the problem, never a
    traceback or a silently different solve (issue 17: items 7 and 8)."""
    rng = np.random.default_rng(0)
    A, C = rng.standard_normal((30, 40)), rng.standard_normal((30, 2))
    np.savez(tmp_path / "complex.npz", A=A + 1j * A, B=rng.standard_normal((2, 40)), C=C)
    np.savez(tmp_path / "b0.npz", A=A, B=np.zeros((2, 40)), C=C)
    runner = CliRunner()
    cases = [([str(tmp_path / "complex.npz")], "real-valued"),
             (["-m", "sgd"], "-m sgd needs -r"),
             (["--workers", "0"], "--workers must be at least 1"),
             (["--workers", "-2"], "--workers must be at least 1")]
    for args, message in cases:
        res = runner.invoke(app, ["solve", *args])
        assert res.exit_code == 2 and message in " ".join(res.output.split()), (args, res.output)
        assert res.exception is None or isinstance(res.exception, SystemExit), args
    res = runner.invoke(app, ["solve", str(tmp_path / "b0.npz"), "--json"])   # D* = 0
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output)
    assert rec["converged"] and rec["relative_error"] == 0.0 and rec["residual"] == 0.0


def test_sparse_complex_input_is_refused_not_cast():
    import scipy.sparse as sp

    from eaglelab.solvers import eagle

    A = sp.random(20, 30, density=0.3, random_state=1, format="csr") * (1 + 1j)
    with pytest.raises(ValueError, match="A has dtype complex128"):
        eagle(A, np.ones((2, 30)), np.ones((20, 2)))


def test_an_out_folder_that_cannot_be_created_is_an_error_not_a_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")                       # a file where a parent folder must be
    runner = CliRunner()
    for args in (["train", "--regime", "unconstrained", "--steps", "1",
                  "--out", str(blocker / "run")],
                 ["reproduce", "theory", "--quick", "--out", str(blocker / "rep")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "error" in res.output, (args, res.output)
        assert res.exception is None or isinstance(res.exception, SystemExit), args


def test_a_file_that_is_not_an_npz_archive_is_named_as_such(tmp_path):
    (tmp_path / "dir.npz").mkdir()
    (tmp_path / "text.npz").write_text("not a zip")
    runner = CliRunner()
    for name, message in (("dir.npz", "is a directory"), ("text.npz", "not a zip file")):
        res = runner.invoke(app, ["solve", str(tmp_path / name)])
        assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
        assert "allow_pickle" not in res.output


def test_solve_device_option_computes_on_torch_and_names_bad_devices():
    """--device cpu solves on torch tensors (same answer as numpy to 1e-12); a device
    the machine lacks, an unknown name, and the process engine are errors naming it."""
    import torch

    runner = CliRunner()
    base = ["solve", "-m", "eagle", "--n", "60", "--d", "50", "--json"]
    a = json.loads(runner.invoke(app, base).output)
    b = json.loads(runner.invoke(app, [*base, "--device", "cpu"]).output)
    assert a["converged"] and b["converged"] and a["iterations"] == b["iterations"]
    assert abs(a["relative_error"] - b["relative_error"]) < 1e-12
    cases = [(["--device", "gpu"], "use 'cpu', 'cuda' or 'cuda:N'"),
             (["--device", "cpu", "--workers", "2"], "does not apply to the torch.distributed")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "no CUDA device"))
    for args, message in cases:
        res = runner.invoke(app, ["solve", *args])
        assert res.exit_code == 2 and message in " ".join(res.output.split()), (args, res.output)


def test_synthetic_options_with_a_file_are_refused(tmp_path):
    """--n/--kappa/--rank shape a synthetic problem; with a file they used to be ignored
    silently."""
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "p.npz", A=rng.standard_normal((6, 8)), B=rng.standard_normal((2, 8)),
             C=rng.standard_normal((6, 2)))
    res = CliRunner().invoke(app, ["solve", str(tmp_path / "p.npz"), "--kappa", "1e6",
                                   "--n", "50"])
    assert res.exit_code == 2 and "--n, --kappa" in " ".join(res.output.split()), res.output
    ok = CliRunner().invoke(app, ["solve", str(tmp_path / "p.npz"), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["converged"]


def test_a_lost_worker_in_solve_is_named_with_exit_code_3(monkeypatch):
    """eaglelab solve --workers M (process engine): a DistributedError from the launcher
    (a rank lost mid-run, as tests/test_distributed_engine.py provokes with SIGKILL) is an
    error line naming it and exit code 3, not a traceback."""
    import eaglelab.distributed.solve as dsolve
    from eaglelab.distributed.launch import DistributedError, RankOutcome

    def lost(*args, **kwargs):
        raise DistributedError("lost rank 1 (killed by signal 9) during round 12", [
            RankOutcome(0, 3, "communication", "lost rank 1 during round 12"),
            RankOutcome(1, -9, "lost")])

    monkeypatch.setattr(dsolve, "solve_distributed", lost)
    res = CliRunner().invoke(app, ["solve", "--workers", "2", "--n", "40", "--d", "30"])
    assert res.exit_code == 3, res.output
    assert "lost rank 1" in res.output and "Traceback" not in res.output


def test_a_wide_full_row_rank_matrix_is_refused_with_the_cli_option_that_solves_it(tmp_path):
    """Issue 17 item 9: a 12 x 30 matrix of full row rank has no spare row for B and D (its
    transpose none for C and D), so the default refuses and names `--on-full-rank shrink`,
    which the CLI now takes and which builds a rank-11 task that converges."""
    rng = np.random.default_rng(3)
    np.save(tmp_path / "wide.npy", rng.standard_normal((12, 30)))
    runner = CliRunner()
    res = runner.invoke(app, ["solve", str(tmp_path / "wide.npy")])
    assert res.exit_code == 2 and "--on-full-rank shrink" in " ".join(res.output.split())
    res = runner.invoke(app, ["solve", str(tmp_path / "wide.npy"), "--on-full-rank", "shrink",
                              "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output)
    assert rec["converged"] and rec["relative_error"] < 1e-8, rec
    res = runner.invoke(app, ["solve", "--on-full-rank", "shrink"])
    assert res.exit_code == 2 and "applies to a matrix file" in " ".join(res.output.split())
    res = runner.invoke(app, ["solve", str(tmp_path / "wide.npy"), "--on-full-rank", "pad"])
    assert res.exit_code == 2 and "on_full_rank" in res.output
