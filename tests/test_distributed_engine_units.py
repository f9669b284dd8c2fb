"""In-process parts of eaglelab.distributed: shard files, partitions, alpha, the
controlled-alpha problems, the communicator bookkeeping, and the public API."""

from __future__ import annotations

import json

import numpy as np
import pytest

import eaglelab.distributed as dist_pkg
from eaglelab.cli.distributed_cmd import module_main
from eaglelab.distributed import (
    Comm,
    ShardError,
    eagle_rank,
    gd_rank,
    make_partition,
    partition_report,
    read_shard,
    write_shards,
)
from eaglelab.distributed.comm import liveness_timing
from eaglelab.distributed.shards import MANIFEST, read_manifest, shard_filename
from eaglelab.solvers import distributed_gd, eagle_distributed
from eaglelab.tasks import diverse_problem, max_alpha_below_one


def test_public_api_is_pinned():
    assert sorted(dist_pkg.__all__) == sorted([
        "Comm", "CommunicationError", "DistributedError", "LocalGroup",
        "PartitionReport", "RankOutcome", "Shard", "ShardError", "ShardHeader",
        "eagle_rank", "gd_rank", "init_comm", "launch_local",
        "make_partition", "partition_report", "read_shard", "result_to_json",
        "solve_distributed", "solve_from_shards", "solve_shards", "write_shards"])
    for name in dist_pkg.__all__:
        assert getattr(dist_pkg, name) is not None


@pytest.mark.parametrize(("workers", "alpha"), [(1, 1.0), (2, 1.0), (2, 0.5), (2, 0.1),
                                                 (3, 1.0), (3, 2 / 3), (3, 0.35), (3, 0.01),
                                                 (5, 0.3), (8, 1.0)])
def test_diverse_problem_has_the_prescribed_alpha_and_kappa(workers, alpha):
    p = diverse_problem(96, 40, workers, alpha=alpha, kappa=50.0, cells=4, seed=3)
    rep = partition_report(p.A, p.partition)
    assert rep.alpha == pytest.approx(alpha, rel=1e-9)
    assert rep.kappa_max == pytest.approx(50.0, rel=1e-9)
    assert all(k == pytest.approx(50.0, rel=1e-9) for k in rep.local_condition)
    assert rep.sizes == [J.size for J in p.partition]
    # noiseless: D* = B A^+ C
    np.testing.assert_allclose(p.B @ np.linalg.pinv(p.A) @ p.C, p.D, atol=1e-12)


def test_alpha_between_max_and_one_is_impossible():
    assert max_alpha_below_one(3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"alpha=0.83 cannot be built with 3 workers"):
        diverse_problem(96, 40, 3, alpha=0.83, cells=4)
    # the bound (M-1)/M holds for any partition: a random one stays below it
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 12)) @ np.diag(rng.uniform(0.1, 1, 12))
    assert partition_report(A, make_partition(12, 3, kind="random", seed=1)).alpha <= 2 / 3 + 1e-12


def test_make_partition_kinds():
    assert [J.tolist() for J in make_partition(7, 3)] == [[0, 1, 2], [3, 4], [5, 6]]
    rnd = make_partition(10, 3, kind="random", seed=0)
    assert sorted(np.concatenate(rnd).tolist()) == list(range(10))
    blocks = make_partition(5, assignment=[1, 0, 1, 2, 0])
    assert [J.tolist() for J in blocks] == [[1, 4], [0, 2], [3]]
    with pytest.raises(ValueError, match="no column to worker"):
        make_partition(4, assignment=[0, 2, 2, 0])
    with pytest.raises(ValueError, match="one per column"):
        make_partition(4, assignment=[0, 1])
    with pytest.raises(ValueError, match="not both"):
        make_partition(4, 2, assignment=[0, 1, 0, 1])


@pytest.fixture
def shards(tmp_path):
    p = diverse_problem(30, 12, 3, alpha=0.35, cells=2, kappa=10.0, seed=0)
    s = write_shards(tmp_path, p.A, p.B, p.C, partition=p.partition, reference=p.D)
    return p, s


def test_shard_round_trip(shards):
    p, s = shards
    assert [f.name for f in s.paths] == [shard_filename(mu, 3) for mu in range(3)]
    assert s.report is not None and s.report.alpha == pytest.approx(0.35)
    manifest = read_manifest(s.directory)
    assert manifest["world_size"] == 3 and manifest["report"]["alpha"] == pytest.approx(0.35)
    for mu, J in enumerate(p.partition):
        sh = read_shard(s.directory, mu, 3)
        assert sh.header.worker == mu and sh.header.n == 30 and sh.header.n_local == J.size
        assert sh.header.problem_id == s.problem_id
        np.testing.assert_array_equal(sh.A, p.A[:, J])
        np.testing.assert_array_equal(sh.B, p.B[:, J])
        np.testing.assert_array_equal(sh.C, p.C)
        np.testing.assert_array_equal(sh.columns, J)
        np.testing.assert_array_equal(sh.reference, p.D)
    with pytest.raises(ValueError, match="already holds shards"):
        write_shards(s.directory, p.A, p.B, p.C, workers=2)
    write_shards(s.directory, p.A, p.B, p.C, workers=2, overwrite=True, report=False)
    assert read_manifest(s.directory)["world_size"] == 2
    assert sorted(f.name for f in s.directory.glob("shard-*.npz")) == \
        [shard_filename(mu, 2) for mu in range(2)]


