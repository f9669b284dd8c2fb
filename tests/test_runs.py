"""Seed blocks: runs of one configuration joined along the seed axis, and the experiments'
run cache training only the seeds it does not hold."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eaglelab.experiments._training import seed_blocks, trained_run
from eaglelab.experiments.base import Context
from eaglelab.train import cli_train, load_run, merge_runs, select_seeds
from eaglelab.train.runs import training_seconds

SMALL = {"batch": "32", "eval_size": "64", "eval_every": "3", "log_every": "3",
         "checkpoint_every": "3"}


def _run(tmp_path: Path, name: str, seeds: int, first: int, steps: int = 6, **over):
    overrides = {**SMALL, "seed": str(first), **over}
    return load_run(cli_train("unconstrained", seeds, steps, tmp_path / name,
                              overrides=overrides, quiet=True))


def test_a_seed_trained_alone_equals_the_same_seed_trained_in_a_block(tmp_path):
    both = _run(tmp_path, "both", 2, 0)
    merged = merge_runs([_run(tmp_path, "zero", 1, 0), _run(tmp_path, "one", 1, 1)])
    assert merged.config == both.config and merged.model.seeds == [0, 1]
    torch.testing.assert_close(merged.model.theta, both.model.theta, rtol=1e-5, atol=1e-6)
    assert [(m["kind"], m["step"]) for m in merged.metrics] == \
        [(m["kind"], m["step"]) for m in both.metrics]
    for a, b in zip(merged.metrics, both.metrics, strict=True):
        for key, value in b.items():
            if isinstance(value, list):     # per seed; per seed and layer for the ranks
                np.testing.assert_allclose(np.asarray(a[key], dtype=float),
                                           np.asarray(value, dtype=float), rtol=1e-4,
                                           err_msg=key)
    assert merged.name == "zero+one" and merged.parts == (tmp_path / "zero", tmp_path / "one")

    second = select_seeds(both, [1])
    assert second.config.seeds == (1,) and second.config.train.seed == 1
    torch.testing.assert_close(second.model.theta, both.model.theta[1:])
    assert all(len(m["mse"]) == 1 for m in second.metrics if m["kind"] == "eval")


def test_merge_refuses_what_is_not_one_configuration(tmp_path):
    a = _run(tmp_path, "a", 1, 0)
    with pytest.raises(ValueError, match="more than their seeds"):
        merge_runs([a, _run(tmp_path, "b", 1, 1, lr="0.01")])
    with pytest.raises(ValueError, match="overlap"):
        merge_runs([a, a])
    b = _run(tmp_path, "c", 1, 1)
    with pytest.raises(ValueError, match="at step 3"):
        merge_runs([a, dataclasses.replace(b, step=3, finished=False)])
    with pytest.raises(ValueError, match="outside"):
        select_seeds(a, [1])
    with pytest.raises(ValueError, match="final model"):
        merge_runs([a, dataclasses.replace(b, finished=False)])
    odd = dataclasses.replace(b, metrics=[{**m, "extra": [1]} for m in b.metrics])
    merged = merge_runs([a, odd])       # a field one block lacks is dropped, not padded
    assert all("extra" not in m for m in merged.metrics)
    assert [m["mse"] for m in merged.metrics if m["kind"] == "eval"] == [
        ma["mse"] + mb["mse"] for ma, mb in zip(a.metrics, b.metrics, strict=True)
        if ma["kind"] == "eval"]


def test_load_run_keeps_the_last_record_of_a_step(tmp_path):
    """A process killed between the step-0 evaluation and its first checkpoint leaves that
    record twice in metrics.jsonl; the run shows it once, as last written."""
    run = _run(tmp_path, "r", 1, 0)
    path = run.run_dir / "metrics.jsonl"
    first = json.loads(path.read_text().splitlines()[0])
    path.write_text(json.dumps({**first, "mse": [123.0]}) + "\n" + path.read_text())
    again = load_run(run.run_dir)
    keys = [(m["kind"], m["step"]) for m in again.metrics]
    assert keys == [(m["kind"], m["step"]) for m in run.metrics] and len(set(keys)) == len(keys)
    assert again.metrics[0]["mse"] == first["mse"]


def test_seed_blocks_reuse_the_longest_cached_run_at_each_seed():
    p, q, r = Path("p"), Path("q"), Path("r")
    done = {p, q}
    finished = done.__contains__
    assert seed_blocks({}, 0, 10, finished) == [(None, 0, 10)]
    assert seed_blocks({p: (0, 3)}, 0, 10, finished) == [(p, 0, 3), (None, 3, 10)]
    assert seed_blocks({p: (0, 10)}, 0, 3, finished) == [(p, 0, 3)]         # cut
    assert seed_blocks({p: (0, 3), q: (3, 5)}, 0, 10, finished) == \
        [(p, 0, 3), (q, 3, 5), (None, 5, 10)]
    assert seed_blocks({p: (0, 3), r: (0, 3)}, 0, 3, finished) == [(p, 0, 3)]  # finished
    assert seed_blocks({p: (0, 3), r: (0, 10)}, 0, 10, finished) == [(r, 0, 10)]  # resume
    assert seed_blocks({q: (3, 5)}, 0, 10, finished) == [(None, 0, 10)]


def test_more_seeds_train_only_the_new_seeds(tmp_path):
    def run(k):
        ctx = Context("t", tmp_path / "exp", list(range(k)), quick=True, progress=False)
        return trained_run(ctx, "unconstrained", steps=4, batch=32)

    two = run(2)
    (block,) = two.parts
    stamp = (block / "model.safetensors").stat().st_mtime_ns
    three = run(3)
    assert three.parts[0] == block and len(three.parts) == 2
    assert (block / "model.safetensors").stat().st_mtime_ns == stamp     # not retrained
    assert three.parts[1].name.startswith("unconstrained-1h-4x1from2-")
    assert three.model.seeds == [0, 1, 2]
    torch.testing.assert_close(three.model.theta[:2], two.model.theta)
    one = run(1)                                      # a cut of the first block
    assert one.parts == (block,) and one.model.seeds == [0]
    assert sorted(p.name for p in (tmp_path / "_runs").iterdir() if p.is_dir()) == \
        sorted(p.name for p in three.parts)
    other = Context("t", tmp_path / "exp", [0, 1], quick=True, progress=False)
    five = trained_run(other, "unconstrained", steps=5, batch=32)   # another config
    assert five.parts[0] != block
    assert set(other.trained_runs) == {five.parts[0].name}
    assert other.trained_runs[five.parts[0].name] > 0


def test_training_seconds_sum_the_resumed_segments(tmp_path):
    assert training_seconds(tmp_path) == 0.0
    lines = [{"step": 1, "elapsed_s": 2.0, "steps_per_s": 0.5},                # from 0
             {"step": 2, "elapsed_s": 5.0, "steps_per_s": 0.4},
             {"step": 2, "elapsed_s": 1.5, "steps_per_s": 1 / 1.5},            # from 1
             {"step": 3, "elapsed_s": 4.0, "steps_per_s": 0.5}]
    (tmp_path / "timing.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert training_seconds(tmp_path) == pytest.approx(9.0)
    # processes killed soon after their first log: the next one's elapsed time need not
    # fall, but it restarts at a step already logged or starts from another step
    lines = [{"step": 100, "elapsed_s": 2.0, "steps_per_s": 50.0},            # from 0
             {"step": 100, "elapsed_s": 3.0, "steps_per_s": 100 / 3},         # from 0 again
             {"step": 200, "elapsed_s": 6.0, "steps_per_s": 200 / 6},
             {"step": 1100, "elapsed_s": 7.0, "steps_per_s": 100 / 7}]        # from 1000
    (tmp_path / "timing.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert training_seconds(tmp_path) == pytest.approx(2.0 + 6.0 + 7.0)


def test_unfaithful_reason_names_the_failing_criterion():
    from eaglelab.experiments._training import unfaithful_reason

    seeds = {"fidelity_seeds": [[1e-4, 2e-4], [1e-4, 30.0], [1e-4, 3e-4]],
             "mse_seeds": [0.01, 0.02, 0.015], "mse_algorithm_seeds": [0.01, 8e4, 0.015]}
    base = {"faithful_median": True, "mse": 0.015, "learned": True, "zero_mse": 0.1,
            "fidelity_bound": 6e-4}
    why = unfaithful_reason(base, seeds)
    assert "above the paper's bound 6e-04 at layer(s) 2" in why
    assert "not below the model's own test MSE at layer(s) 2" in why
    assert "layer 2 is set by seed position 1 (fidelity 3.0e+01" in why
    assert "seed position" not in unfaithful_reason({**base, "faithful_median": False}, seeds)
    assert "not learned" in unfaithful_reason({**base, "learned": False}, seeds)
    # below the model's error but above the paper's bound: only the bound is named
    seeds["fidelity_seeds"] = [[1e-4, 2e-3]] * 3
    why = unfaithful_reason(base, seeds)
    assert "above the paper's bound" in why and "not below" not in why


def test_criterion_text_reports_the_bound_seeds_and_the_tasks_outside_the_range():
    from eaglelab.experiments._training import criterion_text

    s = {"fidelity": [1e-4, 2e-4], "mse": 2e-3, "out_of_range": [0, 0], "tasks": 1024,
         "fidelity_all_tasks": [1e-4, 2e-4], "mse_all_tasks": 2e-3, "fidelity_bound": 6e-4,
         "zero_mse": 0.1, "seeds": 2, "seeds_meeting_bound": 1, "seeds_below_mse": 2}
    assert criterion_text(s) == ("fidelity 1.0e-04 2.0e-04 (bound 6e-04); MSE 2.0e-03 "
                                 "(predicting zero 1.0e-01); seeds within the bound 1/2, below "
                                 "their MSE 2/2")
    s.update(out_of_range=[1, 9], fidelity_all_tasks=[1e-4, 1e9], mse_all_tasks=1e10)
    text = criterion_text(s)
    assert "1-9 of 1024 per seed outside" in text and "fidelity up to 1.0e+09" in text
    assert "MSE 1.0e+10" in text


def test_protocol_is_the_papers_by_default_and_names_its_options():
    from eaglelab.experiments._training import TrainedConfig, protocol

    cfg = TrainedConfig()
    assert protocol(cfg, 20000) == {"heads": 8, "prune_at": 10000, "normalise": "none"}
    assert protocol(cfg, 4000)["prune_at"] == 2000          # shorter runs prune half-way
    one = TrainedConfig(heads=1, prune_at=0, normalise="frobenius")
    assert protocol(one, 20000) == {"heads": 1, "prune_at": 0, "normalise": "frobenius"}
