"""Spectral measures of weight products over training (`train.spectra`): effective rank and
subspace distance on matrices with known answers, the eval records carrying the effective
ranks, and the snapshots a run with train.snapshots writes and reads back."""

from __future__ import annotations

import numpy as np
import torch

from eaglelab.train import cli_train, load_run
from eaglelab.train.spectra import (
    effective_rank,
    load_snapshots,
    subspace_distance,
)

SMALL = {"task.n": "6", "task.d": "6", "task.s": "3", "train.batch": "32",
         "train.eval_size": "64", "train.eval_every": "5"}


def test_effective_rank_and_subspace_distance_have_their_known_values():
    rng = np.random.default_rng(0)
    assert abs(effective_rank(np.eye(7)) - 7) < 1e-12
    u = rng.standard_normal(7)
    assert abs(effective_rank(np.outer(u, u)) - 1) < 1e-9
    assert abs(effective_rank(np.diag([5.0, 1, 1, 1]), drop_top=1) - 3) < 1e-12
    Q = np.linalg.qr(rng.standard_normal((8, 8)))[0]
    A = Q[:, :3] @ np.diag([3.0, 2, 1]) @ Q[:, :3].T
    B = Q[:, :3] @ np.diag([1.0, 5, 2]) @ Q[:, :3].T        # same subspace, other values
    C = Q[:, 3:6] @ np.diag([3.0, 2, 1]) @ Q[:, 3:6].T      # an orthogonal subspace
    assert subspace_distance(A, B, 3) < 1e-7
    assert abs(subspace_distance(A, C, 3) - 1) < 1e-7


def test_runs_log_effective_ranks_and_snapshots_on_request(tmp_path):
    plain = load_run(cli_train("unconstrained", 1, 10, tmp_path / "plain", overrides=SMALL,
                               quiet=True))
    evals = [m for m in plain.metrics if m["kind"] == "eval"]
    assert all(len(m["erank_qk"]) == 1 and len(m["erank_qk"][0]) == 4 for m in evals)
    assert not (tmp_path / "plain" / "snapshots").exists()
    run_dir = cli_train("unconstrained", 2, 10, tmp_path / "snap",
                        overrides={**SMALL, "train.snapshots": "true"}, quiet=True)
    snaps = load_snapshots(run_dir)
    assert [s for s, _ in snaps] == [0, 5, 10]
    final = load_run(run_dir).model.products()
    assert np.allclose(snaps[-1][1]["W_QK"], final["W_QK"].double().numpy(), atol=1e-6)
    last = [m for m in load_run(run_dir).metrics if m["kind"] == "eval"][-1]
    W = final["W_QK"][1, 2, 0].double().numpy()
    assert abs(last["erank_qk"][1][2] - effective_rank(W)) < 1e-6
    assert torch.isfinite(final["W_VP"]).all()
