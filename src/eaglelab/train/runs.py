"""Run folders read back, and runs of one configuration seen as one along the seed axis.

Seed s of a run is the same model, up to floating-point rounding, whichever other seeds it
was trained with: it is initialised from s, draws its batches from its own stream, and
every per-seed operation of the loop acts row by row (`loop.py`).  So runs whose configs
differ only in their seeds are *seed blocks* of one experiment, and `merge_runs` joins them
(seeds concatenated in order); `select_seeds` keeps some of a run's seeds.  Both act on the
model, the config's seed list and the metrics, in which every list-valued field of a record
holds one entry per seed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from eaglelab.models import LinearTransformer
from eaglelab.train.checkpoint import CHECKPOINT, MODEL, load_tensors
from eaglelab.train.config import EXECUTION_FIELDS, RunConfig

__all__ = ["CONFIG", "LoadedRun", "load_run", "merge_runs", "select_seeds", "seedless",
           "training_seconds"]

CONFIG = "config.json"


@dataclass
class LoadedRun:
    """A run folder read back: the resolved config, the (K-seed) model, and its metrics.

    `model` holds the final weights when the run finished (model.safetensors), else the
    latest checkpoint's; `step` says which.  `seed_model(k)` gives seed position k alone.
    A merged run (`merge_runs`) keeps every folder it came from in `parts`; `run_dir` is
    the first.
    """

    run_dir: Path
    config: RunConfig
    model: LinearTransformer
    step: int
    finished: bool
    metrics: list[dict] = field(default_factory=list)
    parts: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if not self.parts:
            self.parts = (self.run_dir,)

    @property
    def name(self) -> str:
        """The folder name, or the names of the seed blocks joined by '+'."""
        return "+".join(p.name for p in self.parts)

    def seed_model(self, k: int) -> LinearTransformer:
        return self.model.seed_slice(k)

    def training_seconds(self) -> dict[str, float]:
        """Measured training wall time of every folder this run came from."""
        return {p.name: training_seconds(p) for p in self.parts}


def training_seconds(run_dir: str | Path) -> float:
    """Wall-clock seconds spent training the run in run_dir, from its timing.jsonl: every
    process that trained it (the first and each resume) logs elapsed time and rate from its
    own start, so the total is the sum of each process's last entry (0.0 without a log)."""
    path = Path(run_dir) / "timing.jsonl"
    if not path.exists():
        return 0.0
    total, last, start, step = 0.0, 0.0, None, -1
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            elapsed = float(rec["elapsed_s"])
            # the step the logging process started from: steps_per_s = (step - s0) / elapsed
            s0 = round(rec["step"] - rec["steps_per_s"] * elapsed)
            new = s0 != start or elapsed < last or rec["step"] <= step
            if start is not None and new:      # another process (a resume) logs from here
                total += last
            start, last, step = s0, elapsed, rec["step"]
    return total + last


