"""The whole extraction, from a trained (multi-seed) model to an `Extraction`.

prune -> products -> sparsify/quantise (and re-evaluate) -> property tests -> per-layer
steps and calibration norms -> scaling-law fit -> the extracted algorithm -> fidelity
against the model, plus the canonical EAGLE with the fitted constants and, where the learned
form differs from the paper's (compute-limited value maps), the fidelity of the paper's form
of the same steps.  In the distributed regime a head reads only its machine's columns, so the
extracted algorithm is the paper's local update; how strongly the heads write other
machines' columns (A-sized communication the paper's models do not use) is `cross_write`.

Every reported measure is on the test batch.  The headline measures are over the test
tasks whose input norm ||A_0||_2^2 lies within the calibration batch's largest
(`scaling.inputs_in_range`: a rule fixed from the prompts alone, before any model is run):
fixed learned steps were tuned to such tasks, and one task far outside can diverge and set
the mean of a whole batch.  The paper's unfiltered numbers over every task are kept beside
them (`fidelity_all_tasks`, `mse_all_tasks`) with the excluded tasks listed.

Verdict (`Extraction.summary`): the paper's claim is a fidelity of at most 6e-4 at every
layer (mean of 10 seeds) below a test MSE of about 1e-3 (Table 1).  `faithful` requires all
of: the model learned the task (test MSE at most LEARNED times that of predicting zero AND
at most LEARNED_MSE, ten times the paper's ~1e-3, so a model far from the paper's accuracy -
an untrained one, or one that never preconditions A - is never called faithful), the paper's
absolute bound
(PAPER_FIDELITY) and the relative criterion (below the model's own test MSE), each on the
mean over seeds at every layer; per-seed counts are reported beside.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from eaglelab.extract.algorithm import ExtractedAlgorithm
from eaglelab.extract.fidelity import (
    block_fidelity,
    layer_fidelity,
    layer_fidelity_median,
    layer_quantities,
    nystrom_mse,
    prediction_mse,
    prediction_mse_median,
)
from eaglelab.extract.products import LayerProducts, model_products, products_forward
from eaglelab.extract.properties import block_structure, numerical_rank, sketch_comparison
from eaglelab.extract.residue import residue_attribution
from eaglelab.extract.scaling import (
    batch_max_norms,
    cross_writes,
    fit_constant,
    head_scales,
    inputs_in_range,
    layer_steps,
    reference_steps,
)
from eaglelab.extract.simplify import simplify_products
from eaglelab.extract.summary import LEARNED, LEARNED_MSE, Summary, summarise
from eaglelab.models import prune_heads
from eaglelab.tasks.blocks import prompt

PAPER_ETA, PAPER_GAMMA = 1.0, 1.9   # the learned constants relative to the batch-max norm
EXPLODED = 100.0         # a test task "explodes": relative error above this x the median
HELD_OUT_SEED = 20251    # the test batch extraction reports on (calibration: seed + 1)
VALIDATION_SEED = 20250  # the validation batch pruning selects on (never reported)

__all__ = ["HELD_OUT_SEED", "LEARNED", "LEARNED_MSE", "VALIDATION_SEED", "Extraction",
           "SeedExtraction", "extract", "held_out"]


@dataclass
class SeedExtraction:
    seed: int
    steps_A: list[float]
    steps_C: list[float]
    norms: list[float]
    eta: float                       # fitted eta (scaling law over layers)
    gamma: float
    gamma_inner: float               # gamma fitted on layers 1..L-1 (as eta is)
    eta_layers: list[float]
    gamma_layers: list[float]
    # every test measure is over the tasks with an input norm in range, except the
    # *_all_tasks pair (the paper's metric over every task); out_of_range lists the others
    fidelity: list[float]            # model vs extracted algorithm, per layer
    fidelity_all_tasks: list[float]
    mse_all_tasks: float
    zero_mse_all_tasks: float        # predicting zero, over every test task
    out_of_range: list[int]          # test task indices whose input norm is out of range
    fidelity_median: list[float]     # the same, median over tasks of the per-task mean
    mse_median: float                # median over tasks of the model's per-task MSE
    fidelity_canonical: list[float]  # model vs canonical EAGLE (fitted constants)
    fidelity_paper_constants: list[float]   # model vs EAGLE with eta = 1, gamma = 1.9 / N_l
    mse_paper_constants: float       # test MSE of that EAGLE (in range; all tasks below)
    mse_paper_constants_all_tasks: float
    fidelity_blocks: dict[str, list[float]]  # model vs extracted, per block A, B, C, D
    mse: float                       # model test MSE
    mse_algorithm: float
    mse_canonical: float
    mse_simplified: float            # model with sparsified + quantised products
    structure: list[list[dict]]      # per layer, per head: block statistics
    ranks: list[list[int]]           # numerical rank of each head's top-left W_QK block
    layers_model: dict[str, list[float]]
    layers_algorithm: dict[str, list[float]]
    simplify: dict
    sketch: list[dict] | None = None
    # the paper's form of the same steps where the learned one differs (compute-limited: S S^T
    # on the value side): fidelity, mse and the share of the value map in span S per layer
    paper: dict | None = None
    # distributed: per layer, off-machine write strength of W_VP (0 = only C, D are sent)
    cross_write: list[float] | None = None
    # per-layer fidelity with one weight block's residue put back (extract.residue)
    residue: dict[str, list[float]] | None = None
    # a normalised model (every measure above is in the units of the scaled problems c Z0):
    # its test MSE and fidelity per layer in the prompts' own units (activations / c)
    original_units: dict[str, Any] | None = None
    # parameter-free step schedules from the data at each layer (`scaling.reference_steps`)
    reference: dict[str, list[float]] | None = None
    # test tasks the model fails on (per-task MSE above EXPLODED x the median, all tasks)
    # and where their input norms ||A_0||_2^2 rank in the test batch (percentiles)
    exploded: dict[str, Any] | None = None
    algorithm: ExtractedAlgorithm | None = field(default=None, repr=False)
    products: LayerProducts | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("algorithm", "products")}
        out["algorithm"] = None if self.algorithm is None else self.algorithm.to_dict()
        return out


@dataclass
class Extraction:
    regime: str
    seeds: list[SeedExtraction]
    nystrom_mse: float
    prune: dict | None
    config: dict
    _summary: Summary | None = field(default=None, repr=False, compare=False)

    def summary(self) -> Summary:
        """The means over seeds and the verdicts (`extract.summary.Summary`), computed once."""
        if self._summary is None:
            self._summary = summarise(self.regime, self.seeds, self.nystrom_mse,
                                      self.config["val_size"])
        return self._summary

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "regime": self.regime, "config": self.config,
                "nystrom_mse": self.nystrom_mse, "prune": self.prune,
                "seeds": [s.to_dict() for s in self.seeds]}


def _original_units(Zm, Za, D, s0, c, inside) -> dict[str, Any]:
    """A normalised model's test MSE and fidelity in the prompts' own units: its layers run
    on c Z0 and it divides its prediction by c, so the measures in the prompts' units are
    those of the activations Z_l / c (model and algorithm alike) against D."""
    def unscale(Zs):
        return [z / s0 for z in Zs]
    Zm_o, Za_o = unscale(Zm), unscale(Za)
    return {"mse": prediction_mse(Zm_o[-1], D / s0, c.d, c.n, inside),
            "mse_all_tasks": prediction_mse(Zm_o[-1], D / s0, c.d, c.n),
            "fidelity": layer_fidelity(Zm_o, Za_o, inside)}


def _exploded(Z_last, D, Z_raw, c, inside) -> dict[str, Any]:
    """Which test tasks the model fails on - error ||pred - D||_F^2 relative to max(||D||_F^2,
    the median over tasks of ||D||_F^2), above EXPLODED x its median over all tasks, or
    non-finite - with the percentile of each one's input norm ||A_0||_2 (of the raw prompt,
    before any normalisation) in the test batch and whether it lies outside the calibrated
    range.  The floor keeps a task with an unusually small D from counting as a failure for
    an ordinary absolute error.  The paper explains its training spikes by an atypically
    large ||A||_2; these are the trained model's failures at test."""
    err = (-Z_last[..., c.d:, c.n:].to(torch.float64) - D.to(torch.float64)).square()
    size = D.to(torch.float64).square().flatten(1).sum(dim=1)
    ref = torch.maximum(size, size.median()).clamp_min(1e-300)
    rel = (err.flatten(1).sum(dim=1) / ref).numpy()
    finite = np.isfinite(rel)
    median = np.median(rel[finite]) if finite.any() else np.inf
    bad = np.flatnonzero(~finite | (rel > EXPLODED * median))
    norms = torch.linalg.matrix_norm(Z_raw[..., :c.d, :c.n].to(torch.float64), ord=2).numpy()
    rank = norms.argsort().argsort()                 # 0 = smallest norm
    return {"count": int(bad.size), "tasks": int(rel.size), "task_indices": bad.tolist(),
            "norm_percentiles": (100.0 * rank[bad] / max(rel.size - 1, 1)).tolist(),
            "out_of_range": int(np.sum(~np.asarray(inside)[bad]))}


