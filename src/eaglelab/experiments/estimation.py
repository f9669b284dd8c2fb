"""The estimation form of EAGLE (W_k -> W* = B A^+): the solver against EAGLE, and the
trained estimation transformer with its extracted iteration.

Paper: Appendix D (Fig 15).

Solver part: n = d = 240, n' = d' = 2, kappa(A) = 100, 50 runs; the estimation iteration
"recovers the same second order convergence as EAGLE".  Per seed we run `eagle` (error of
D_k against D*) and `eagle_estimate` (error of W_k against W*, and of W_k C against D*
through its callback), both with the proof constants, and record the iterations each needs
to `target`.  The telescoping identity W_k C = D_k is checked at every k: the two runs are
deterministic and take the same steps.

Trained part (Appendix D; brief sections 2, 3 and 6): the estimation regime (`ModelConfig
(regime="estimation")`: one learned query bias per token group) is trained on the
least-squares task `EstimationTaskConfig` (A: d x n Gaussian, B = w A, C = I_d, D = w, so
the prediction -Z_L[d:, n:] estimates W* = B A^+) through the run cache
(`_training.trained_run`, `train_steps` steps at batch `batch`, `train_seeds` seeds, one
head per layer) and extracted with `eaglelab.extract.extract`, scored by the same verdict
as the other regimes (`summary["faithful"]`).

The paper's estimation constants.  Appendix D writes the steps as rho_l = 1/(3 ||A_l||^2),
eta = 1, gamma = 3, i.e. absolute steps s_A,l = eta rho_l = 1/(3 ||A_l||^2) and
s_C,l = gamma rho_l = 1/||A_l||^2.  The extraction reads every layer's learned steps as
s_A,l = eta_l / N_l and s_C,l = gamma_l / N_l with N_l = the largest ||A_l||_2^2 of a
calibration batch at layer l (the scale fixed learned steps are tuned to, as in the paper's
scaling law).  Reading the paper's ||A_l||^2 as that N_l, the paper's steps are exactly

    eta_l = eta * N_l / (3 N_l) = 1/3,      gamma_l = gamma * N_l / (3 N_l) = 1,

EAGLE's proof constants (eta = 1/3, gamma = 1 with rho = 1/||A||^2).  Read per problem
instead, the same steps are eta_l = N_l / (3 ||A_l||^2) >= 1/3 relative to N_l, which
varies from task to task; that version (`ExtractedAlgorithm.run(adaptive=True)` with
eta_l = 1/3, gamma_l = 1) is reported beside the fixed one.  Both run on the test batch
with the model's own calibration norms N_l, scored against the model like the extracted
algorithm.  Tolerances, fixed before any run: the fitted eta (layers 1..L-1, mean over
seeds) within ETA_TOL of 1/3 and the fitted gamma (all layers) within GAMMA_TOL (relative)
of 1.

The identity W_k C = D_k for the learned iteration (`telescoping_gap`): in EAGLE's UPDATE
the A and B updates do not read C or D, and C' = C - s_C A A^T C, D' = D + s_C B A^T C are
linear in C (for fixed A, B, and D_0 = 0).  By induction C_k = P_k C and D_k = W_k C, where
P_k and W_k are what the iteration holds in its C and D slots when started with C = I_d.
So running the extracted iteration on prompts with the same A, B and a general d x d C
must give (D slot with C = I) @ C at every layer, up to rounding; `telescoping_gap`
measures the relative difference.  It holds for any iteration of EAGLE's form (whatever
its steps) and fails for one whose updates read C otherwise - e.g. a transformer whose
query bias reaches the C columns (the trained model may use C = I as a constant there, so
its own gap is reported too, not claimed).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eaglelab.experiments import _common as cm
from eaglelab.experiments._training import (
    fidelity_claim,
    trained_run,
    untrained_summary,
)
from eaglelab.experiments.base import Context, ExperimentResult
from eaglelab.solvers import eagle, eagle_estimate
from eaglelab.tasks import conditioned_problem

TITLE = "Estimation form of EAGLE (W_k -> B A^+) vs EAGLE: same second-order rate"
PAPER_REF = "Appendix D (Fig 15)"

# Appendix D's constants (rho_l = 1/(3 ||A_l||^2), eta = 1, gamma = 3) and the same steps
# relative to the batch-max norm N_l (module docstring)
PAPER_RHO_FACTOR, PAPER_ETA, PAPER_GAMMA = 1 / 3, 1.0, 3.0
ETA_REL, GAMMA_REL = PAPER_ETA * PAPER_RHO_FACTOR, PAPER_GAMMA * PAPER_RHO_FACTOR
ETA_TOL = 0.3            # absolute, on eta_l relative to N_l
GAMMA_TOL = 0.5          # relative, on gamma_l relative to N_l
IDENTITY_TOL = 1e-10     # max relative ||D_k(C) - D_k(I) C|| / ||D_k(I) C||
IDENTITY_SEED = 20253    # the general C of the identity check


@dataclass
class Config:
    n: int = 240
    n_prime: int = 2
    kappa: float = 1e2
    target: float = 1e-10
    max_iter: int = 60
    seeds: int = 50
    base_seed: int = 0
    # the trained estimation transformer (the paper's recipe; train_seeds = 0 skips it)
    train_steps: int = 20000
    batch: int = 1024
    train_seeds: int = 10
    val_size: int = 1024      # test tasks of the extraction


QUICK = dict(n=120, seeds=4, train_steps=300, batch=256, train_seeds=1, val_size=256)


def make_config(quick: bool = False, seeds: int | None = None, **overrides: Any) -> Config:
    return cm.make_config(Config, QUICK, quick, seeds, overrides)


def run(cfg: Config, ctx: Context) -> ExperimentResult:
    data, claims, section = _solver(cfg, ctx)
    captions = {"estimation_convergence.png": "Median relative error per iteration: EAGLE's "
                "D_k, the estimation form's W_k and W_k C."}
    if cfg.train_seeds > 0:
        trained = data["trained"] = _trained(cfg, ctx)
        claims += _trained_claims(trained)
        section += "\n\n" + _trained_section(trained, cfg)
        _plot_trained(ctx, trained)
        captions["estimation_trained.png"] = (
            "Trained estimation transformer: fidelity per layer of the extracted algorithm and "
            "of EAGLE with the paper's estimation constants (fixed over N_l, and per problem) "
            "against the model's test MSE (dashed) and the paper's bound (dotted); the learned "
            "eta_l and gamma_l relative to N_l per seed (dots) and their median (line), with "
            "the paper's 1/3 and 1 (dashed).")
    return ExperimentResult(name="estimation", data=data, claims=claims, section=section,
                            captions=captions)


# ------------------------------------------------------------------------- solver part


def _solver(cfg: Config, ctx: Context) -> tuple[dict, list, str]:
    recs = []
    curves: dict[str, list[list[float]]] = {"D": [], "W": [], "WC": []}
    for seed in ctx.track(ctx.seeds, "seeds"):
        p = conditioned_problem(cfg.n, cfg.n, cfg.n_prime, cfg.n_prime, kappa=cfg.kappa, seed=seed)
        Dstar, Wstar = p.reference, p.W_star
        d_iter: list[np.ndarray] = []
        e = eagle(p.A, p.B, p.C, tol=1e-300, max_iter=cfg.max_iter, reference=Dstar,
                  callback=lambda l, A, B, C, D, out=d_iter: out.append(D.copy()))
        wc: list[np.ndarray] = []
        w = eagle_estimate(p.A, p.B, p.C, tol=1e-300, max_iter=cfg.max_iter, reference=Wstar,
                           callback=lambda k, W, P, out=wc, C=p.C: out.append(W @ C))
        dn = np.linalg.norm(Dstar)
        wc_err = [float(np.linalg.norm(x - Dstar) / dn) for x in wc]
        k = min(len(d_iter), len(wc))
        identity = max(float(np.linalg.norm(wc[i] - d_iter[i]) / dn) for i in range(k))
        curves["D"].append(list(e.history.error))
        curves["W"].append(list(w.history.error))
        curves["WC"].append(wc_err)
        recs.append({"seed": seed, "eagle_D_iterations": cm.first_below(e.history.error, cfg.target),
                     "estimate_W_iterations": cm.first_below(w.history.error, cfg.target),
                     "estimate_WC_iterations": cm.first_below(wc_err, cfg.target),
                     "max_identity_gap": identity, "eagle_seconds": e.seconds,
                     "estimate_seconds": w.seconds,
                     "eagle_best": float(np.min(e.history.error)),
                     "estimate_best": float(np.min(w.history.error))})
    diffs = [r["estimate_W_iterations"] - r["eagle_D_iterations"] for r in recs
             if r["estimate_W_iterations"] is not None and r["eagle_D_iterations"] is not None]
    summary = {
        "median_eagle_D_iterations": cm.censored_median([r["eagle_D_iterations"] for r in recs]),
        "median_estimate_W_iterations": cm.censored_median([r["estimate_W_iterations"] for r in recs]),
        "median_estimate_WC_iterations": cm.censored_median([r["estimate_WC_iterations"] for r in recs]),
        "fraction_both_reached": len(diffs) / len(recs),
        "iteration_difference_W_minus_D": diffs,
        "max_abs_iteration_difference": max((abs(x) for x in diffs), default=None),
        "max_identity_gap": max(r["max_identity_gap"] for r in recs),
        "median_eagle_seconds": cm.median([r["eagle_seconds"] for r in recs]),
        "median_estimate_seconds": cm.median([r["estimate_seconds"] for r in recs]),
    }
    med = {key: cm.median_curve(c) for key, c in curves.items()}
    data = {"runs": recs, "summary": summary, "median_curves": med, "target": cfg.target}
    claims = [
        cm.claim(
            "The estimation iteration converges at the same second-order rate as EAGLE "
            f"(iterations to relative error {cfg.target:g} of W vs of D, per seed)",
            "same rate (Fig 15)",
            f"median {cm.fmt(summary['median_estimate_W_iterations'])} vs "
            f"{cm.fmt(summary['median_eagle_D_iterations'])}; largest per-seed difference "
            f"{cm.fmt(summary['max_abs_iteration_difference'])}",
            summary["fraction_both_reached"] == 1.0
            and summary["max_abs_iteration_difference"] is not None
            and summary["max_abs_iteration_difference"] <= 2,
            "iteration counts within +-2 on every seed",
            "the counts differ by more than 2 on some seed, or one method missed the target"),
        cm.code_check(
            "W_k C = D_k at every iteration (the iteration telescopes from EAGLE's)",
            "exact identity (Appendix D)",
            f"max ||W_k C - D_k|| / ||D*|| = {cm.fmt(summary['max_identity_gap'])}",
            summary["max_identity_gap"] < 1e-10,
            "the identity is algebra; our two solvers (eagle, eagle_estimate) agree on it to "
            "rounding (< 1e-10)"),
    ]
    _plot(ctx, cfg, med)
    section = "\n".join([
        f"`tasks.conditioned_problem`, n = d = {cfg.n}, n' = d' = {cfg.n_prime}, kappa = "
        f"{cfg.kappa:g}, {cfg.seeds} seeds; proof constants eta = 1/3, gamma = 1 (the paper's "
        "rho = 1/(3||A||^2), eta = 1, gamma = 3 are the same steps).",
        "",
        "| quantity | median iterations to " + f"{cfg.target:g} |", "|---|---|",
        f"| EAGLE, error of D_k | {cm.fmt(summary['median_eagle_D_iterations'])} |",
        f"| estimation, error of W_k | {cm.fmt(summary['median_estimate_W_iterations'])} |",
        f"| estimation, error of W_k C | {cm.fmt(summary['median_estimate_WC_iterations'])} |",
        "",
        f"Median wall time for {cfg.max_iter} iterations: EAGLE "
        f"{cm.fmt(summary['median_eagle_seconds'])} s, estimation form "
        f"{cm.fmt(summary['median_estimate_seconds'])} s (its step also updates the d x d "
        "matrix P_k)."])
    return data, claims, section


# ------------------------------------------------------------------------ trained part


def telescoping_gap(layers: Callable[[torch.Tensor], list[torch.Tensor]], Z0: torch.Tensor,
                    C: torch.Tensor, d: int, n: int) -> dict[str, list[float]]:
    """How far an iteration is from W_k C = D_k (module docstring), per layer.

    layers : maps prompts (B, T, W) in the model's layout ([[A, C], [B, D slot]], n' = W - n
        columns, which must equal d) to [Z_0, ..., Z_L]; e.g. `ExtractedAlgorithm.run` or a
        one-seed model's layer outputs.
    Z0 : prompts whose A, B are used; their C slot is set to I_d and their D slot to 0.
    C : the general C, (d, d) or (B, d, d).
    Returns {"D": [...], "C": [...]}: for layers l = 1..L, ||X_l(C) - X_l(I) C||_F /
    ||X_l(I) C||_F over the whole batch, X_l the D slot (d' x d) or the C slot (d x d) of
    layer l's output, run once with C = I and once with the general C (float64).  Zero up
    to rounding for an iteration whose C and D updates are linear in C and whose A and B
    updates do not read C or D (EAGLE's form)."""
    Z0 = torch.as_tensor(Z0).to(torch.float64)
    if Z0.shape[-1] - n != d:
        raise ValueError(f"the prompts have n' = {Z0.shape[-1] - n} columns after the n = {n} "
                         f"of A; the identity needs n' = d = {d} (C square, as C = I_d)")
    C = torch.as_tensor(C, dtype=torch.float64)
    if C.shape[-2:] != (d, d):
        raise ValueError(f"C has shape {tuple(C.shape)}; it must be (d, d) = {(d, d)} or "
                         f"(B, d, d)")
    Z_I = Z0.clone()
    Z_I[:, :d, n:] = torch.eye(d, dtype=torch.float64)
    Z_I[:, d:, n:] = 0
    Z_C = Z_I.clone()
    Z_C[:, :d, n:] = C
    out_I, out_C = layers(Z_I), layers(Z_C)
    if len(out_I) != len(out_C) or len(out_I) < 2:
        raise ValueError("`layers` must return [Z_0, ..., Z_L] with L >= 1 for both runs")
    gaps: dict[str, list[float]] = {"D": [], "C": []}
    for ZI, ZC in zip(out_I[1:], out_C[1:], strict=True):
        for name, rows in (("D", slice(d, None)), ("C", slice(None, d))):
            ref = ZI[:, rows, n:].to(torch.float64) @ C
            diff = float(torch.linalg.norm(ZC[:, rows, n:].to(torch.float64) - ref))
            size = float(torch.linalg.norm(ref))
            gaps[name].append(diff / size if size > 0 else (0.0 if diff == 0 else float("inf")))
    return gaps


def model_layers(model) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """`layers` for `telescoping_gap` from a one-seed LinearTransformer (run in float64 on
    a copy): prompts (B, T, W) -> [Z_0, ..., Z_L]."""
    if model.num_seeds != 1:
        raise ValueError(f"model_layers needs a one-seed model, got {model.num_seeds} seeds "
                         "(use model.seed_slice(k))")
    m = copy.deepcopy(model).double()

    def layers(Z: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return [z[0] for z in m.layer_outputs(Z)]
    return layers


def score_seeds(model, ex, task) -> dict[str, list]:
    """Per seed of `ex` (the `extract` of the estimation-regime `model` on `task`), on the
    extraction's own test batch (seed ex.config["seed"], ex.config["val_size"] tasks; the
    tasks with an input norm in range, as the extraction's headline measures):

    fidelity_fixed / mse_fixed : EAGLE with the paper's estimation constants over N_l
        (eta_l = 1/3, gamma_l = 1, N_l the seed's calibration norms), its per-layer fidelity
        against the model and its test MSE;
    fidelity_adaptive / mse_adaptive : the same with per-problem rho_l = 1/(3||A_l||^2);
    fidelity_prediction : the extracted algorithm's fidelity on the D slot alone;
    identity_D / identity_C : `telescoping_gap` of the extracted algorithm (D and C slot)
        with a Gaussian d x d C (seed IDENTITY_SEED) on the same tasks;
    model_identity_D : the same gap of the model itself (reported, not claimed).
    Lists are per seed, each per layer 1..L (mse_*: one number per seed)."""
    from eaglelab.extract import ExtractedAlgorithm, held_out, layer_fidelity
    from eaglelab.extract.fidelity import block_fidelity, prediction_mse
    from eaglelab.extract.scaling import inputs_in_range

    c = model.config
    d, n, L = c.d, c.n, c.layers
    seed, size = ex.config["seed"], ex.config["val_size"]
    Z0, D = held_out(task, size, seed)
    Zc, _ = held_out(task, size, seed + 1)
    model = copy.deepcopy(model).double()
    if getattr(c, "normalise", "none") != "none":     # as `extract`: the scaled problems
        s0 = model.prompt_scale(Z0)[:, None, None]
        Z0, D, Zc = Z0 * s0, D * s0, Zc * model.prompt_scale(Zc)[:, None, None]
    inside = inputs_in_range(Z0, Zc, d, n)
    keep = torch.as_tensor(inside)
    Cgen = torch.randn(int(inside.sum()), d, d, generator=torch.Generator().manual_seed(
        IDENTITY_SEED), dtype=torch.float64)
    out: dict[str, list] = {k: [] for k in (
        "fidelity_fixed", "fidelity_adaptive", "mse_fixed", "mse_adaptive",
        "fidelity_prediction", "identity_D", "identity_C", "model_identity_D")}
    for k, sd in enumerate(ex.seeds):
        one = model.seed_slice(k)
        with torch.no_grad():
            Zm = [z[0] for z in one.layer_outputs(Z0)]
        paper = ExtractedAlgorithm("estimation", n, d, [ETA_REL] * L, [GAMMA_REL] * L,
                                   list(sd.norms))
        for key, Zp in (("fixed", paper.run(Z0)), ("adaptive", paper.run(Z0, adaptive=True))):
            out[f"fidelity_{key}"].append(layer_fidelity(Zm, Zp, inside))
            out[f"mse_{key}"].append(prediction_mse(Zp[-1], D, d, n, inside))
        out["fidelity_prediction"].append(
            block_fidelity(Zm, sd.algorithm.run(Z0), d, n, inside)["D"])
        gap = telescoping_gap(sd.algorithm.run, Z0[keep], Cgen, d, n)
        out["identity_D"].append(gap["D"])
        out["identity_C"].append(gap["C"])
        out["model_identity_D"].append(
            telescoping_gap(model_layers(one), Z0[keep], Cgen, d, n)["D"])
    out["identity_tasks"] = [int(inside.sum())]
    return out


def _trained(cfg: Config, ctx: Context) -> dict[str, Any]:
    """Train (or reuse from the run cache) the estimation regime, extract it, and score the
    extracted algorithm, EAGLE with the paper's estimation constants and the identity."""
    from eaglelab.extract import extract

    run_ = trained_run(ctx, "estimation", steps=cfg.train_steps, batch=cfg.batch, heads=1,
                       seeds=cfg.train_seeds)
    task = run_.config.task
    ex = extract(run_.model, task, val_size=cfg.val_size)
    s = ex.summary()
    per_seed = score_seeds(run_.model, ex, task)
    mean = {k: np.mean(np.asarray(v, float), axis=0).tolist() for k, v in per_seed.items()
            if k.startswith(("fidelity", "mse"))}
    eta_l = np.array([sd.eta_layers for sd in ex.seeds])
    gamma_l = np.array([sd.gamma_layers for sd in ex.seeds])
    control = untrained_summary(run_, cfg.val_size)
    return {
        # the negative control: the same fit of (eta, gamma) read from the model at step 0
        "control": {"eta_fit": control["eta"], "gamma_fit": control["gamma"],
                    "mse": control["mse"], "constants_match": _constants_match(
                        control["eta"], control["gamma"])},
        "run": run_.name, "steps": cfg.train_steps, "batch": cfg.batch,
        "seeds": [sd.seed for sd in ex.seeds], "task": task.to_dict(),
        "summary": s,
        # per-seed lists as `_training.unfaithful_reason` reads them
        "fidelity_seeds": [sd.fidelity for sd in ex.seeds],
        "mse_seeds": [sd.mse for sd in ex.seeds],
        "mse_algorithm_seeds": [sd.mse_algorithm for sd in ex.seeds],
        "norms": [sd.norms for sd in ex.seeds],
        "eta_layers": eta_l.tolist(), "gamma_layers": gamma_l.tolist(),
        "eta_layers_median": np.median(eta_l, axis=0).tolist(),
        "gamma_layers_median": np.median(gamma_l, axis=0).tolist(),
        "eta_fit": s["eta"], "gamma_fit": s["gamma"],
        "paper": {"rho_factor": PAPER_RHO_FACTOR, "eta": PAPER_ETA, "gamma": PAPER_GAMMA,
                  "eta_relative": ETA_REL, "gamma_relative": GAMMA_REL,
                  "eta_tol": ETA_TOL, "gamma_tol": GAMMA_TOL},
        "fidelity_paper_fixed": mean["fidelity_fixed"],
        "fidelity_paper_adaptive": mean["fidelity_adaptive"],
        "mse_paper_fixed": mean["mse_fixed"], "mse_paper_adaptive": mean["mse_adaptive"],
        "fidelity_prediction": mean["fidelity_prediction"],
        "mse_model": s["mse"], "mse_algorithm": s["mse_algorithm"], "mse_zero": s["zero_mse"],
        "identity_D": per_seed["identity_D"], "identity_C": per_seed["identity_C"],
        "max_identity_gap": float(np.max(per_seed["identity_D"])),
        "max_identity_gap_C": float(np.max(per_seed["identity_C"])),
        "model_identity_D": per_seed["model_identity_D"],
        "identity_tasks": per_seed["identity_tasks"][0],
    }


def _constants_match(eta: float, gamma: float) -> bool:
    """The fitted relative steps are the paper's estimation constants within the tolerances
    fixed before the runs."""
    return bool(np.isfinite(eta) and np.isfinite(gamma) and abs(eta - ETA_REL) <= ETA_TOL
                and abs(gamma - GAMMA_REL) <= GAMMA_TOL * GAMMA_REL)


def _trained_claims(t: dict) -> list:
    s = t["summary"]
    eta, gamma = t["eta_fit"], t["gamma_fit"]
    layers = ("learned per layer (median over seeds): eta_l "
              + " ".join(f"{v:.2f}" for v in t["eta_layers_median"]) + ", gamma_l "
              + " ".join(f"{v:.2f}" for v in t["gamma_layers_median"]))
    ok_constants = _constants_match(eta, gamma)
    ctrl = t.get("control")
    gap = t["max_identity_gap"]
    return [
        fidelity_claim(f"estimation (trained, {t['steps']} steps)", s, t,
                       paper="none for Appendix D; scored against Table 1's <= 6e-4 (MSE "
                       "~1e-3) for the unconstrained models (ours)"),
        cm.claim(
            "estimation (trained): the learned steps follow the paper's estimation constants "
            "rho_l = 1/(3||A_l||^2), eta = 1, gamma = 3, i.e. eta_l = 1/3 and gamma_l = 1 "
            "relative to the batch-max ||A_l||^2 (fitted: eta on layers 1-3, gamma on all)"
            + cm.AFTER_DATA,
            "eta = 1, gamma = 3 with rho = 1/(3||A||^2) (Appendix D)",
            f"eta {eta:.2f} +- {s['eta_std']:.2f}, gamma {gamma:.2f} +- {s['gamma_std']:.2f} "
            f"(relative to N_l; paper {ETA_REL:.2f}, {GAMMA_REL:.2f}); {layers}; EAGLE with "
            "the paper's constants: fidelity "
            + " ".join(f"{v:.1e}" for v in t["fidelity_paper_fixed"])
            + f", test MSE {t['mse_paper_fixed']:.2e} (per-problem rho: "
            f"{t['mse_paper_adaptive']:.2e}) vs the model's {t['mse_model']:.2e}"
            + (f"; control, the model at step 0 read the same way: eta "
               f"{cm.fmt(ctrl['eta_fit'])}, gamma {cm.fmt(ctrl['gamma_fit'])}" if ctrl else ""),
            bool(ok_constants) and ctrl is not None and not ctrl["constants_match"],
            f"eta within {ETA_TOL} of 1/3 and gamma within {GAMMA_TOL:.0%} of 1, and not so "
            "for the untrained control (the control was added after the runs)",
            f"outside the tolerances fixed before the runs (eta within {ETA_TOL} of 1/3, "
            f"gamma within {GAMMA_TOL:.0%} of 1): the trained model's steps are not the "
            "proof's, or the untrained control matches them too"),
        cm.code_check(
            "estimation (trained): W_k C = D_k for the extracted iteration (its D slot run on "
            "a general C equals its D slot run on C = I, times C, at every layer)",
            "W_k C = D_k for all k (Appendix D)",
            f"max relative difference {gap:.1e} over {t['identity_tasks']} test tasks and "
            f"{len(t['identity_D'])} seed(s) (C slot: {t['max_identity_gap_C']:.1e}; the "
            "trained transformer itself, trained on C = I only: "
            f"{float(np.max(t['model_identity_D'])):.1e})",
            bool(np.isfinite(gap) and gap < IDENTITY_TOL),
            "every iteration of EAGLE's form satisfies it by construction (C and D updates "
            f"linear in C; tolerance {IDENTITY_TOL:g}), so it checks our extraction, not the "
            "model; the transformer never saw a C other than I, so its own gap does not "
            "decide the claim either"),
    ]


def _trained_section(t: dict, cfg: Config) -> str:
    s = t["summary"]
    lines = [
        "### Trained estimation transformer (Appendix D)", "",
        f"Estimation regime (two learned query biases per layer, one head), task A: "
        f"{t['task']['d']} x {t['task']['n']} Gaussian, B = w A, C = I, D = w; "
        f"{t['steps']} steps, batch {t['batch']}, {len(t['seeds'])} seed(s) (run "
        f"`{t['run']}`); extraction on {cfg.val_size} test tasks (means over the tasks with an "
        "input norm in range, over seeds).  The paper's rho_l = 1/(3||A_l||^2), eta = 1, "
        f"gamma = 3 are eta_l = {ETA_REL:.3g}, gamma_l = {GAMMA_REL:.3g} relative to the "
        "batch-max N_l = max ||A_l||^2; 'per-problem rho' uses each task's own ||A_l||^2.",
        "",
        "| layer | learned eta_l (median) | learned gamma_l (median) | fidelity: extracted | "
        "extracted, D slot only | paper's constants (over N_l) | paper's constants "
        "(per-problem rho) | identity gap ||D_l(C) - D_l(I) C|| / ||D_l(I) C|| |",
        "|---|---|---|---|---|---|---|---|"]
    ident = np.max(np.asarray(t["identity_D"]), axis=0)
    for l in range(len(s["fidelity"])):
        lines.append(
            f"| {l + 1} | {t['eta_layers_median'][l]:.3g} | {t['gamma_layers_median'][l]:.3g} | "
            f"{s['fidelity'][l]:.1e} | {t['fidelity_prediction'][l]:.1e} | "
            f"{t['fidelity_paper_fixed'][l]:.1e} | {t['fidelity_paper_adaptive'][l]:.1e} | "
            f"{ident[l]:.1e} |")
    lines += [
        "",
        f"Fitted constants (relative to N_l): eta {t['eta_fit']:.3g} (layers 1-3), gamma "
        f"{t['gamma_fit']:.3g} (all layers); the paper's {ETA_REL:.3g} and {GAMMA_REL:.3g}.",
        "",
        "| test MSE of | value |", "|---|---|",
        f"| the trained model | {t['mse_model']:.2e} |",
        f"| its extracted algorithm | {t['mse_algorithm']:.2e} |",
        f"| EAGLE, paper's constants over N_l | {t['mse_paper_fixed']:.2e} |",
        f"| EAGLE, paper's constants, per-problem rho | {t['mse_paper_adaptive']:.2e} |",
        f"| predicting zero | {t['mse_zero']:.2e} |",
        "",
        f"The identity W_k C = D_k of the extracted iteration holds to "
        f"{t['max_identity_gap']:.1e} (C slot {t['max_identity_gap_C']:.1e}) with a Gaussian "
        f"d x d C; the trained transformer run on the same prompts is "
        f"{float(np.max(t['model_identity_D'])):.1e} away from it (it was trained on C = I "
        "only, which its query biases and the C columns of its weights may treat as a "
        "constant)."]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ figures


def _plot(ctx: Context, cfg: Config, med: dict[str, list[float]]) -> None:
    fig, axes = cm.figure(1, 1, width=6.0, height=3.9)
    ax = axes[0, 0]
    for key, method, lab, ls in (("D", "eagle", "EAGLE: error of D_k", "-"),
                                 ("W", "eagle_estimate", "estimation: error of W_k", "--"),
                                 ("WC", "eagle_estimate",
                                  "estimation: error of W_k C (= D_k's)", "none")):
        c = np.maximum(np.asarray(med[key]), 1e-17)
        st = cm.style(method, label=lab)
        if key == "WC":
            st.update(marker="o", markerfacecolor="none", markersize=6)
        else:
            st.pop("marker")
        ax.plot(np.arange(1, len(c) + 1), c, linestyle=ls, linewidth=1.8, **st)
    ax.axhline(cfg.target, color="gray", linestyle=":", linewidth=1)
    ax.set(yscale="log", xlabel="iteration", ylabel="relative error (median over seeds)",
           title=f"n = d = {cfg.n}, kappa = {cfg.kappa:g}", ylim=(1e-17, 10))
    ax.set_xlim(0, min(len(med["D"]), 40) + 1)
    ax.legend(fontsize=8)
    ctx.save_figure(fig, "estimation_convergence")


def _plot_trained(ctx: Context, t: dict) -> None:
    s = t["summary"]
    fig, axes = cm.figure(3, 1, width=4.2, height=3.4)
    ax = axes[0, 0]
    x = np.arange(1, len(s["fidelity"]) + 1)
    for key, lab, st in (("fidelity", "extracted", "o-"),
                         ("fidelity_paper_fixed", "paper's constants (over N_l)", "s:"),
                         ("fidelity_paper_adaptive", "paper's constants (per-problem rho)",
                          "^:")):
        vals = s[key] if key == "fidelity" else t[key]
        ax.semilogy(x, np.maximum(vals, 1e-32), st, label=lab)
    ax.axhline(t["mse_model"], color="k", ls="--", label="model test MSE")
    ax.axhline(s["fidelity_bound"], color="r", ls=":", label="paper's bound")
    ax.set(xlabel="layer", ylabel="||Z_model - Z_alg||^2 / #entries", xticks=x,
           title="fidelity (mean over seeds)")
    ax.legend(fontsize=7)
    for ax, key, paper, name in ((axes[0, 1], "eta_layers", ETA_REL, "eta_l"),
                                 (axes[0, 2], "gamma_layers", GAMMA_REL, "gamma_l")):
        vals = np.asarray(t[key], float)
        for row in vals:
            ax.plot(x, row, "o", color="C0", alpha=0.4, ms=4)
        ax.plot(x, np.median(vals, axis=0), "-", color="C0", label="median over seeds")
        ax.axhline(paper, color="k", ls="--", label=f"paper: {paper:.3g}")
        # learned steps can span decades across layers (e.g. a last-layer A step no
        # read-out sees): a log axis then, while the values stay positive
        pos = vals[np.isfinite(vals)]
        if pos.size and pos.min() > 0 and pos.max() / pos.min() > 30:
            ax.set_yscale("log")
        ax.set(xlabel="layer", ylabel=f"learned {name} (relative to N_l)", xticks=x,
               title=f"{name}")
        ax.legend(fontsize=7)
    ctx.save_figure(fig, "estimation_trained")
