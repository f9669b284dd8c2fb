"""The real engine: local gloo processes on loopback against the in-process simulation.

Every test here starts worker processes (forkserver: the first launch of the session pays
the torch import once, later groups start in about 0.1 s) and is guarded by a timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from eaglelab.cli.distributed_cmd import module_main as main
from eaglelab.distributed import (
    CommunicationError,
    DistributedError,
    LocalGroup,
    ShardError,
    eagle_rank,
    launch_local,
    solve_distributed,
    solve_shards,
    write_shards,
)
from eaglelab.solvers import distributed_gd, eagle_distributed
from eaglelab.tasks import diverse_problem

# Small problem with alpha = 0.35 and kappa_max = 100: EAGLE needs ~60 rounds at M = 3,
# its A^mu freeze after ~15, and GD stays far from converged in 150 rounds.
N, D_ROWS, CELLS = 60, 30, 5
CONFIGS = [
    {"method": "eagle", "tol": 1e-12, "max_iter": 300},
    {"method": "eagle", "tol": 1e-12, "max_iter": 300, "freeze_tol": 1e-10},
    {"method": "gd", "tol": 1e-12, "max_iter": 150},
    {"method": "eagle", "tol": 1e-12, "max_iter": 50, "eta": 1e200},  # overflows in round 2
]


def _problem(workers: int, seed: int = 1):
    return diverse_problem(N, D_ROWS, workers, alpha=1.0 if workers == 1 else 0.35,
                           cells=CELLS, kappa=100, seed=seed)


def _configs_job(comm, directory, configs):
    return [solve_shards(comm, directory, **cfg) for cfg in configs]


def _arrays_job(comm, blocks):
    A, B, C = blocks[comm.rank]
    return eagle_rank(comm, A, B, C, max_iter=5)


def _simulate(p, cfg):
    kw = {k: v for k, v in cfg.items() if k != "method"}
    with threadpool_limits(1):
        if cfg["method"] == "gd":
            return distributed_gd(p.A, p.B, p.C, partition=p.partition, reference=p.D, **kw)
        return eagle_distributed(p.A, p.B, p.C, partition=p.partition, reference=p.D, **kw)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_engine_matches_simulation(tmp_path, workers):
    p = _problem(workers)
    write_shards(tmp_path, p.A, p.B, p.C, partition=p.partition, reference=p.D, report=False)
    per_rank = launch_local(_configs_job, workers, (str(tmp_path), CONFIGS), timeout=20)
    d, dp, np_ = p.A.shape[0], p.B.shape[0], p.C.shape[1]
    for cfg, results in zip(CONFIGS, zip(*per_rank, strict=True), strict=True):
        ref = _simulate(p, cfg)
        res = results[0]
        # same arithmetic as the simulation, up to the order gloo adds the M terms
        scale = max(1.0, float(np.abs(ref.D).max()))
        assert np.abs(res.D - ref.D).max() <= 1e-12 * scale, cfg
        assert res.iterations == ref.iterations and res.converged == ref.converged, cfg
        assert res.status.split(":")[0] == ref.status.split(":")[0], (res.status, ref.status)
        np.testing.assert_allclose(res.history.error, ref.history.error, rtol=1e-9, atol=1e-13)
        assert res.info.get("frozen_at") == ref.info.get("frozen_at")
        # every rank took the same decisions on bitwise identical data
        for other in results[1:]:
            assert np.array_equal(other.D, res.D) and other.iterations == res.iterations
            assert other.history.change == res.history.change
        c = res.info["comm"]
        assert c["ranks_agree"]
        expected = (d + dp) * np_ if workers > 1 else 0
        assert ref.floats_sent_per_worker == expected
        assert res.floats_sent_per_worker == c["floats_per_round_per_rank"] == expected
        assert c["expected_floats_per_round"] == expected
        calls = res.iterations if not res.status.startswith("diverged at") else res.iterations + 1
        for rank_stats in c["per_rank"]:
            if workers > 1:
                assert rank_stats["floats_per_round"] == [expected]        # measured per call
                assert rank_stats["bytes_per_round"] == [8 * expected]
                assert rank_stats["round_calls"] == calls
            assert rank_stats["floats_total"] == expected * (calls if workers > 1 else 0)
        assert res.total_floats_sent == workers * expected * (calls if workers > 1 else 0)
    eagle, frozen, gd, blown = per_rank[0]
    assert eagle.converged and eagle.relative_error < 1e-9
    assert frozen.info["frozen_at"] and all(f is not None for f in frozen.info["frozen_at"])
    assert not gd.converged and gd.iterations == 150
    assert blown.status.startswith("diverged at round 2") and blown.iterations == 1


@pytest.mark.timeout(60)
def test_solve_distributed_torch_input_random_partition():
    p = _problem(3, seed=4)
    rng = np.random.default_rng(0)
    order = rng.permutation(N)
    A, B, C = (torch.from_numpy(X) for X in (p.A[:, order], p.B[:, order], p.C))
    partition = [np.sort(np.flatnonzero(np.isin(order, J))) for J in p.partition]
    res = solve_distributed(A, B, C, workers=3, partition=partition, reference=p.D, tol=1e-12,
                            max_iter=300, timeout=20)
    with threadpool_limits(1):
        ref = eagle_distributed(A, B, C, partition=partition, reference=p.D, tol=1e-12,
                                max_iter=300)
    assert isinstance(res.D, torch.Tensor) and res.D.dtype == torch.float64
    assert torch.allclose(res.D, ref.D, rtol=0, atol=1e-12) and res.iterations == ref.iterations
    assert res.info["comm"]["per_rank"][1]["floats_per_round"] == [(D_ROWS + 2) * 2]
    assert res.info["wall_seconds"] >= res.seconds
    with pytest.raises(ValueError, match="partition has 3 blocks but workers=2"):
        solve_distributed(A, B, C, workers=2, partition=partition)
    with pytest.raises(ValueError, match="freeze_tol"):
        solve_distributed(A, B, C, workers=2, method="gd", freeze_tol=1e-10)


@pytest.mark.timeout(60)
def test_env_rendezvous_like_torchrun(tmp_path):
    """env:// (MASTER_ADDR/PORT, RANK, WORLD_SIZE: what torchrun sets) gives the same run."""
    p = _problem(2)
    write_shards(tmp_path, p.A, p.B, p.C, partition=p.partition, reference=p.D, report=False)
    with LocalGroup(_configs_job, 2, (str(tmp_path), CONFIGS[:1]), timeout=20,
                    rendezvous="env") as g:
        env_run = g.wait()
    file_run = launch_local(_configs_job, 2, (str(tmp_path), CONFIGS[:1]), timeout=20)
    assert np.array_equal(env_run[0][0].D, file_run[0][0].D)