def _alignment(R: np.ndarray, basis: np.ndarray) -> float:
    """||P R P||_F / ||R||_F with P the projector on the sketch's span (`basis`: orthonormal
    columns): 1 when R lives on span S (as S S^T does), ~r/n for a random rank-r map."""
    P = basis @ basis.T
    return float(np.linalg.norm(P @ R @ P) / np.linalg.norm(R))


def held_out(task, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Z0, D): prompts and true hidden blocks of a fixed seeded batch (float64), drawn from
    the run's task distribution (training or estimation) with exact float64 sampling."""
    from eaglelab.tasks.sampling import draw_batch

    X = draw_batch(task, size, torch.Generator().manual_seed(seed), dtype=torch.float64,
                   sampler="exact")
    return prompt(X, task.d, task.n), X[:, task.d:, task.n:].clone()


@dataclass
class _Batches:
    """The batches every seed is measured on (module docstring)."""
    Z0: torch.Tensor             # test prompts (scaled for a normalised model)
    D: torch.Tensor              # their true hidden blocks (scaled alike)
    Zc: torch.Tensor             # calibration prompts (the norms)
    Z_raw: torch.Tensor          # the test prompts before any normalisation
    scale: torch.Tensor | None   # the per-prompt factor c (normalised models), (B, 1, 1)
    inside: np.ndarray           # test tasks with an input norm in the calibrated range