def load_run(run_dir: str | Path, dtype: torch.dtype | None = None) -> LoadedRun:
    """Read a run folder for extraction: config, trained model(s), metrics."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        raise ValueError(f"{run_dir} is not a run folder ({CONFIG} missing)")
    config = RunConfig.from_json((run_dir / CONFIG).read_text())
    finished = (run_dir / MODEL).exists()
    path = run_dir / (MODEL if finished else CHECKPOINT)
    if not path.exists():
        raise ValueError(f"{run_dir} holds no weights yet (no {MODEL} or {CHECKPOINT})")
    tensors, meta = load_tensors(path)
    heads = int(meta["heads"])
    dtype = dtype or tensors["theta"].dtype
    model = LinearTransformer(config.model.with_heads(heads), list(config.seeds), dtype=dtype)
    with torch.no_grad():
        model.theta.copy_(tensors["theta"])
        model.head_mask.copy_(tensors["head_mask"])
    metrics: dict[tuple, dict] = {}
    mpath = run_dir / "metrics.jsonl"
    if mpath.exists():
        for line in mpath.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                # a process killed between the step-0 evaluation and its first checkpoint
                # leaves that record twice; the last one counts
                metrics[(rec.get("kind"), rec.get("step"))] = rec
    return LoadedRun(run_dir=run_dir, config=config, model=model, step=int(meta["step"]),
                     finished=finished, metrics=list(metrics.values()))


def seedless(config: RunConfig) -> dict:
    """The config without its seeds and its execution fields (`EXECUTION_FIELDS`: device,
    threads, ...): equal for the seed blocks of one experiment, wherever they ran."""
    d = config.to_dict()
    d.pop("seeds")
    d["train"].pop("seed")
    for name in EXECUTION_FIELDS:
        d["train"].pop(name, None)
    return d


def _with_seeds(config: RunConfig, seeds: Sequence[int]) -> RunConfig:
    train = dataclasses.replace(config.train, seed=int(seeds[0]))
    return dataclasses.replace(config, seeds=tuple(int(s) for s in seeds), train=train)


def select_seeds(run: LoadedRun, positions: Sequence[int]) -> LoadedRun:
    """The run restricted to the seeds at `positions` (model, config and metrics)."""
    positions = [int(i) for i in positions]
    K = len(run.config.seeds)
    if not positions or any(not 0 <= i < K for i in positions):
        raise ValueError(f"seed positions {positions} outside the run's {K} seeds")
    metrics = [{k: [v[i] for i in positions] if isinstance(v, list) else v
                for k, v in rec.items()} for rec in run.metrics]
    seeds = [run.config.seeds[i] for i in positions]
    return dataclasses.replace(run, config=_with_seeds(run.config, seeds),
                               model=run.model.seed_slice(positions), metrics=metrics)


def merge_runs(runs: Sequence[LoadedRun]) -> LoadedRun:
    """Seed blocks of one configuration as one run: seeds, weights and per-seed metrics
    concatenated in the order given.  Metric records are matched by (kind, step); only
    records present in every block are kept, and of them only the fields every block logged
    (a block trained by a later code version may log more, e.g. the effective ranks: a
    per-seed field that some seeds lack is dropped, not padded); list-valued fields are
    joined and the other fields (step, kind, the evaluation set's zero_mse, heads) come from
    the first block.

    Raises ValueError when the configs differ in anything but their seeds, a seed occurs
    twice, or the blocks stopped at different steps."""
    runs = list(runs)
    if not runs:
        raise ValueError("merge_runs needs at least one run")
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    for r in runs[1:]:
        if seedless(r.config) != seedless(first.config):
            raise ValueError(f"{r.run_dir} and {first.run_dir} differ in more than their "
                             f"seeds; they are not blocks of one run")
        if r.step != first.step:
            raise ValueError(f"{r.run_dir} is at step {r.step}, {first.run_dir} at step "
                             f"{first.step}: merge finished runs (or runs at one step)")
        if r.finished != first.finished:
            raise ValueError(f"{first.run_dir if r.finished else r.run_dir} has not written "
                             f"its final model: merge finished runs")
    seeds = [s for r in runs for s in r.config.seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seed blocks overlap: seeds {seeds}")
    by_key = [{(m.get("kind"), m.get("step")): m for m in r.metrics} for r in runs]
    metrics = []
    for key, rec in by_key[0].items():
        if not all(key in b for b in by_key[1:]):
            continue
        recs = [b[key] for b in by_key]
        common = set.intersection(*(set(rr) for rr in recs))   # later code may log more
        metrics.append({k: [x for rr in recs for x in rr[k]] if isinstance(v, list) else v
                        for k, v in rec.items() if k in common})
    metrics.sort(key=lambda m: (m.get("step", 0)))
    parts = tuple(p for r in runs for p in r.parts)
    return LoadedRun(run_dir=first.run_dir, config=_with_seeds(first.config, seeds),
                     model=LinearTransformer.stack([r.model for r in runs]), step=first.step,
                     finished=first.finished, metrics=metrics, parts=parts)
