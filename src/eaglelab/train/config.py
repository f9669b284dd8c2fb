"""Run configuration: small frozen dataclasses with the paper's recipe as defaults.

A run is (regime, seeds, model, task, train).  Every field can be overridden from the CLI
with ``section.field=value`` (or ``field=value`` when the name is unique across sections);
unknown keys raise.  With ``model.normalise`` set and no ``model.norm_target``, the target
is the training distribution's median estimate (`tasks.scale.training_median`).  The block
sizes (n, d, n', d') live in the task section and the model takes them from there.  The
resolved config is saved as JSON in every run folder and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field, fields

from eaglelab.devices import check_device_name
from eaglelab.models.config import REGIMES, ModelConfig
from eaglelab.settings import parse_setting
from eaglelab.tasks.estimation import EstimationTaskConfig
from eaglelab.tasks.icl import ICLTaskConfig
from eaglelab.tasks.scale import training_median
from eaglelab.tasks.training import TrainingTaskConfig

__all__ = ["TrainConfig", "EstimationTaskConfig", "RunConfig", "resolve_config",
           "apply_overrides", "EXECUTION_FIELDS"]

SAMPLERS = ("fast", "exact")
# TrainConfig fields that choose HOW a run computes, not WHAT it computes: a run may resume,
# and a cached run be reused, with other values (a checkpoint written on a GPU resumes on
# the CPU); the results agree up to rounding
EXECUTION_FIELDS = ("device", "threads", "prefetch", "malloc_tuning", "compile", "fused")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, data, evaluation, robustness and bookkeeping of a training run.

    Paper recipe (the defaults): Adam, lr 1e-3 constant, batch 1024, 20,000 steps, global
    grad-norm clip 0.1 (per seed), a fresh batch every step, no step skipped unless its loss
    or gradient is non-finite.
    """

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    batch: int = 1024
    steps: int = 20000
    clip: float = 0.1
    seed: int = 0                 # seeds are seed, seed + 1, ..., seed + K - 1
    sampler: str = "fast"         # "fast": float32 sampling; "exact": tasks.training_batch
    prefetch: bool = False        # draw the next batch in a background thread
    eval_size: int = 4096
    eval_seed: int = 1234567      # one held-out set per run, the same for every seed
    eval_every: int = 500
    log_every: int = 100
    checkpoint_every: int = 1000
    # a spike: loss > spike_factor * running median (or non-finite); always counted.  The
    # paper's recipe applies every finite step; spike_guard=True (opt-in, ours) skips spike
    # steps and rolls back after spike_patience consecutive skips
    spike_guard: bool = False
    spike_factor: float = 100.0
    spike_window: int = 200       # running median over the last accepted losses
    spike_warmup: int = 50        # accepted steps before the ratio test is active
    spike_patience: int = 3       # consecutive skipped steps -> roll back (guard only)
    prune_to: int = 0             # 0: no pruning; else heads per layer (per machine) kept
    prune_at: int = 0             # step at which pruning happens (then fine-tune)
    val_seed: int = 7654321       # validation batch pruning selects on (eval_size tasks)
    dtype: str = "float32"
    threads: int = 0              # torch intra-op threads; 0 leaves torch's default
    fused: bool = True            # fused kernel with hand-written backward
    compile: bool = False         # torch.compile the loss (needs a C++ compiler; ~10-20 s)
    malloc_tuning: bool = True    # keep freed memory in the heap (no page-fault storms)
    device: str = "cpu"           # "cpu", "cuda" or "cuda:N": where the model trains
    # save every layer's products W_QK, W_VP at each evaluation (snapshots/step-*.safetensors):
    # the learning-dynamics record of a run (`train.spectra`)
    snapshots: bool = False

    def __post_init__(self) -> None:
        positive = ("batch", "eval_size", "eval_every", "log_every", "checkpoint_every",
                    "spike_window", "spike_patience")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"train.{name} must be a positive integer, got {v!r}")
        for name in ("steps", "prune_to", "prune_at", "threads", "spike_warmup", "seed",
                     "val_seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"train.{name} must be a non-negative integer, got {v!r}")
        for name in ("lr", "clip", "eps", "spike_factor"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise ValueError(f"train.{name} must be a positive finite number, got {v!r}")
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise ValueError(f"train.{name} must lie in [0, 1), got {v!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"train.sampler={self.sampler!r}; use one of {SAMPLERS}")
        if self.dtype not in DTYPES:
            raise ValueError(f"train.dtype={self.dtype!r}; use one of {DTYPES}")
        check_device_name(self.device, "train.device")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunConfig:
    regime: str
    seeds: tuple[int, ...]
    model: ModelConfig
    task: TrainingTaskConfig | EstimationTaskConfig | ICLTaskConfig
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {"regime": self.regime, "seeds": list(self.seeds), "model": asdict(self.model),
                "task": asdict(self.task), "train": asdict(self.train)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """The config of `to_dict`; ValueError naming what is missing, unknown or invalid
        (an edited config.json must not be half read)."""
        if not isinstance(data, dict):
            raise ValueError(f"a run config is a JSON object, got {type(data).__name__}")
        keys = {"regime", "seeds", "model", "task", "train"}
        missing, unknown = sorted(keys - set(data)), sorted(set(data) - keys)
        if missing or unknown:
            raise ValueError(f"not a run config: missing {missing}, unknown {unknown}")
        regime = data["regime"]
        task_cls = _task_class(regime, "icl" if isinstance(data["task"], dict)
                               and "family" in data["task"] else "training")
        try:
            return cls(regime=regime, seeds=tuple(int(s) for s in data["seeds"]),
                       model=ModelConfig(**data["model"]), task=task_cls(**data["task"]),
                       train=TrainConfig(**data["train"]))
        except TypeError as exc:            # an unknown or missing field of a section
            raise ValueError(f"not a run config: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))


_DIMS = ("n", "d", "n_prime", "d_prime")


def _parse(value: str, current, key: str):
    return parse_setting(f"override {key}", value, current)


def apply_overrides(sections: dict[str, dict], overrides: dict[str, str]) -> None:
    """Apply ``{"section.field" or "field": "value"}`` to the dict-of-dicts in place."""
    for raw_key, raw_value in overrides.items():
        key = raw_key.strip().replace("-", "_")
        if "." in key:
            sec, name = key.split(".", 1)
            if sec not in sections:
                raise ValueError(f"override {raw_key!r}: unknown section {sec!r}; use one of "
                                 f"{sorted(sections)}")
            if name not in sections[sec]:
                hint = (" (block sizes are task fields: use task." + name + ")"
                        if sec == "model" and name in _DIMS else "")
                raise ValueError(f"override {raw_key!r}: {sec} has no field {name!r}{hint}; "
                                 f"known: {sorted(sections[sec])}")
        else:
            owners = [s for s in sections if key in sections[s]]
            if not owners:
                known = sorted(f"{s}.{k}" for s in sections for k in sections[s])
                raise ValueError(f"override {raw_key!r} is not a known setting; known: "
                                 f"{', '.join(known)}")
            if len(owners) > 1:
                raise ValueError(f"override {raw_key!r} is ambiguous; write one of "
                                 f"{[o + '.' + key for o in owners]}")
            sec, name = owners[0], key
        sections[sec][name] = _parse(str(raw_value), sections[sec][name], raw_key)


def _task_class(regime: str, task: str):
    if task == "icl":
        if regime != "unconstrained":
            raise ValueError(f"the family's regression tasks train the unconstrained regime "
                             f"(the family's full (P, Q) layer), not {regime!r}")
        return ICLTaskConfig
    if task != "training":
        raise ValueError(f"task={task!r}; use 'training' or 'icl'")
    return EstimationTaskConfig if regime == "estimation" else TrainingTaskConfig


def resolve_config(regime: str, seeds: int, steps: int | None = None,
                   overrides: dict[str, str] | None = None, task: str = "training"
                   ) -> RunConfig:
    """Build the run config: defaults of the regime, then `steps`, then the overrides.
    task="icl" trains on one of the family's regression tasks (`tasks.icl.ICLTaskConfig`:
    override task.family, task.tokens, ...) instead of the masked-block training task.

    Raises ValueError with a message naming the option for every invalid choice."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; use one of {', '.join(REGIMES)}")
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer (the number of seeds), got "
                         f"{seeds!r}")
    if steps is not None and (not isinstance(steps, int) or steps < 0):
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    task_cls = _task_class(regime, task)
    model_fields = {f.name: f.default for f in fields(ModelConfig)
                    if f.name not in _DIMS and f.name != "regime"}
    sections = {"model": dict(model_fields),
                "task": {f.name: f.default for f in fields(task_cls)},
                "train": {f.name: f.default for f in fields(TrainConfig)}}
    if steps is not None:
        sections["train"]["steps"] = steps
    sections["model"]["norm_target"] = 0.0      # 0: "the training median" unless set
    apply_overrides(sections, overrides or {})
    task = task_cls(**sections["task"])
    if sections["model"]["norm_target"] == 0.0 and isinstance(task, ICLTaskConfig):
        if sections["model"]["normalise"] != "none":
            raise ValueError("per-prompt normalisation is not defined for the family's tasks")
        sections["model"]["norm_target"] = 1.0
    if sections["model"]["norm_target"] == 0.0:
        method = sections["model"]["normalise"]
        sections["model"]["norm_target"] = (1.0 if method == "none" or regime == "estimation"
                                            else training_median(task, method))
    train = TrainConfig(**sections["train"])
    model = ModelConfig(regime=regime, n=task.n, d=task.d, n_prime=task.n_prime,
                        d_prime=task.d_prime, **sections["model"])
    if train.prune_to and train.prune_to >= model.heads:
        raise ValueError(f"train.prune_to={train.prune_to} must be smaller than model.heads="
                         f"{model.heads} (or 0 for no pruning)")
    if train.prune_to and model.tied:
        raise ValueError("train.prune_to: pruning picks heads per layer, so it is not defined "
                         "for a model with tied (shared) layers")
    if train.prune_to and train.val_seed == train.eval_seed:
        raise ValueError("train.val_seed must differ from train.eval_seed: pruning selects on "
                         "the validation batch, the evaluation set only measures")
    if train.prune_to and train.prune_at >= train.steps:
        raise ValueError(f"train.prune_at={train.prune_at} must be before the last step "
                         f"({train.steps})")
    return RunConfig(regime=regime, seeds=tuple(range(train.seed, train.seed + seeds)),
                     model=model, task=task, train=train)


def replace_steps(config: RunConfig, steps: int) -> RunConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps))