def _long_run(tmp_path, workers):
    p = _problem(workers)
    write_shards(tmp_path, p.A, p.B, p.C, partition=p.partition, report=False)
    # tol=1e-300 never triggers: the run goes on until a rank is lost (or the test times out)
    return (str(tmp_path), [{"method": "gd", "tol": 1e-300, "max_iter": 10**7}])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("victim", [2, 0])
def test_killed_rank_is_named_and_nothing_hangs(tmp_path, victim):
    timeout = 6.0
    with LocalGroup(_configs_job, 3, _long_run(tmp_path, 3), timeout=timeout) as g:
        assert g.wait_ready(30)
        time.sleep(0.4)                                   # let it run some rounds
        killed_at = time.monotonic()
        os.kill(g.pids[victim], signal.SIGKILL)
        with pytest.raises(DistributedError) as info:
            g.wait()
        elapsed = time.monotonic() - killed_at
        pids = g.pids
    err = info.value
    assert elapsed < timeout
    assert err.lost_ranks == [victim]
    assert f"lost rank {victim}" in str(err)
    for o in err.outcomes:
        if o.rank == victim:
            assert o.kind == "lost" and o.exitcode == -signal.SIGKILL
        else:
            assert o.kind == "communication" and o.exitcode == 3
            assert re.search(rf"lost rank {victim} \(.*\) during round \d+", o.message)
    assert all(_gone(pid) for pid in pids)                 # no orphans