@dataclass
class _Options:
    factor: float
    qk_levels: int
    vp_levels: int
    sketch_draws: int


@torch.no_grad()
def extract(model, task, *, val_size: int = 1024, seed: int = HELD_OUT_SEED,
            prune_to: int = 1, factor: float = 1.5, qk_levels: int = 2, vp_levels: int = 3,
            sketch_draws: int = 200) -> Extraction:
    """Extract the algorithm from every seed of `model` (a LinearTransformer).

    A model with more than `prune_to` heads per layer (machine) is first pruned greedily on
    the validation batch (VALIDATION_SEED); every reported measure is on the test batch
    (`seed`, default HELD_OUT_SEED, val_size tasks), the norms on a calibration batch
    (seed + 1).  The three batches are disjoint draws.  A model with per-prompt
    normalisation (`ModelConfig.normalise`) is extracted on the scaled problems its layers
    solve (c Z0, c D), so its MSEs are in those units.

    Steps: check the inputs; prune on the validation batch (`_prune_on_validation`); draw
    the test and calibration batches (`_test_batches`); per seed, read the steps off the
    weights and measure the model against the extracted algorithm (`_extract_seed`)."""
    _check_inputs(model, task, seed)
    c = model.config                    # recorded as given (before pruning)
    # work on a float64 copy: nn.Module.double() converts in place, and the caller's model
    # (e.g. a run being trained or inspected) must not change dtype under it
    model = copy.deepcopy(model).double()
    model, prune = _prune_on_validation(model, task, val_size, prune_to)
    batches = _test_batches(model, task, val_size, seed)
    opts = _Options(factor, qk_levels, vp_levels, sketch_draws)
    seeds = [_extract_seed(model.seed_slice(k), k, task, batches, opts)
             for k in range(model.num_seeds)]
    config = {"val_size": val_size, "seed": seed, "prune_to": prune_to, "factor": factor,
              "qk_levels": qk_levels, "vp_levels": vp_levels, "model": c.to_dict(),
              "task": task.to_dict()}
    return Extraction(c.regime, seeds, nystrom_mse(batches.Z0, batches.D, c.d, c.n), prune,
                      config)


def _check_inputs(model, task, seed: int) -> None:
    if seed in (VALIDATION_SEED, VALIDATION_SEED - 1):
        raise ValueError(f"seed={seed}: the test batch (and its calibration batch seed + 1) "
                         f"must not be the validation batch {VALIDATION_SEED}")
    c = model.config
    finite = torch.isfinite(model.theta.detach()).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = [int(model.seeds[k]) for k in torch.nonzero(~finite).flatten().tolist()]
        raise ValueError(f"the weights of seed(s) {bad} are not finite: nothing to extract "
                         "(the run diverged or its file is damaged)")
    if (c.n, c.d, c.n_prime, c.d_prime) != (task.n, task.d, task.n_prime, task.d_prime):
        raise ValueError(f"model sizes (n, d, n', d') = {(c.n, c.d, c.n_prime, c.d_prime)} do not "
                         f"match the task's {(task.n, task.d, task.n_prime, task.d_prime)}")


