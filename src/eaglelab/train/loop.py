"""The training loop: vectorised seeds, per-seed Adam and clipping, spike counting, resume.

Reading order: `Trainer.run` is the whole story - draw a batch per seed, per-seed loss,
one backward for all seeds (the seeds' losses are summed, so each seed's gradient is its
own), per-seed global-norm clipping, spike check, per-seed Adam, then logging, evaluation
and checkpoints.  Every per-seed operation acts row by row on (K, P) tensors, so a K-seed
run follows the same arithmetic as K single-seed runs.

Spikes (the paper sees loss spikes when ||A||_2 is atypically large).  A seed's step is a
*spike* when its loss or gradient is non-finite, or, after `spike_warmup` steps, when its
loss exceeds `spike_factor` times the median of its last `spike_window` losses.  Spikes are
counted per seed and logged in every run.  The paper's recipe (the default,
`spike_guard=False`) applies every finite step - spikes included - and skips only a step
whose loss or gradient is non-finite (such a step has no defined update; it is counted as
skipped).  With the opt-in guard (`spike_guard=True`) a spike step is *skipped* (no
parameter or Adam update) and after `spike_patience` consecutive skips the seed is *rolled
back* to its state at the last checkpoint (weights and Adam state; the data stream moves
on, so it sees fresh batches); skips and rollbacks are counted too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from eaglelab.devices import resolve_device
from eaglelab.models import LinearTransformer, prune_heads
from eaglelab.train.checkpoint import (
    CHECKPOINT,
    MODEL,
    atomic_save,
    dumps_line,
    environment,
    load_tensors,
    write_text_atomic,
)
from eaglelab.train.config import RunConfig
from eaglelab.train.data import BatchStream, evaluation_set, split_prompt

__all__ = ["Trainer", "FlatAdam", "clip_per_seed", "SpikeGuard"]


def clip_per_seed(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale each row of grad (K, P) to global 2-norm <= max_norm (in place; torch's
    clip_grad_norm_ rule per seed).  Returns the norms before clipping (K,)."""
    norms = torch.linalg.vector_norm(grad, dim=1)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    grad.mul_(coef[:, None])
    return norms