@pytest.mark.timeout(60)
def test_stopped_rank_is_named_within_timeout(tmp_path):
    """A hung (SIGSTOP) peer: no TCP reset, so the survivors rely on the collective timeout
    and the heartbeat; they still exit within `timeout`, naming it."""
    timeout = 3.0
    with LocalGroup(_configs_job, 3, _long_run(tmp_path, 3), timeout=timeout) as g:
        assert g.wait_ready(30)
        time.sleep(0.3)
        stopped_at = time.monotonic()
        os.kill(g.pids[1], signal.SIGSTOP)
        with pytest.raises(DistributedError) as info:
            g.wait()
        elapsed = time.monotonic() - stopped_at
        pids = g.pids
    assert elapsed < timeout + 1.0                          # + process exit and polling
    survivors = [o for o in info.value.outcomes if o.rank != 1]
    # the first survivor to notice sees the missing heartbeat; once it exits, the launcher
    # kills the stopped rank, so a later survivor may instead find its process gone
    assert all(o.kind == "communication" and re.search(
        r"lost rank 1 \((no heartbeat|its process \d+ on this host is gone)", o.message)
        for o in survivors), [o.message for o in survivors]
    assert any("lost rank 1 (no heartbeat" in o.message for o in survivors)
    assert info.value.lost_ranks == [1]
    assert all(_gone(pid) for pid in pids)


def _shards(tmp_path, workers=3, seed=1, d=D_ROWS, name="shards"):
    p = diverse_problem(N, d, workers, alpha=0.35, cells=CELLS, kappa=100, seed=seed)
    return write_shards(tmp_path / name, p.A, p.B, p.C, partition=p.partition, report=False)


