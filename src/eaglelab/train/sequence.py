"""Training of the causal sequence models (`models.sequence`) on masked-block completion,
with the transformer's recipe (brief section 5; `train.loop` for the linear transformer):
Adam, a fresh batch of the paper's training distribution every step, the loss the mean
squared error of the predicted D, global-norm clipping, a non-finite step not applied.

One model, one seed per run folder: config.json (`SequenceRunConfig`), environment.json,
metrics.jsonl (train loss every `log_every` steps, the median and mean held-out MSE every
`eval_every`) and, when finished, model.safetensors.  A finished folder of the same config
is loaded instead of retrained; any other folder content is replaced.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from eaglelab.models.sequence import SequenceModel
from eaglelab.tasks.training import TrainingTaskConfig, training_batch
from eaglelab.train.checkpoint import environment, write_text_atomic

__all__ = ["SequenceRunConfig", "train_sequence", "load_sequence_model"]

MODEL = "model.safetensors"


@dataclass(frozen=True)
class SequenceRunConfig:
    arch: str = "linear"
    layers: int = 4
    steps: int = 20000
    batch: int = 1024
    lr: float = 1e-3
    clip: float = 0.1
    seed: int = 0
    init_std: float = 0.02
    eval_every: int = 500
    eval_size: int = 2048
    eval_seed: int = 1234567
    log_every: int = 100
    task: TrainingTaskConfig = field(default_factory=TrainingTaskConfig)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SequenceRunConfig:
        raw = json.loads(text)
        return cls(**{**raw, "task": TrainingTaskConfig(**raw["task"])})


def _model(cfg: SequenceRunConfig) -> SequenceModel:
    t = cfg.task
    return SequenceModel(cfg.arch, t.d, t.n, t.d_prime, t.n_prime, layers=cfg.layers,
                         seed=cfg.seed, init_std=cfg.init_std)


def load_sequence_model(run_dir: Path) -> tuple[SequenceModel, SequenceRunConfig]:
    from safetensors.torch import load_file

    cfg = SequenceRunConfig.from_json((Path(run_dir) / "config.json").read_text())
    model = _model(cfg)
    model.load_state_dict(load_file(str(Path(run_dir) / MODEL)))
    return model, cfg


def _held_out_mse(model: SequenceModel, X: torch.Tensor) -> tuple[float, float]:
    t_d, t_n = model.d, model.n
    with torch.no_grad():
        err = (model(X) - X[:, t_d:, t_n:]).double().square().flatten(1).mean(dim=1)
    return float(err.median()), float(err.mean())


def train_sequence(cfg: SequenceRunConfig, run_dir: Path, progress: bool = True
                   ) -> SequenceModel:
    """The trained model of `cfg` in run_dir (trained there unless a finished run of the
    same config is already in it)."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    if (run_dir / MODEL).exists():
        try:
            model, old = load_sequence_model(run_dir)
            if old == cfg:
                return model
        except (ValueError, TypeError, KeyError, RuntimeError, json.JSONDecodeError):
            pass
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    write_text_atomic(run_dir / "config.json", cfg.to_json())
    write_text_atomic(run_dir / "environment.json", json.dumps(environment(), indent=2))
    model = _model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    X_eval = training_batch(cfg.eval_size, cfg.task,
                            generator=torch.Generator().manual_seed(cfg.eval_seed))
    t = cfg.task
    lines, acc, count, skipped, t0 = [], 0.0, 0, 0, time.perf_counter()
    steps = range(1, cfg.steps + 1)
    if progress:
        from rich.progress import track

        steps = track(steps, description=f"train {cfg.arch}", transient=True)
    for step in steps:
        X = training_batch(cfg.batch, cfg.task, generator=gen)
        loss = (model(X) - X[:, t.d:, t.n:]).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        if torch.isfinite(loss) and torch.isfinite(norm):
            opt.step()
            acc, count = acc + float(loss.detach()), count + 1
        else:
            skipped += 1
        if step % cfg.log_every == 0:
            lines.append({"kind": "train", "step": step, "loss": acc / max(count, 1),
                          "skipped_total": skipped})
            acc, count = 0.0, 0
        if step % cfg.eval_every == 0 or step == cfg.steps:
            med, mean = _held_out_mse(model, X_eval)
            lines.append({"kind": "eval", "step": step, "mse_median": med, "mse": mean,
                          "seconds": time.perf_counter() - t0})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
              str(run_dir / MODEL))
    return model