def _prune_on_validation(model, task, val_size: int, prune_to: int):
    """(model, prune record or None): a model with more than `prune_to` heads per layer
    (machine) pruned on the validation batch - selection never sees the test batch."""
    if model.config.heads <= prune_to:
        return model, None
    Zv, Dv = held_out(task, val_size, VALIDATION_SEED)
    pr = prune_heads(model, Zv, Dv, keep=prune_to)
    return pr.model, pr.to_dict()


def _test_batches(model, task, val_size: int, seed: int) -> _Batches:
    """The test batch (`seed`), its calibration batch (seed + 1), scaled as the layers see
    them, and the tasks whose input norm lies in the calibrated range."""
    c = model.config
    Z0, D = held_out(task, val_size, seed)
    Z_raw = Z0
    Zc, _ = held_out(task, val_size, seed + 1)
    s0 = None
    if c.normalise != "none":   # the layers solve the scaled problems: extract on those
        s0 = model.prompt_scale(Z0)[:, None, None]
        Z0, D, Zc = Z0 * s0, D * s0, Zc * model.prompt_scale(Zc)[:, None, None]
    inside = inputs_in_range(Z0, Zc, c.d, c.n)          # fixed from the prompts alone
    if inside.mean() < 0.5:
        warnings.warn(f"only {int(inside.sum())} of {len(inside)} test tasks have an input "
                      "norm within the calibration batch's; the measures are over those",
                      stacklevel=3)
    return _Batches(Z0, D, Zc, Z_raw, s0, inside)


