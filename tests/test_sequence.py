"""The sequence view of a prompt and the causal sequence models on it: nothing of D reaches
a prediction, a query reads only the complete rows and the queries before it, and the
attention layers equal their float64 loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eaglelab.models.sequence import (
    ARCHITECTURES,
    CausalAttention,
    SequenceModel,
    attention_reference,
)
from eaglelab.tasks.sequence import read_completion, to_sequence

d, n, dp, np_ = 6, 5, 3, 2


def _prompts(batch: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, d + dp, n + np_, generator=g, dtype=dtype)


def test_the_sequence_view_is_the_rows_with_d_zeroed_and_a_query_flag():
    X = _prompts(4, 0)
    seq = to_sequence(X, d, n)
    assert seq.shape == (4, d + dp, n + np_ + 1)
    torch.testing.assert_close(seq[:, :d, :-1], X[:, :d])            # A, C rows as given
    torch.testing.assert_close(seq[:, d:, :n], X[:, d:, :n])          # B rows as given
    assert torch.all(seq[:, d:, n:-1] == 0) and torch.all(seq[:, :d, -1] == 0)
    assert torch.all(seq[:, d:, -1] == 1)
    assert torch.equal(to_sequence(X + 0, d, n), seq) and not torch.equal(seq[:, d:, n:-1],
                                                                          X[:, d:, n:])
    assert torch.equal(read_completion(-seq, d, n, np_), seq[:, d:, n:-1])
    with pytest.raises(ValueError, match="0 < d"):
        to_sequence(X, 0, n)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_no_information_leaks_from_d_and_queries_read_only_their_past(arch):
    """Changing D never changes a prediction (bit for bit); changing query j's B row
    changes the predictions of queries j.. only; changing a complete row changes every
    query's prediction."""
    model = SequenceModel(arch, d, n, dp, np_, layers=3, seed=1, dtype=torch.float64,
                          init_std=0.3)
    X = _prompts(5, 2)
    with torch.no_grad():
        base = model(X)
        Y = X.clone()
        Y[:, d:, n:] = torch.randn(5, dp, np_, dtype=torch.float64) * 1e3
        assert torch.equal(model(Y), base)
        for j in range(dp):
            Z = X.clone()
            Z[:, d + j, :n] += 1.0
            moved = (model(Z) - base).abs().amax(dim=(0, 2))      # per query
            assert torch.all(moved[:j] == 0) and torch.all(moved[j:] > 0), (j, moved)
        W = X.clone()
        W[:, 0, :] += 1.0
        assert torch.all((model(W) - base).abs().amax(dim=(0, 2)) > 0)
    assert base.shape == (5, dp, np_)


@pytest.mark.parametrize("softmax", [False, True])
def test_causal_attention_is_its_loop(softmax):
    layer = CausalAttention(n + np_ + 1, 4, softmax, seed=3, dtype=torch.float64, init_std=0.5)
    x = to_sequence(_prompts(3, 4), d, n)
    with torch.no_grad():
        got = layer(x).numpy()
    for b in range(3):
        want = attention_reference(layer, x[b].numpy())
        assert np.abs(got[b] - want).max() <= 1e-12 * np.abs(want).max()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_trains_in_float32_with_finite_gradients(arch):
    model = SequenceModel(arch, d, n, dp, np_, layers=2, seed=0)
    X = _prompts(8, 5, torch.float32)
    loss = (model(X) - X[:, d:, n:]).pow(2).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().max() > 0 for g in grads)
    with pytest.raises(ValueError, match="prompts must be"):
        model(X[:, :, :-1])
    with pytest.raises(ValueError, match="arch="):
        SequenceModel("gru", d, n, dp, np_)


def test_a_sequence_run_writes_its_folder_and_is_reused_only_for_its_config(tmp_path):
    import json

    from eaglelab.train.sequence import SequenceRunConfig, load_sequence_model, train_sequence

    cfg = SequenceRunConfig(arch="linear", layers=2, steps=30, batch=16, eval_every=10,
                            eval_size=64, log_every=10)
    model = train_sequence(cfg, tmp_path / "run", progress=False)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "environment.json", "metrics.jsonl", "model.safetensors"} <= files
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n")
             if x]
    assert [x["step"] for x in lines if x["kind"] == "eval"] == [10, 20, 30]
    loaded, back = load_sequence_model(tmp_path / "run")
    assert back == cfg
    stamp = (tmp_path / "run" / "model.safetensors").stat().st_mtime_ns
    again = train_sequence(cfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "model.safetensors").stat().st_mtime_ns == stamp
    for a, b, c in zip(model.parameters(), loaded.parameters(), again.parameters(),
                       strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    other = train_sequence(SequenceRunConfig(**{**cfg.__dict__, "steps": 20}), tmp_path / "run",
                           progress=False)
    assert load_sequence_model(tmp_path / "run")[1].steps == 20 and other is not None


def test_eaglelab_train_arch_trains_a_sequence_model_and_names_bad_settings(tmp_path):
    from typer.testing import CliRunner

    from eaglelab.cli import app
    from eaglelab.train.sequence import load_sequence_model

    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "--arch", "rec-delta", "--steps", "5", "--out",
                                   str(out), "--quiet", "train.batch=8", "model.layers=2"])
    assert res.exit_code == 0, res.output
    model, cfg = load_sequence_model(out)
    assert (cfg.arch, cfg.steps, cfg.batch, cfg.layers) == ("rec-delta", 5, 8, 2)
    for args, message in ((["--arch", "gru"], "is not known"),
                          (["--arch", "linear", "model.heads=2"], "takes only"),
                          (["--arch", "linear", "--seeds", "3"], "--seeds is not available")):
        res = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "x"), *args])
        assert res.exit_code != 0 and message in res.output, (args, res.output)
