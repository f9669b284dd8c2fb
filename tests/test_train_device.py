"""train.device: the option, its errors, moving a run between devices, and (where a GPU is
present) CUDA training against the CPU run of the same seed."""

from __future__ import annotations

import json

import pytest
import torch

from eaglelab.train import TrainConfig, cli_train, load_run, resolve_config
from eaglelab.train.runs import seedless

SMALL = {"batch": "64", "eval_size": "128", "eval_every": "5", "log_every": "5",
         "checkpoint_every": "5", "threads": "1"}
HAS_CUDA = torch.cuda.is_available()


def _theta(run_dir):
    return load_run(run_dir).model.theta.detach().cpu()


def test_device_cpu_is_the_default_and_bit_identical(tmp_path):
    a = cli_train("distributed", 2, 12, tmp_path / "a", overrides=SMALL, quiet=True)
    b = cli_train("distributed", 2, 12, tmp_path / "b",
                  overrides={**SMALL, "train.device": "cpu"}, quiet=True)
    assert TrainConfig().device == "cpu"
    assert torch.equal(_theta(a), _theta(b))


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "", "cpu:0"])
def test_an_unknown_device_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="train.device"):
        TrainConfig(device=bad)


@pytest.mark.skipif(HAS_CUDA, reason="checks the message of a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no CUDA device"):
        cli_train("unconstrained", 1, 2, tmp_path / "run",
                  overrides={**SMALL, "train.device": "cuda"}, quiet=True)


def test_execution_fields_do_not_change_what_a_run_is(tmp_path):
    """A cached run is reused and a run resumed wherever it trains: device and threads are
    not part of its identity, and --resume may change them (nothing else)."""
    base = resolve_config("unconstrained", 1, 10, SMALL)
    moved = resolve_config("unconstrained", 1, 10,
                           {**SMALL, "train.device": "cuda", "train.threads": "2"})
    assert seedless(base) == seedless(moved)
    out = cli_train("unconstrained", 1, 5, tmp_path / "run", overrides=SMALL, quiet=True)
    with pytest.raises(ValueError, match=r"not allowed.*train\.device"):
        cli_train(None, None, 10, out, resume=True, overrides={"train.lr": "0.5"}, quiet=True)
    cli_train(None, None, 10, out, resume=True, overrides={"train.prefetch": "true"}, quiet=True)
    assert json.loads((out / "config.json").read_text())["train"]["prefetch"] is True
    assert load_run(out).step == 10


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("regime", ["unconstrained", "compute-limited", "distributed"])
def test_cuda_training_follows_the_cpu_run_and_moves_between_devices(tmp_path, regime):
    """The same seed on CUDA and on the CPU: the same data stream, weights equal to float32
    rounding after 10 steps (TF32 off); a CUDA checkpoint resumes on the CPU."""
    torch.backends.cuda.matmul.allow_tf32 = False
    cpu = cli_train(regime, 2, 10, tmp_path / "cpu", overrides=SMALL, quiet=True)
    gpu = cli_train(regime, 2, 5, tmp_path / "gpu",
                    overrides={**SMALL, "train.device": "cuda"}, quiet=True)
    (gpu / "model.safetensors").unlink()              # continue it on the CPU to step 10
    cli_train(None, None, 10, gpu, resume=True, overrides={"train.device": "cpu"}, quiet=True)
    a, b = _theta(cpu), _theta(gpu)
    assert float((a - b).norm() / a.norm()) < 1e-3