@pytest.mark.timeout(60)
def test_bad_shard_files_fail_before_any_round(tmp_path):
    s = _shards(tmp_path)
    target = s.paths[1]
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0xFF                                 # flip one byte of A's data
    target.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match=r"cannot start: rank 1: ShardError: .*shard-00001"):
        launch_local(_configs_job, 3, (str(s.directory), CONFIGS[:1]), timeout=20)
    target.write_bytes(bytes(raw[: len(raw) // 3]))            # truncated
    with pytest.raises(ShardError, match=r"rank 1: .*truncated or not an npz"):
        launch_local(_configs_job, 3, (str(s.directory), CONFIGS[:1]), timeout=20)
    target.unlink()
    with pytest.raises(ShardError, match=r"rank 1: .*missing"):
        launch_local(_configs_job, 3, (str(s.directory), CONFIGS[:1]), timeout=20)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("world", [2, 4])
def test_world_size_must_match_the_shards(tmp_path, world):
    s = _shards(tmp_path)
    with pytest.raises(ShardError,
                       match=rf"written for 3 workers but the run has world size {world}"):
        launch_local(_configs_job, world, (str(s.directory), CONFIGS[:1]), timeout=20)


@pytest.mark.timeout(60)
def test_mismatched_shapes_across_ranks(tmp_path):
    a = _shards(tmp_path, name="a")
    b = _shards(tmp_path, d=D_ROWS - 1, name="b", seed=2)
    os.replace(b.paths[2], a.paths[2])                      # rank 2 gets a d = 29 block
    with pytest.raises(ValueError, match=r"d \(rows of A and C\) differs across ranks "
                                         r"\(30 on ranks 0, 1, 29 on rank 2\)"):
        launch_local(_configs_job, 3, (str(a.directory), CONFIGS[:1]), timeout=20)
    e = _shards(tmp_path, name="e")
    c = _shards(tmp_path, name="c", seed=3)                 # same shapes, another problem
    os.replace(c.paths[0], e.paths[0])
    with pytest.raises(ValueError, match=r"problem id .* differs across ranks"):
        launch_local(_configs_job, 3, (str(e.directory), CONFIGS[:1]), timeout=20)
    # the same check guards rank-local arrays handed to eagle_rank directly
    rng = np.random.default_rng(0)
    blocks = [(rng.standard_normal((5, 4)), rng.standard_normal((1, 4)), np.ones((5, 2))),
              (rng.standard_normal((5, 4)), rng.standard_normal((1, 4)), np.ones((5, 3)))]
    with pytest.raises(ValueError, match=r"n' \(columns of C\) differs across ranks"):
        launch_local(_arrays_job, 2, (blocks,), timeout=20)


@pytest.mark.timeout(60)
def test_main_entry_point(tmp_path, capsys):
    p = _problem(2)
    write_shards(tmp_path, p.A, p.B, p.C, partition=p.partition, reference=p.D, report=False)
    out_file = tmp_path / "out.npz"
    code = main(["--shards", str(tmp_path), "--workers", "2", "--json", "--tol", "1e-12",
                 "--max-iter", "300", "--output", str(out_file)])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["converged"] and record["relative_error"] < 1e-9
    assert [r["floats_per_round"] for r in record["comm"]["per_rank"]] == [[64], [64]]
    assert np.load(out_file)["D"].shape == (2, 2)
    assert main(["--shards", str(tmp_path)]) == 2                 # neither torchrun nor --workers
    assert "pass --workers M" in capsys.readouterr().err
    assert main(["--shards", str(tmp_path), "--workers", "3"]) == 2
    assert "written for 2 workers" in capsys.readouterr().err


def test_comm_error_carries_lost_ranks():
    err = CommunicationError("lost rank 2", [2], "round 3")
    assert err.lost_ranks == [2] and err.phase == "round 3"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_torchrun(tmp_path):
    """The documented command, for real (slow: every rank imports torch afresh)."""
    import subprocess
    import sys

    p = _problem(2)
    write_shards(tmp_path, p.A, p.B, p.C, partition=p.partition, reference=p.D, report=False)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "-m", "eaglelab.distributed", "--shards", str(tmp_path), "--json", "--tol", "1e-12",
           "--max-iter", "300"]
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=170, env=env)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout[out.stdout.index("{"):])
    assert record["converged"] and record["comm"]["floats_per_round_per_rank"] == 64


def _processes_with_env(marker: str) -> list[int]:
    """pids of the live processes whose environment holds `marker` (our launcher's TMPDIR:
    the launcher, its forkserver, resource tracker and workers all inherit it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes() and not _gone(int(proc.name)):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_launcher_leaves_no_processes_or_files(tmp_path, sig):
    """`timeout` and job schedulers send SIGTERM; SIGKILL cannot be handled at all.  Either
    way the workers, the forkserver and the shard copies must go (they used to compute on
    until max_iter, with the shards left in /tmp)."""
    import subprocess
    import sys

    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    script = ("from eaglelab.distributed import solve_distributed\n"
              "from eaglelab.tasks import conditioned_problem\n"
              "p = conditioned_problem(1200, 1200, kappa=1e12, seed=0)\n"
              "solve_distributed(p.A, p.B, p.C, workers=3, tol=1e-300, max_iter=10**6)\n")
    env = dict(os.environ, TMPDIR=str(tmp), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while len(list(tmp.glob("eaglelab-run-*/rank-*.ready"))) < 3:
        assert proc.poll() is None and time.time() < deadline, "the workers never started"
        time.sleep(0.1)
    assert len(_processes_with_env(str(tmp))) >= 4            # launcher, forkserver, 3 ranks
    proc.send_signal(sig)
    proc.wait(timeout=30)
    deadline = time.time() + 15
    while (_processes_with_env(str(tmp)) or any(tmp.iterdir())) and time.time() < deadline:
        time.sleep(0.1)
    assert _processes_with_env(str(tmp)) == []
    assert list(tmp.iterdir()) == []
