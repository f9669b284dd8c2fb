"""Entry points for the CLI: `cli_train` (start or resume a run) and `train_run`."""

from __future__ import annotations

import ctypes
import json
import warnings
from pathlib import Path

import torch

from eaglelab.train.checkpoint import (
    CHECKPOINT,
    MODEL,
    environment,
    load_tensors,
    run_lock,
    write_text_atomic,
)
from eaglelab.train.config import (
    EXECUTION_FIELDS,
    RunConfig,
    apply_overrides,
    replace_steps,
    resolve_config,
)
from eaglelab.train.loop import Progress, Trainer
from eaglelab.train.runs import CONFIG

__all__ = ["cli_train", "train_run"]


def _tune_malloc() -> None:
    """Keep freed blocks in glibc's heap instead of returning them to the OS: the training
    step allocates the same few MB-sized tensors every step, and returning them costs a
    page fault per 4 KiB page on every reuse (`benchmarks/bench_train.py` measures the step).
    A no-op where glibc's mallopt is unavailable."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 512 * 1024 * 1024)   # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1024 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


class _RichProgress:
    def __init__(self, total: int, start: int, description: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} steps/s"),
            TextColumn("ETA"), TimeRemainingColumn(), transient=False)
        self.task = self.progress.add_task(description, total=total, completed=start,
                                           loss="-", rate="-")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, p: Progress) -> None:
        self.progress.update(self.task, completed=p.step, loss=f"{p.loss:.3e}",
                             rate=f"{p.steps_per_s:.1f}")


def train_run(run_dir: Path, quiet: bool = False, steps: int | None = None,
              execution: dict[str, str] | None = None) -> Path:
    """Run (or continue) the training described by run_dir/config.json, first extending it
    to `steps` when that is larger than its configured steps and setting the execution
    fields in `execution` (e.g. {"train.device": "cuda"}: a run moves between devices).
    ValueError when another process is training that folder."""
    run_dir = Path(run_dir)
    with run_lock(run_dir):
        config = RunConfig.from_json((run_dir / CONFIG).read_text())
        if execution:
            sections = config.to_dict()
            apply_overrides(sections, execution)
            config = RunConfig.from_dict(sections)
            write_text_atomic(run_dir / CONFIG, config.to_json())
        if steps is not None and steps > config.train.steps:
            # the old final weights are no longer final: until the longer run ends, readers
            # (load_run, the experiments' run cache) must see an unfinished run.  Removed
            # before the config changes, so a kill in between leaves a resumable run.
            (run_dir / MODEL).unlink(missing_ok=True)
            write_text_atomic(run_dir / CONFIG, replace_steps(config, steps).to_json())
        return _train(run_dir, quiet)


def _train(run_dir: Path, quiet: bool) -> Path:
    config = RunConfig.from_json((run_dir / CONFIG).read_text())
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    if config.train.malloc_tuning:
        _tune_malloc()
    trainer = Trainer(config, run_dir)
    if (run_dir / CHECKPOINT).exists():
        _, meta = load_tensors(run_dir / CHECKPOINT)
        _check_unchanged(run_dir, config, RunConfig.from_json(meta["config"]))
        saved_threads = int(meta.get("torch_threads", torch.get_num_threads()))
        if saved_threads != torch.get_num_threads():
            warnings.warn(f"resuming with {torch.get_num_threads()} torch threads, the "
                          f"checkpoint was written with {saved_threads}: the continued "
                          f"curve may differ in the last bits", stacklevel=2)
        trainer.load_checkpoint()
    if quiet or trainer.step >= config.train.steps:
        trainer.run()
    else:
        desc = f"{config.regime} x{len(config.seeds)}"
        with _RichProgress(config.train.steps, trainer.step, desc) as bar:
            trainer.on_progress = bar
            trainer.run()
    return run_dir


def _check_unchanged(run_dir: Path, config: RunConfig, saved: RunConfig) -> None:
    """A resumed run continues the config its checkpoint was written with (only the step
    count may grow): an edited config.json (regime, lr, ...) would silently mix two runs."""
    def flat(c: RunConfig) -> dict:
        out = {}
        for sec, value in replace_steps(c, 0).to_dict().items():
            items = value.items() if isinstance(value, dict) else [(None, value)]
            out.update({sec if k is None else f"{sec}.{k}": v for k, v in items})
        for name in EXECUTION_FIELDS:        # where and how it computes may change
            out.pop(f"train.{name}", None)
        return out

    a, b = flat(config), flat(saved)
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if changed:
        raise ValueError(f"{run_dir / CONFIG} differs from the config its checkpoint was "
                         f"written with ({', '.join(changed)}); restore it or start a new run")


def train(config: RunConfig, run_dir: str | Path, *, quiet: bool = True):
    """Train `config` (a resolved `RunConfig`, e.g. from `resolve_config`) in the new run
    folder `run_dir` (it must not exist or be empty) and return the finished run
    (`LoadedRun`: model, config, metrics).  The library form of `eaglelab train`."""
    from eaglelab.train.runs import load_run

    return load_run(_start(Path(run_dir), config, quiet, "use resume() to continue it"))


def _start(out: Path, config: RunConfig, quiet: bool, hint: str) -> Path:
    """Create the run folder `out`, write its config and train.  The folder must be new or
    empty; that is checked while holding its lock, so of two processes started together on
    one folder exactly one writes its config and trains, and the other gets a ValueError
    before writing anything."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"run folder {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        if any(p.name != ".lock" for p in out.iterdir()):
            raise ValueError(f"run folder {out} already exists; {hint}")
        write_text_atomic(out / "environment.json", json.dumps(environment(), indent=2))
        write_text_atomic(out / CONFIG, config.to_json())
        return _train(out, quiet)


def resume(run_dir: str | Path, *, steps: int | None = None, quiet: bool = True):
    """Continue the run in `run_dir` from its last checkpoint (to `steps` when larger than
    its configured steps) and return the finished run (`LoadedRun`)."""
    from eaglelab.train.runs import load_run

    out = Path(run_dir)
    if not (out / CONFIG).exists():
        raise ValueError(f"{out} holds no run (no {CONFIG}); use train() to start one")
    return load_run(train_run(out, quiet=quiet, steps=steps))


def cli_train(regime: str | None, seeds: int | None, steps: int | None, out: str | Path,
              resume: bool = False, overrides: dict[str, str] | None = None,
              quiet: bool = False) -> Path:
    """Start a run in `out`, or continue it with resume=True; returns the run folder.

    Parameters
    ----------
    regime : "unconstrained", "compute-limited", "distributed" or "estimation" (None when
        resuming: the saved one is used; if given it must match).
    seeds : number K of seeds trained together (seeds train.seed .. train.seed + K - 1);
        None means 1 (or the saved count when resuming).
    steps : total number of optimisation steps (None: the config's default, 20,000, or the
        saved value when resuming; a larger value when resuming extends the run).
    out : the run folder; it must not exist (or be empty) unless resume=True.
    overrides : ``{"section.field": "value"}`` settings (see `eaglelab.train.config`);
        not allowed with resume=True.
    quiet : no live progress display.

    Raises ValueError (with the offending option in the message) for an unknown regime,
    r >= n, M not dividing n, negative steps, unknown override keys, an existing run
    folder without resume, or resume without a run folder.
    """
    out = Path(out)
    overrides = dict(overrides or {})
    if steps is not None and (not isinstance(steps, int) or steps < 0):
        raise ValueError(f"--steps must be a non-negative integer, got {steps!r}")
    if resume:
        cfg_path = out / CONFIG
        if not cfg_path.exists():
            raise ValueError(f"--resume {out}: no run there ({CONFIG} missing); start a run "
                             f"with --regime and --out instead")
        config = RunConfig.from_json(cfg_path.read_text())
        if regime is not None and regime != config.regime:
            raise ValueError(f"--resume: the run in {out} has regime {config.regime!r}, "
                             f"not {regime!r}")
        if seeds is not None and seeds != len(config.seeds):
            raise ValueError(f"--resume: the run in {out} has {len(config.seeds)} seeds, "
                             f"not {seeds}")
        execution = {k: v for k, v in overrides.items()
                     if k.startswith("train.") and k.split(".", 1)[1] in EXECUTION_FIELDS}
        if set(overrides) - set(execution):
            raise ValueError("--resume continues a run with its saved config; overrides "
                             f"{sorted(set(overrides) - set(execution))} are not allowed "
                             "(only --steps may grow, and the execution fields "
                             f"{', '.join('train.' + f for f in EXECUTION_FIELDS)} may change)")
        if steps is not None and steps < config.train.steps:
            raise ValueError(f"--steps {steps} is smaller than the run's {config.train.steps}"
                             f"; resume can only extend a run")
        return train_run(out, quiet=quiet, steps=steps, execution=execution)
    if regime is None:
        raise ValueError("--regime is required to start a run (or pass --resume RUN_DIR)")
    config = resolve_config(regime, 1 if seeds is None else seeds, steps, overrides)
    return _start(out, config, quiet, "pass --resume to continue it or choose another --out")