def test_shard_errors_name_the_file_and_the_fix(shards, tmp_path):
    p, s = shards
    with pytest.raises(ShardError, match="written for 3 workers but the run has world size 2"):
        read_shard(s.directory, 0, 2)
    with pytest.raises(ShardError, match="not a shard directory"):
        read_shard(tmp_path / "nowhere", 0)
    raw = bytearray(s.paths[2].read_bytes())
    s.paths[2].write_bytes(bytes(raw[:100]))
    with pytest.raises(ShardError, match=r"shard-00002-of-00003.npz: cannot read shard file"):
        read_shard(s.directory, 2)
    # a consistent-looking file whose data was edited: the checksum catches it
    with np.load(s.paths[1]) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["A"] = arrays["A"] * 2
    np.savez(s.paths[1], **arrays)
    with pytest.raises(ShardError, match="checksum mismatch"):
        read_shard(s.directory, 1)
    header = json.loads(str(arrays["header"]))
    header["d"] = 13
    arrays["header"] = np.array(json.dumps(header))
    np.savez(s.paths[1], **arrays)
    with pytest.raises(ShardError, match=r"A has shape \(12, 10\) but the header says \(13, 10\)"):
        read_shard(s.directory, 1)
    (s.directory / MANIFEST).write_text("{not json")
    with pytest.raises(ShardError, match="cannot read the manifest"):
        read_shard(s.directory, 0)


def test_write_shards_rejects_bad_input(tmp_path):
    A = np.zeros((4, 6))
    A[:, :3] = 1.0
    with pytest.raises(ValueError, match="worker 1 would hold an all-zero block"):
        write_shards(tmp_path, A, np.ones((1, 6)), np.ones((4, 1)), workers=2)
    with pytest.raises(ValueError, match="reference must be"):
        write_shards(tmp_path, np.ones((4, 6)), np.ones((1, 6)), np.ones((4, 1)), workers=2,
                     reference=np.ones((2, 2)))


def test_shard_command_writes_and_reports(tmp_path, capsys):
    p = diverse_problem(30, 12, 3, alpha=0.35, cells=2, kappa=10.0, seed=0)
    np.savez(tmp_path / "problem.npz", A=p.A, B=p.B, C=p.C, D=p.D)
    np.savez(tmp_path / "no_c.npz", A=p.A, B=p.B)
    assert module_main(["shard", str(tmp_path / "no_c.npz"), "--workers", "3", "--out",
                        str(tmp_path / "x")]) == 2
    assert "lacks arrays ['C']" in capsys.readouterr().err
    assert module_main(["shard", str(tmp_path / "problem.npz"), "--workers", "3", "--out",
                        str(tmp_path / "s")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["workers"] == 3 and record["report"]["alpha"] == pytest.approx(0.35)
    assert read_shard(tmp_path / "s", 2, 3).reference is not None


def test_world_of_one_needs_no_group_and_sends_nothing():
    p = diverse_problem(30, 12, 1, cells=2, kappa=10.0, seed=0)
    comm = Comm()
    res = eagle_rank(comm, p.A, p.B, p.C, reference=p.D, tol=1e-12, max_iter=200)
    ref = eagle_distributed(p.A, p.B, p.C, workers=1, reference=p.D, tol=1e-12, max_iter=200)
    np.testing.assert_array_equal(res.D, ref.D)
    assert res.iterations == ref.iterations and res.floats_sent_per_worker == 0
    # gradient descent too: one round shared by engine and simulation (the engine's GD used
    # to re-form the Gram matrix every round and drifted by rounding)
    g = gd_rank(comm, p.A, p.B, p.C, reference=p.D, tol=1e-12, max_iter=50)
    g_ref = distributed_gd(p.A, p.B, p.C, workers=1, reference=p.D, tol=1e-12, max_iter=50)
    np.testing.assert_array_equal(g.D, g_ref.D)
    assert g.history.change == g_ref.history.change
    assert comm.stats() == {} and res.info["comm"]["total_bytes"] == 0
    with pytest.raises(ValueError, match="worker 0 holds an all-zero block of A"):
        eagle_rank(comm, np.zeros((3, 4)), np.ones((1, 4)), np.ones((3, 1)))
    with pytest.raises(ValueError, match="method="):
        dist_pkg.solve_shards(comm, "nowhere", method="cg")


@pytest.mark.parametrize("timeout", [0.5, 3.0, 60.0, 600.0])
def test_liveness_timing_fits_in_the_timeout(timeout):
    pg, interval, stale = liveness_timing(timeout)
    assert 0 < interval < stale
    assert pg + stale <= max(timeout, 0.5 + stale)