def _head_structure(prods: LayerProducts, c, partition) -> tuple[list, list]:
    """Per layer and head: the block statistics of W_QK and W_VP, and the numerical rank of
    W_QK's top-left (or its machine's) block."""
    structure, ranks = [], []
    for l in range(c.layers):
        row, rk = [], []
        for h, (Wqk, Wvp) in enumerate(zip(prods.W_QK[l], prods.W_VP[l], strict=True)):
            cols = (None if partition is None else
                    partition[h * len(partition) // len(prods.W_QK[l])])
            row.append({"qk": block_structure(Wqk, c.n, cols),
                        "vp": block_structure(Wvp, c.n, cols)})
            blk = Wqk[:c.n, :c.n] if cols is None else Wqk[np.ix_(cols, cols)]
            rk.append(numerical_rank(blk))
        structure.append(row)
        ranks.append(rk)
    return structure, ranks


def _paper_form(alg: ExtractedAlgorithm, Zm, b: _Batches, c, values, bases) -> dict:
    """The paper's form of the compute-limited steps (S S^T on the value side) next to the
    learned one: fidelity, test MSE and the share of each value map inside span S."""
    Zp = alg.paper_form().run(b.Z0)
    return {"fidelity": layer_fidelity(Zm, Zp, b.inside),
            "fidelity_median": layer_fidelity_median(Zm, Zp, b.inside),
            "mse": prediction_mse(Zp[-1], b.D, c.d, c.n, b.inside),
            "form": "value side S S^T",
            "value_alignment": [_alignment(R, B) for R, B in zip(values, bases, strict=True)]}


def _extract_seed(one, k: int, task, b: _Batches, opts: _Options) -> SeedExtraction:
    """One seed (`one`, a one-seed model): its products and steps, the extracted algorithm
    with its per-layer constants, the canonical and paper-constant EAGLE beside it, and
    every measure of `SeedExtraction` on the test batch."""
    c = one.config
    Z0, D, inside = b.Z0, b.D, b.inside
    partition = one.layout.partition() if one.layout is not None else None
    rank_support = c.r if c.regime == "compute-limited" else None
    prods = model_products(one, 0)
    simple, rep = simplify_products(prods, factor=opts.factor, qk_levels=opts.qk_levels,
                                    vp_levels=opts.vp_levels, seed=k)
    Zm = [z[0] for z in one.layer_outputs(Z0)]
    Zs_simple = products_forward(Z0, simple, c.d)
    sA, sC, _, _ = layer_steps(prods, c.regime, c.n, r=rank_support, partition=partition)
    sketches = values = bases = None
    if c.regime == "compute-limited":
        heads = [head_scales(prods.W_QK[l][0], prods.W_VP[l][0], c.n, rank=c.r)
                 for l in range(c.layers)]
        sketches, values = [h["S"] for h in heads], [h["R"] for h in heads]
        bases = [h["basis"] for h in heads]
    calib = [z[0] for z in one.layer_outputs(b.Zc)]
    norms = batch_max_norms(calib, c.d, c.n, partition, sketches)
    data_rank = min(getattr(task, "s", task.n), task.n, task.d)
    eta_l, gamma_l = (sA * norms).tolist(), (sC * norms).tolist()

    def algorithm(etas, gammas) -> ExtractedAlgorithm:
        return ExtractedAlgorithm(c.regime, c.n, c.d, list(etas), list(gammas),
                                  norms.tolist(), sketches=sketches, partition=partition,
                                  value_maps=values)

    alg = algorithm(eta_l, gamma_l)
    # the last layer's A update is never read (only its D slot is), so eta is fitted on
    # layers 1..L-1; gamma (which moves C and D) on every layer
    eta = fit_constant(sA[:-1], norms[:-1]) if c.layers > 1 else fit_constant(sA, norms)
    gamma = fit_constant(sC, norms)
    gamma_inner = fit_constant(sC[:-1], norms[:-1]) if c.layers > 1 else gamma
    canon = algorithm([eta] * c.layers, [gamma] * c.layers)
    canon_paper = algorithm([PAPER_ETA] * c.layers, [PAPER_GAMMA] * c.layers)
    Za, Zcanon, Zpaper_c = alg.run(Z0), canon.run(Z0), canon_paper.run(Z0)
    paper = None if values is None else _paper_form(alg, Zm, b, c, values, bases)
    structure, ranks = _head_structure(prods, c, partition)
    sketch = None
    if c.regime == "compute-limited":
        sketch = [sketch_comparison(prods.W_QK[l][0][:c.n, :c.n], c.r, opts.sketch_draws, l)
                  for l in range(c.layers)]
    return SeedExtraction(
        seed=int(one.seeds[0]), steps_A=sA.tolist(), steps_C=sC.tolist(),
        norms=norms.tolist(), eta=eta, gamma=gamma, gamma_inner=gamma_inner,
        eta_layers=eta_l, gamma_layers=gamma_l,
        fidelity=layer_fidelity(Zm, Za, inside),
        fidelity_all_tasks=layer_fidelity(Zm, Za),
        mse_all_tasks=prediction_mse(Zm[-1], D, c.d, c.n),
        zero_mse_all_tasks=prediction_mse(Z0, D, c.d, c.n),
        out_of_range=np.flatnonzero(~inside).tolist(),
        fidelity_median=layer_fidelity_median(Zm, Za, inside),
        mse_median=prediction_mse_median(Zm[-1], D, c.d, c.n, inside),
        fidelity_canonical=layer_fidelity(Zm, Zcanon, inside),
        fidelity_paper_constants=layer_fidelity(Zm, Zpaper_c, inside),
        mse_paper_constants=prediction_mse(Zpaper_c[-1], D, c.d, c.n, inside),
        mse_paper_constants_all_tasks=prediction_mse(Zpaper_c[-1], D, c.d, c.n),
        fidelity_blocks=block_fidelity(Zm, Za, c.d, c.n, inside),
        mse=prediction_mse(Zm[-1], D, c.d, c.n, inside),
        mse_algorithm=prediction_mse(Za[-1], D, c.d, c.n, inside),
        mse_canonical=prediction_mse(Zcanon[-1], D, c.d, c.n, inside),
        mse_simplified=prediction_mse(Zs_simple[-1], D, c.d, c.n, inside),
        structure=structure, ranks=ranks,
        layers_model=layer_quantities(Zm, D, c.d, c.n, data_rank, inside),
        layers_algorithm=layer_quantities(Za, D, c.d, c.n, data_rank, inside),
        simplify=rep.to_dict(), sketch=sketch, paper=paper, algorithm=alg,
        cross_write=None if partition is None else cross_writes(prods, c.n, partition),
        residue=residue_attribution(prods, Z0, Zm, c.regime, c.d, c.n, r=rank_support,
                                    partition=partition, tasks=inside),
        original_units=(None if b.scale is None
                        else _original_units(Zm, Za, D, b.scale, c, inside)),
        reference=reference_steps(calib, c.d, c.n, data_rank, norms, partition),
        exploded=_exploded(Zm[-1], D, b.Z_raw, c, inside),
        products=prods)