class FlatAdam:
    """Adam on a (K, P) parameter matrix with a per-row step count (rows = seeds); rows not
    in `accept` are left untouched (their moments and counts too)."""

    def __init__(self, theta: torch.Tensor, lr: float, betas: tuple[float, float],
                 eps: float) -> None:
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = torch.zeros_like(theta)
        self.v = torch.zeros_like(theta)
        self.count = torch.zeros(theta.shape[0], dtype=torch.int64, device=theta.device)

    def _update(self, theta, grad, m, v, count):
        b1, b2 = self.betas
        m.mul_(b1).add_(grad, alpha=1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        c = count.to(torch.float64)[:, None]
        bc1 = (1 - b1 ** c).to(theta.dtype)
        bc2_sqrt = (1 - b2 ** c).sqrt().to(theta.dtype)
        denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
        theta.sub_((self.lr / bc1) * m / denom)

    @torch.no_grad()
    def step(self, theta: torch.Tensor, grad: torch.Tensor, accept: torch.Tensor) -> None:
        if bool(accept.all()):
            self.count += 1
            self._update(theta, grad, self.m, self.v, self.count)
            return
        idx = accept.nonzero().flatten().to(theta.device)
        if idx.numel() == 0:
            return
        self.count[idx] += 1
        th, m, v = theta[idx], self.m[idx], self.v[idx]
        self._update(th, grad[idx], m, v, self.count[idx])
        theta[idx], self.m[idx], self.v[idx] = th, m, v

    def state(self) -> dict[str, torch.Tensor]:
        return {"adam_m": self.m, "adam_v": self.v, "adam_count": self.count}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        self.m.copy_(tensors["adam_m"])
        self.v.copy_(tensors["adam_v"])
        self.count.copy_(tensors["adam_count"])


class SpikeGuard:
    """Per-seed running median of losses, spike counts and (with `skip`) skip and rollback
    decisions.  skip=False is the paper's recipe: only non-finite steps are not applied."""

    def __init__(self, K: int, window: int, factor: float, warmup: int, patience: int,
                 skip: bool = False) -> None:
        self.factor, self.warmup, self.patience, self.skip = factor, warmup, patience, skip
        self.buf = torch.full((K, window), math.nan, dtype=torch.float64)
        self.pos = torch.zeros(K, dtype=torch.int64)
        self.filled = torch.zeros(K, dtype=torch.int64)
        self.consec = torch.zeros(K, dtype=torch.int64)
        self.spikes = torch.zeros(K, dtype=torch.int64)
        self.skipped = torch.zeros(K, dtype=torch.int64)
        self.rollbacks = torch.zeros(K, dtype=torch.int64)

    def check(self, loss: torch.Tensor, grad: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(accept, rollback, spike) masks (K,) for this step's losses and gradients."""
        loss = loss.detach().to(torch.float64).cpu()         # the guard's state is host-side
        finite = torch.isfinite(loss) & torch.isfinite(grad).all(dim=1).cpu()
        spike = ~finite
        active = self.filled >= self.warmup
        if bool(active.any()):
            med = torch.nanmedian(self.buf, dim=1).values
            spike |= active & (loss > self.factor * med)
        accept = ~spike if self.skip else finite
        if bool(accept.any()):
            rows = accept.nonzero().flatten()
            self.buf[rows, self.pos[rows]] = loss[rows]
            self.pos[rows] = (self.pos[rows] + 1) % self.buf.shape[1]
            self.filled[rows] += 1
        self.spikes += spike.to(torch.int64)
        self.consec = torch.where(~accept, self.consec + 1, torch.zeros_like(self.consec))
        self.skipped += (~accept).to(torch.int64)
        rollback = (self.consec >= self.patience) & self.skip
        if bool(rollback.any()):
            self.consec[rollback] = 0
            self.rollbacks += rollback.to(torch.int64)
        return accept, rollback, spike

    def reset(self, rows: torch.Tensor) -> None:
        """Forget the loss history of the seeds in `rows` (after a rollback): the restored
        weights are older, so their losses must not be judged against the newer median -
        otherwise every step after a rollback looks like a spike and training never resumes."""
        self.buf[rows] = math.nan
        self.pos[rows] = 0
        self.filled[rows] = 0

    _FIELDS = ("buf", "pos", "filled", "consec", "spikes", "skipped", "rollbacks")

    def state(self) -> dict[str, torch.Tensor]:
        return {f"spike_{k}": getattr(self, k) for k in self._FIELDS}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        for k in self._FIELDS:
            if f"spike_{k}" in tensors:     # checkpoints before spike counting lack "spikes"
                getattr(self, k).copy_(tensors[f"spike_{k}"])


@dataclass
class Progress:
    """What the progress display is told after a step."""

    step: int
    total: int
    loss: float
    steps_per_s: float


class Trainer:
    """Train `config` in the run folder `run_dir` (config.json and environment.json are
    written there if missing; `load_checkpoint` continues from the folder's checkpoint)."""

    def __init__(self, config: RunConfig, run_dir: Path,
                 on_progress: Callable[[Progress], None] | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.on_progress = on_progress
        tc = config.train
        self.dtype = torch.float64 if tc.dtype == "float64" else torch.float32
        self.device = resolve_device(tc.device, "train.device")
        self.model = LinearTransformer(config.model, list(config.seeds),
                                       dtype=self.dtype).to(self.device)
        self.adam = FlatAdam(self.model.theta.data, tc.lr, (tc.beta1, tc.beta2), tc.eps)
        K = len(config.seeds)
        self.guard = SpikeGuard(K, tc.spike_window, tc.spike_factor, tc.spike_warmup,
                                tc.spike_patience, skip=tc.spike_guard)
        self.stream = BatchStream(config.task, config.seeds, tc.batch, dtype=self.dtype,
                                  sampler=tc.sampler, prefetch=tc.prefetch, device=self.device)
        X_eval = evaluation_set(config.task, tc.eval_size, tc.eval_seed,
                                dtype=self.dtype).to(self.device)
        self.eval_Z0, self.eval_D = split_prompt(X_eval, config.model.d, config.model.n)
        self.zero_mse = float(self.eval_D.double().square().mean())
        if tc.prune_to:    # the validation batch pruning selects on
            X_val = evaluation_set(config.task, tc.eval_size, tc.val_seed,
                                   dtype=self.dtype).to(self.device)
            self.val_Z0, self.val_D = split_prompt(X_val, config.model.d, config.model.n)
        self.step = 0
        self.acc_loss = torch.zeros(K, dtype=torch.float64)
        self.acc_n = torch.zeros(K, dtype=torch.int64)
        self.acc_skipped = torch.zeros(K, dtype=torch.int64)
        self.acc_spikes = torch.zeros(K, dtype=torch.int64)
        self.interval: list[torch.Tensor] = []   # this log interval's losses (NaN: not applied)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.timing_path = self.run_dir / "timing.jsonl"
        self.snapshot = self._state_rows()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not (self.run_dir / "config.json").exists():
            write_text_atomic(self.run_dir / "config.json", config.to_json())
        if not (self.run_dir / "environment.json").exists():
            write_text_atomic(self.run_dir / "environment.json",
                              json.dumps(environment(), indent=2))

    # state ----------------------------------------------------------------------------
    def _state_rows(self) -> dict[str, torch.Tensor]:
        return {"theta": self.model.theta.detach().clone(), "m": self.adam.m.clone(),
                "v": self.adam.v.clone(), "count": self.adam.count.clone()}

    def _rollback(self, rows: torch.Tensor) -> None:
        idx = rows.nonzero().flatten().to(self.device)
        with torch.no_grad():
            self.model.theta[idx] = self.snapshot["theta"][idx]
        self.adam.m[idx] = self.snapshot["m"][idx]
        self.adam.v[idx] = self.snapshot["v"][idx]
        self.adam.count[idx] = self.snapshot["count"][idx]

    def save_checkpoint(self) -> None:
        metrics_offset = self.metrics_path.stat().st_size if self.metrics_path.exists() else 0
        tensors = {"theta": self.model.theta, "head_mask": self.model.head_mask,
                   **self.adam.state(), **self.guard.state(),
                   "acc_loss": self.acc_loss, "acc_n": self.acc_n,
                   "acc_skipped": self.acc_skipped, "acc_spikes": self.acc_spikes,
                   "interval_losses": self._interval_tensor()}
        for k, s in enumerate(self.stream.get_state()):
            tensors[f"rng_{k}"] = s
        meta = {"config": self.config.to_json(), "step": str(self.step),
                "heads": str(self.model.config.heads), "metrics_offset": str(metrics_offset),
                "torch_threads": str(torch.get_num_threads())}
        atomic_save(self.run_dir / CHECKPOINT, tensors, meta)
        self.snapshot = self._state_rows()

    def load_checkpoint(self) -> None:
        tensors, meta = load_tensors(self.run_dir / CHECKPOINT)
        if not bool(torch.isfinite(tensors["theta"]).all()):
            bad = [k for k in range(tensors["theta"].shape[0])
                   if not bool(torch.isfinite(tensors["theta"][k]).all())]
            raise ValueError(f"{self.run_dir / CHECKPOINT}: the weights of seed position(s) "
                             f"{bad} are not finite at step {meta.get('step')}; the run "
                             "diverged or the file was damaged - retrain (a resumed run "
                             "could only produce a NaN model)")
        offset = int(meta["metrics_offset"])
        have = self.metrics_path.stat().st_size if self.metrics_path.exists() else 0
        if have < offset:
            raise ValueError(f"{self.metrics_path} holds {have} bytes but the checkpoint was "
                             f"written after {offset}: the metrics were truncated or replaced "
                             "- restore them or retrain")
        heads = int(meta["heads"])
        if heads != self.model.config.heads:
            self._set_model(LinearTransformer(self.model.config.with_heads(heads),
                                              list(self.config.seeds),
                                              dtype=self.dtype).to(self.device))
        with torch.no_grad():
            self.model.theta.copy_(tensors["theta"])
            self.model.head_mask.copy_(tensors["head_mask"])
        self.adam.load(tensors)
        self.guard.load(tensors)
        self.acc_loss.copy_(tensors["acc_loss"])
        self.acc_n.copy_(tensors["acc_n"])
        self.acc_skipped.copy_(tensors["acc_skipped"])
        if "acc_spikes" in tensors:
            self.acc_spikes.copy_(tensors["acc_spikes"])
        self.interval = list(tensors["interval_losses"]) if "interval_losses" in tensors else []
        self.stream.set_state([tensors[f"rng_{k}"] for k in range(len(self.config.seeds))])
        self.step = int(meta["step"])
        if self.metrics_path.exists():
            with open(self.metrics_path, "r+b") as fh:
                fh.truncate(offset)
        self.snapshot = self._state_rows()

    def _set_model(self, model: LinearTransformer) -> None:
        tc = self.config.train
        self.model = model
        self.adam = FlatAdam(model.theta.data, tc.lr, (tc.beta1, tc.beta2), tc.eps)

    # metrics --------------------------------------------------------------------------
    def _write(self, path: Path, obj: dict) -> None:
        with open(path, "a") as fh:
            fh.write(dumps_line(obj))

    @torch.no_grad()
    def evaluate(self, model: LinearTransformer | None = None,
                 per_problem: bool = False) -> torch.Tensor:
        """Held-out MSE per seed (K,) on the run's evaluation set, or with per_problem=True
        the MSE of every problem (K, N)."""
        model = model or self.model
        parts = []
        for a in range(0, self.eval_Z0.shape[0], 1024):
            Z0, D = self.eval_Z0[a:a + 1024], self.eval_D[a:a + 1024]
            err = (model(Z0) - D.to(model.theta.dtype)).double()
            parts.append(err.square().mean(dim=(2, 3)))
        per = torch.cat(parts, dim=1)
        return per if per_problem else per.mean(dim=1)

    def _log_eval(self) -> None:
        from eaglelab.train.spectra import effective_ranks, save_snapshot

        per = self.evaluate(per_problem=True)
        mse = per.mean(dim=1)
        prods = self.model.products()
        self._write(self.metrics_path, {
            "kind": "eval", "step": self.step, "mse": mse.tolist(), "zero_mse": self.zero_mse,
            "ratio": (mse / self.zero_mse).tolist(),
            "median_mse": per.median(dim=1).values.tolist(), "heads": self.model.config.heads,
            **effective_ranks(prods)})
        if self.config.train.snapshots:
            save_snapshot(self.run_dir, self.step, prods)

    def _interval_tensor(self) -> torch.Tensor:
        K = self.acc_loss.shape[0]
        return (torch.stack(self.interval) if self.interval
                else torch.zeros(0, K, dtype=torch.float64))

    def _log_train(self) -> None:
        n = self.acc_n.clamp(min=1).double()
        loss = torch.where(self.acc_n > 0, self.acc_loss / n,
                           torch.full_like(self.acc_loss, math.nan))
        median = torch.nanmedian(self._interval_tensor(), dim=0).values
        self.interval = []
        self._write(self.metrics_path, {
            "kind": "train", "step": self.step, "loss": loss.tolist(),
            "loss_median": median.tolist(),
            "skipped": self.acc_skipped.tolist(), "skipped_total": self.guard.skipped.tolist(),
            "spikes": self.acc_spikes.tolist(), "spikes_total": self.guard.spikes.tolist(),
            "rollbacks_total": self.guard.rollbacks.tolist()})
        self.acc_loss.zero_()
        self.acc_n.zero_()
        self.acc_skipped.zero_()
        self.acc_spikes.zero_()

    # pruning --------------------------------------------------------------------------
    @torch.no_grad()
    def prune(self, keep_per_group: int) -> torch.Tensor:
        """Prune every seed greedily (`models.prune_heads`) to `keep_per_group` heads per
        layer (per machine in the distributed regime) by the loss on the run's VALIDATION
        batch (`val_seed`; neither the evaluation set of the training curves nor any batch
        extraction reports on); Adam moments follow the kept heads.  Returns keep (K, L, H')."""
        model = self.model
        pr = prune_heads(model, self.val_Z0, self.val_D.to(model.theta.dtype),
                         keep=keep_per_group)
        keep, new = pr.keep, pr.model
        m = model.gather_heads(self.adam.m, keep, new)
        v = model.gather_heads(self.adam.v, keep, new)
        count = self.adam.count.clone()
        self._set_model(new)
        self.adam.m.copy_(m)
        self.adam.v.copy_(v)
        self.adam.count.copy_(count)
        self.snapshot = self._state_rows()
        self._write(self.metrics_path, {"kind": "prune", "step": self.step,
                                        "keep": keep.tolist(), "val_seed": self.config.train.val_seed,
                                        "loss_before": pr.loss_before,
                                        "loss_after": pr.loss_after, "history": pr.history})
        return keep

    def _loss_fn(self):
        """The per-seed training loss of the current model (compiled if configured)."""
        if getattr(self, "_loss_model", None) is not self.model:
            model, fused = self.model, self.config.train.fused

            def fn(Z0, D):
                return model.loss(Z0, D, fused=fused)

            self._loss = torch.compile(fn) if self.config.train.compile else fn
            self._loss_model = model
        return self._loss

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimisation step for every seed: returns (loss (K,) float64, accepted (K,),
        spike (K,))."""
        tc = self.config.train
        X = self.stream.next()
        Z0, D = split_prompt(X, self.config.model.d, self.config.model.n, inplace=True)
        theta = self.model.theta
        theta.grad = None
        loss = self._loss_fn()(Z0, D)
        loss.sum().backward()
        grad = theta.grad
        accept, rollback, spike = self.guard.check(loss, grad)
        clip_per_seed(grad, tc.clip)
        self.adam.step(theta.data, grad, accept)
        if bool(rollback.any()):
            self._rollback(rollback)
            self.guard.reset(rollback)
        lossd = loss.detach().double().cpu()
        del loss  # frees the saved activations before the next batch is drawn
        return lossd, accept, spike

    # the loop -------------------------------------------------------------------------
    def run(self) -> None:
        tc = self.config.train
        total = tc.steps
        if self.step == 0 and not (self.run_dir / CHECKPOINT).exists():
            self._log_eval()
            self.save_checkpoint()
        t0, s0 = time.perf_counter(), self.step
        last_report = 0.0
        while self.step < total:
            if (tc.prune_to and self.step == tc.prune_at
                    and self.model.config.heads > tc.prune_to):
                self.prune(tc.prune_to)
            lossd, accept, spike = self.train_step()
            self.acc_loss += torch.where(accept, lossd, torch.zeros_like(lossd))
            self.acc_n += accept.to(torch.int64)
            self.acc_skipped += (~accept).to(torch.int64)
            self.acc_spikes += spike.to(torch.int64)
            self.interval.append(torch.where(accept, lossd, torch.full_like(lossd, math.nan)))
            self.step += 1
            if self.step % tc.log_every == 0 or self.step == total:
                self._log_train()
                elapsed = time.perf_counter() - t0
                self._write(self.timing_path, {"step": self.step, "elapsed_s": elapsed,
                                               "steps_per_s": (self.step - s0) / elapsed})
            if self.step % tc.eval_every == 0 or self.step == total:
                self._log_eval()
            if self.step % tc.checkpoint_every == 0 or self.step == total:
                self.save_checkpoint()
            now = time.perf_counter()
            if self.on_progress is not None and (now - last_report > 0.2
                                                 or self.step == total):
                last_report = now
                rate = (self.step - s0) / max(now - t0, 1e-9)
                self.on_progress(Progress(self.step, total, float(lossd.mean()), rate))
        self.save_final()
        self.stream.close()

    def save_final(self) -> None:
        atomic_save(self.run_dir / MODEL,
                    {"theta": self.model.theta, "head_mask": self.model.head_mask},
                    {"config": self.config.to_json(), "step": str(self.step),
                     "heads": str(self.model.config.heads)})
