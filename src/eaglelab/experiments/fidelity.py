"""The extracted algorithm against the transformer, three regimes (Tables 1/3), with the
evidence behind the extraction: weights (Figs 2, 12, 13), scaling laws (Figs 5, 11), the
learned sketch (Fig 4), the sparsification sweep (Fig 10), training curves (Fig 9) and
head pruning.

Per regime the one-head model is trained (shared with `layers` through the run cache of
`_training`) and extracted with `eaglelab.extract.extract`; the fidelity per layer is the
mean over seeds of ||Z_model,l - Z_alg,l||^2 / #entries on the test tasks whose input norm
is within the calibration batch's (`extract.pipeline`; the unfiltered means beside).  The
sparsification sweep re-runs every seed's weight products after dropping entries below
factor * ||W||_1 / #entries, with and without quantisation.  The pruning study trains a
multi-head model (the paper starts with up to 8 heads) and prunes it greedily to one head
per layer (per machine), reporting the held-out error before and after; it also trains the
same model pruned half-way through its steps and fine-tuned for the other half, the reading
under which one head per layer "barely changes" the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eaglelab.experiments import _common as cm
from eaglelab.experiments._training import (
    FIDELITY_PAPER,
    QUICK_TRAINING,
    REGIMES,
    TrainedConfig,
    fidelity_claim,
    if_learned,
    mse_claims,
    protocol,
    trained_run,
    untrained_summary,
)
from eaglelab.experiments.base import Context, ExperimentResult

TITLE = "Fidelity of the extracted algorithm, weights, scaling laws, sketch, pruning"
PAPER_REF = "Tables 1/3; Figs 2, 4, 5, 9, 10, 11, 12, 13"
PAPER_ETA, PAPER_GAMMA = 1.0, 1.9


@dataclass
class Config(TrainedConfig):
    factors: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
    # the pruning study: the `heads`-head model trained `steps` steps WITHOUT pruning (first
    # prune_seeds seeds), pruned greedily at the end with no fine-tuning, beside the main
    # runs (pruned at prune_at and fine-tuned); skipped when heads == 1 or prune_seeds == 0
    # (it trains one unpruned multi-head run per regime: about 15-40 min each here)
    prune_seeds: int = 1


QUICK = dict(QUICK_TRAINING, factors=(0.0, 1.5, 3.0))


def make_config(quick: bool = False, seeds: int | None = None, **overrides: Any) -> Config:
    return cm.make_config(Config, QUICK, quick, seeds, overrides)


def run(cfg: Config, ctx: Context) -> ExperimentResult:
    from eaglelab.extract import extract
    from eaglelab.extract.report import head_weights_figure, sketch_figure, weights_figure

    data: dict[str, Any] = {"regimes": {}, "pruning": {}, "controls": {}, "perturbed": {}}
    one_head = {}
    for regime in ctx.track(REGIMES, "regimes"):
        run_ = one_head[regime] = trained_run(ctx, regime, steps=cfg.steps, batch=cfg.batch,
                                              noise_std=cfg.noise_std,
                                              **protocol(cfg, cfg.steps))
        ex = extract(run_.model, run_.config.task, val_size=cfg.val_size)
        data["regimes"][regime] = _regime_data(ex, run_, cfg)
        data["controls"][regime] = _untrained_control(run_, cfg)
        data["perturbed"][regime] = _perturbed_control(run_, cfg, ex.seeds)
        ctx.save_figure(weights_figure(ex), f"weights_{regime}")
        if regime == "compute-limited":
            ctx.save_figure(sketch_figure(ex), "sketch")
        if regime == "distributed":
            ctx.save_figure(head_weights_figure(ex), "weights_distributed_heads")
    for regime in ctx.track(REGIMES if cfg.heads > 1 and cfg.prune_seeds > 0 else (),
                            "pruning"):
        from eaglelab.train import select_seeds

        run_ = trained_run(ctx, regime, steps=cfg.steps, batch=cfg.batch,
                           noise_std=cfg.noise_std, heads=cfg.heads, seeds=cfg.prune_seeds)
        data["pruning"][regime] = _pruning(run_, cfg, cfg.heads)
        if cfg.prune_at:     # the main runs are the pruned and fine-tuned models
            tuned = select_seeds(one_head[regime], range(cfg.prune_seeds))
            ft = data["pruning"][regime]["finetuned"] = _finetuned(tuned, cfg)
            # the same training evaluation set (median task MSE, first seed) at the same
            # step: the fine-tuned one head against the unpruned multi-head model
            ft["eval_median"] = _eval_median(tuned.metrics, cfg.steps)
            ft["eval_median_multihead"] = _eval_median(run_.metrics, cfg.steps)
    _plot_fidelity(ctx, data)
    _plot_scaling(ctx, data)
    _plot_sparsify(ctx, data)
    _plot_training(ctx, data)
    return ExperimentResult(name="fidelity", data=data, claims=_claims(data, cfg),
                            section=_section(data, cfg, len(ctx.seeds)), captions=CAPTIONS)


def _pruning(run_, cfg: Config, heads: int) -> dict[str, Any]:
    """Greedy pruning of a multi-head run to one head per layer (machine), with the
    held-out error before and after as mean and median over tasks (multi-head models can
    be unstable on the rare heavy-tailed task, which dominates the mean), then extraction
    of the pruned model."""
    import copy

    from eaglelab.extract import extract, held_out
    from eaglelab.extract.pipeline import HELD_OUT_SEED, VALIDATION_SEED
    from eaglelab.models import prune_heads

    model = copy.deepcopy(run_.model).double()
    Zv, Dv = held_out(run_.config.task, cfg.val_size, VALIDATION_SEED)
    pr = prune_heads(model, Zv, Dv, keep=1)          # selected on the validation batch
    Z0, D = held_out(run_.config.task, cfg.val_size, HELD_OUT_SEED)   # measured on the test batch
    before, after = _task_errors(model, Z0, D), _task_errors(pr.model, Z0, D)
    ex = extract(pr.model, run_.config.task, val_size=cfg.val_size)
    s = ex.summary()
    return {"heads": heads, "steps": cfg.steps, "run": run_.name,
            "loss_before": pr.loss_before, "loss_after": pr.loss_after,
            "median_before": float(np.median(before)), "median_after": float(np.median(after)),
            "history": pr.history, "fidelity": s["fidelity"], "mse": s["mse"],
            "faithful": s["faithful"]}


def _untrained_control(run_, cfg: Config) -> dict[str, Any]:
    s = untrained_summary(run_, cfg.val_size)
    return {k: s[k] for k in ("faithful", "learned", "mse", "zero_mse", "fidelity",
                              "meets_paper_bound", "below_mse")}


# relative sizes of the Gaussian perturbation of the trained weights, and the accuracy the
# perturbed model must keep: the control is the largest eps whose MSE on the VALIDATION
# batch stays within MATCHED x the trained first seed's (selection never on the test batch;
# until 2026-12-03 the test batch chose it - an audit finding)
PERTURBATIONS = (0.01, 0.03, 0.1, 0.3)
MATCHED = 1.5


def _perturbed_control(run_, cfg: Config, seeds) -> dict[str, Any]:
    """The learned-but-broken control, for EVERY seed: its trained weights plus Gaussian
    noise of relative size eps (per parameter tensor, eps * its RMS; generator seeded by the
    seed's position), which moves the weights off the structure the extraction reads.  The
    control of a seed is the largest eps of PERTURBATIONS whose model keeps that seed's
    accuracy ON THE VALIDATION BATCH (mean MSE over its tasks within MATCHED x the trained
    seed's, and at most the learned gate), so a rejection comes from the structure, not
    from lost accuracy, and the test batch chooses nothing; it is extracted and scored as
    the trained model.  The first seed's whole ladder is extracted too (for the report).
    Returns the first seed's record at the top ("ladder", "control", "reference") and every
    seed's under "seeds"."""
    import warnings

    import torch

    from eaglelab.extract import extract, held_out
    from eaglelab.extract.pipeline import VALIDATION_SEED
    from eaglelab.extract.summary import LEARNED, LEARNED_MSE, PAPER_FIDELITY

    Zv, Dv = held_out(run_.config.task, cfg.val_size, VALIDATION_SEED)
    zero_val = float(Dv.square().mean())

    def val_mse(model) -> float:        # mean over the validation tasks, prompts' units
        with torch.no_grad():
            return float((model.double()(Zv)[0] - Dv).square().mean())

    def scored(model) -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = extract(model, run_.config.task, val_size=cfg.val_size, sketch_draws=10).summary()
        return {k: s[k] for k in ("faithful", "learned", "mse", "zero_mse", "fidelity",
                                  "meets_paper_bound", "below_mse")}

    records = []
    for k, sd in enumerate(seeds):
        base = run_.model.seed_slice(k)
        base_val = val_mse(base.seed_slice(0))
        gen = torch.Generator().manual_seed(k)
        rows, models = [], []
        for eps in PERTURBATIONS:
            model = base.seed_slice(0)
            with torch.no_grad():
                for view in model.params().values():
                    rms = view.square().mean().sqrt()
                    noise = torch.randn(view.shape, generator=gen, dtype=torch.float64)
                    view.add_((eps * rms * noise).to(view.dtype))
            row = {"eps": eps, "val_mse": val_mse(model)}
            if k == 0:
                row.update(scored(model))
            rows.append(row)
            models.append(model)
        kept = [i for i, r in enumerate(rows)
                if r["val_mse"] <= min(MATCHED * base_val, LEARNED * zero_val, LEARNED_MSE)]
        control = None
        if kept:
            i = kept[-1]
            control = rows[i] if k == 0 else {**rows[i], **scored(models[i])}
        learned = sd.mse <= min(LEARNED * sd.layers_model["mse"][0], LEARNED_MSE)
        ref_faithful = bool(learned and max(sd.fidelity) <= PAPER_FIDELITY
                            and max(sd.fidelity) < sd.mse)
        records.append({"seed": run_.config.seeds[k], "ladder": rows, "control": control,
                        "reference": {"mse": sd.mse, "fidelity": list(sd.fidelity),
                                      "faithful": ref_faithful, "val_mse": base_val,
                                      "zero_val_mse": zero_val}})
    first = records[0]
    return {"ladder": first["ladder"], "control": first["control"],
            "reference": first["reference"], "seeds": records}


def _task_errors(model, Z0, D) -> np.ndarray:
    """Per-task MSE of a float64 model's prediction, all seeds' tasks in one array."""
    import torch

    with torch.no_grad():
        return (model(Z0) - D).square().mean(dim=(2, 3)).numpy().ravel()


def _eval_median(metrics: list[dict], step: int) -> float | None:
    """The first seed's median task MSE on the run's evaluation set at `step` (None when
    the run did not evaluate there)."""
    for m in metrics:
        if m.get("kind") == "eval" and m["step"] == step and m.get("median_mse"):
            return float(m["median_mse"][0])
    return None


def _finetuned(run_, cfg: Config) -> dict[str, Any]:
    """Held-out error (mean and median over tasks) and extraction of a run pruned to one
    head per layer (machine) half-way and fine-tuned."""
    import copy

    from eaglelab.extract import extract, held_out
    from eaglelab.extract.pipeline import HELD_OUT_SEED

    Z0, D = held_out(run_.config.task, cfg.val_size, HELD_OUT_SEED)
    err = _task_errors(copy.deepcopy(run_.model).double(), Z0, D)
    s = extract(run_.model, run_.config.task, val_size=cfg.val_size).summary()
    return {"run": run_.name, "prune_at": run_.config.train.prune_at,
            "heads_after": run_.model.config.heads,
            "median": float(np.median(err)), "mean": float(np.mean(err)),
            "fidelity": s["fidelity"], "faithful": s["faithful"]}


def _regime_data(ex, run_, cfg: Config) -> dict[str, Any]:
    import torch

    from eaglelab.extract import held_out
    from eaglelab.extract.fidelity import prediction_mse
    from eaglelab.extract.products import products_forward
    from eaglelab.extract.simplify import simplify_products

    s = ex.summary()
    task, d, n = run_.config.task, run_.config.task.d, run_.config.task.n
    Z0, D = held_out(task, cfg.val_size, ex.config["seed"])
    if run_.model.config.normalise != "none":   # the scaled problems the extraction used
        s0 = run_.model.prompt_scale(Z0)[:, None, None].to(Z0.dtype)
        Z0, D = Z0 * s0, D * s0
    sweep: dict[str, list[list[float]]] = {"sparsified": [], "quantised": [], "density": []}
    for sd in ex.seeds:
        inside = ~np.isin(np.arange(Z0.shape[0]), sd.out_of_range)
        rows = {"sparsified": [], "quantised": [], "density": []}
        for f in cfg.factors:
            for key, q in (("sparsified", False), ("quantised", True)):
                simple, rep = simplify_products(sd.products, factor=f, quantize=q, seed=0)
                rows[key].append(prediction_mse(products_forward(Z0, simple, d)[-1], D, d, n,
                                                inside))
                if not q:     # the threshold's density (quantising may zero more entries)
                    rows["density"].append(float(np.mean([np.mean(r) for r in rep.density_qk])))
        for key in sweep:
            sweep[key].append(rows[key])
    qk = [[h["qk"] for h in layer] for layer in ex.seeds[0].structure]
    vp = [[h["vp"] for h in layer] for layer in ex.seeds[0].structure]
    train = [m for m in run_.metrics if m.get("kind") == "train"]
    evals = [m for m in run_.metrics if m.get("kind") == "eval"]
    return {
        "run": run_.name, "summary": s,
        "fidelity_seeds": [sd.fidelity for sd in ex.seeds],
        "mse_seeds": [sd.mse for sd in ex.seeds],
        "mse_algorithm_seeds": [sd.mse_algorithm for sd in ex.seeds],
        "mse_simplified_seeds": [sd.mse_simplified for sd in ex.seeds],
        "out_of_range": [sd.out_of_range for sd in ex.seeds],
        "norms": [sd.norms for sd in ex.seeds],
        "steps_A": [sd.steps_A for sd in ex.seeds],
        "steps_C": [sd.steps_C for sd in ex.seeds],
        "eta_seeds": [sd.eta for sd in ex.seeds], "gamma_seeds": [sd.gamma for sd in ex.seeds],
        "ranks": [sd.ranks for sd in ex.seeds],
        "sketch": [sd.sketch for sd in ex.seeds] if ex.seeds[0].sketch else None,
        "structure_qk": qk, "structure_vp": vp,
        "sweep": {"factors": list(cfg.factors), **sweep},
        "training": {"step": [m["step"] for m in train], "loss": [m["loss"] for m in train],
                     "loss_median": [m.get("loss_median") for m in train]
                     if all("loss_median" in m for m in train) else None,
                     "skipped_total": train[-1]["skipped_total"] if train else None,
                     "spikes_total": train[-1].get("spikes_total") if train else None,
                     "rollbacks_total": train[-1]["rollbacks_total"] if train else None,
                     "spike_guard": run_.config.train.spike_guard,
                     "prune_at": run_.config.train.prune_at,
                     "final_finite": bool(torch.isfinite(run_.model.theta).all()),
                     "eval_step": [m["step"] for m in evals],
                     "eval_mse": [m["mse"] for m in evals],
                     "eval_median_mse": [m.get("median_mse") for m in evals],
                     "zero_mse": evals[0]["zero_mse"] if evals else None},
    }


# ------------------------------------------------------------------------------ claims


def _claims(data: dict, cfg: Config) -> list:
    claims = []
    budget = f"{cfg.steps} steps"
    for r in REGIMES:
        s = data["regimes"][r]["summary"]
        d = data["regimes"][r]
        claims.append(fidelity_claim(r, s, d))
        claims.append(if_learned(s, cm.claim(
            f"{r}: the same over every test task (the paper's metric; no task left out by "
            "our input-norm rule; the model must have learned over every task too)",
            FIDELITY_PAPER,
            "fidelity " + " ".join(f"{v:.1e}" for v in s["fidelity_all_tasks"])
            + f"; MSE {s['mse_all_tasks']:.1e} over all {s['tasks']} tasks per seed",
            s["faithful_all_tasks"], "within the paper's bound and below the model's own "
            "error over every task",
            "faithful over the tasks in range but not over every task: the means are set by "
            f"the tasks outside the calibrated input range ({min(s['out_of_range'])}-"
            f"{max(s['out_of_range'])} per seed)" if s["faithful"] and any(s["out_of_range"])
            else "not faithful over every task (nor over the tasks in range: "
            f"{s['faithful']})")))
        claims += mse_claims(r, s, cfg.steps)
        claims += [if_learned(s, c) for c in _canonical_claims(r, s)]
        claims.append(_control_claim(r, data["controls"][r]))
        claims.append(_perturbed_claim(r, data["perturbed"][r]))
        claims.append(_spike_claim(r, d["training"]))
        claims.append(_explosion_claim(r, s))
        claims.append(if_learned(s, cm.claim(
            f"{r}: the same on typical tasks (medians over tasks of the per-task fidelity "
            "and test MSE; relative criterion only, ours)", "(the paper reports means)",
            "max " + f"{max(s['fidelity_median']):.1e} vs median MSE {s['mse_median']:.1e}",
            s["faithful_median"], "faithful on typical tasks", _median_reason(s, budget))))
        claims.append(cm.claim(
            f"{r}: learned step constants (scaling law against the batch-max ||A_l||^2; fitted "
            "on layers 1-3, whose C is read by a later layer)",
            f"eta ~ {PAPER_ETA:g}, gamma ~ {PAPER_GAMMA:g}",
            f"eta {s['eta']:.2f} +- {s['eta_std']:.2f}, gamma {s['gamma_inner']:.2f} +- "
            f"{s['gamma_inner_std']:.2f} (all 4 layers: {s['gamma']:.2f} +- "
            f"{s['gamma_std']:.2f})",
            abs(s["eta"] - PAPER_ETA) <= 0.3 and abs(s["gamma_inner"] - PAPER_GAMMA) <= 0.5,
            "within 0.3 (eta) and 0.5 (gamma)",
            _constants_reason(s)))
        ratio = s["mse_simplified"] / s["mse"]
        claims.append(cm.claim(
            f"{r}: sparsifying (tau = 1.5 ||W||_1/#) and quantising the products loses no "
            "accuracy", "no loss", f"MSE x{ratio:.3g}", ratio <= 1.5, "within 1.5x",
            _simplify_reason(d["sweep"])))
        p = data["pruning"].get(r)
        if p is None:
            claims.append(cm.untested(
                f"{r}: pruning to one head per layer barely changes the error", "barely "
                "changes", "(not run)", "the pruning study was not run for this report "
                "(prune_seeds = 0: it trains one unpruned multi-head run per regime)"))
            continue
        pr = p["median_after"] / p["median_before"]
        claims.append(cm.claim(
            f"{r}: pruning to one head per layer{' and machine' if r == 'distributed' else ''} "
            "barely changes the error", "barely changes",
            f"{p['heads']} -> 1 heads after {p['steps']} steps, no fine-tuning (selected on the "
            f"validation batch, measured on the test batch): median task MSE x{pr:.3g}",
            pr <= 1.5,
            "within 1.5x of the median error",
            f"the best single head per layer (chosen on the validation batch) raises the "
            f"median test error {pr:.3g}x: without fine-tuning it does not carry the "
            f"{p['heads']}-head layer's computation"))
        if "finetuned" in p:
            ft = p["finetuned"]
            fr = ft["median"] / p["median_before"]
            vs = (f"; on the training evaluation set {ft['eval_median']:.2e} against "
                  f"{ft['eval_median_multihead']:.2e} ({p['heads']} heads)"
                  if ft.get("eval_median") and ft.get("eval_median_multihead") else "")
            claims.append(cm.claim(
                f"{r}: pruned to one head per layer{' and machine' if r == 'distributed' else ''}"
                f" at step {ft['prune_at']} and fine-tuned, the error barely changes",
                "barely changes", f"median task MSE x{fr:.3g} of the unpruned {p['heads']}-head "
                f"model (mean {ft['mean']:.1e}){vs}; extraction faithful: {ft['faithful']}",
                fr <= 1.5, "within 1.5x of the median error: one head per layer suffices",
                f"after fine-tuning the one-head model's median test error is still {fr:.3g}x "
                f"the unpruned {p['heads']}-head model's (capacity or too few fine-tuning "
                "steps: not separated here)"))
    u = data["regimes"]["unconstrained"]
    defect = float(np.mean([h[0]["tl_identity_defect"] for h in u["structure_qk"]]))
    cross = float(np.mean([max(h[0]["tr"], h[0]["bl"], h[0]["br"]) for h in u["structure_qk"]]))
    claims.append(cm.claim(
        "unconstrained: W_QK = diag(a1 I_n, 0) (top-left a multiple of the identity, other "
        "blocks vanish)", "yes (Fig 2)",
        f"identity defect {defect:.2f}, largest other block {cross:.2f} (of ||W||_F)",
        defect <= 0.3 and cross <= 0.1, "near-identity top-left block, small other blocks",
        "the top-left block is far from a multiple of the identity"))
    c = data["regimes"]["compute-limited"]
    ranks = [rk[0] for seed in c["ranks"] for rk in seed]
    pvals = [layer["p_entries"] for seed in c["sketch"] for layer in seed]
    claims.append(cm.claim(
        "compute-limited: the top-left W_QK block has numerical rank r = 5", "r",
        f"ranks {sorted(set(ranks))}", all(k == 5 for k in ranks), "rank r in every layer",
        "the learned block's rank is not r (threshold 5% of the top singular value)"))
    frac = float(np.mean(np.asarray(pvals) > 0.05))
    control = _gaussian_sketch_control()
    text = ("compute-limited: the block's entries are not rejected as S S^T for a random "
            "orthogonal S (learned sketch) - p > 0.05 in at least half the layers, while the "
            "same test rejects a random non-orthogonal G G^T (Gaussian G, rank r) in at least "
            "half its draws (control ours)")
    ours = (f"p > 0.05 in {frac:.0%} of layers; control G G^T passes in {control:.0%} of "
            f"{SKETCH_CONTROL_DRAWS} draws")
    if control >= 0.5:
        claims.append(cm.untested(
            text, "indistinguishable (Fig 4)", ours, "the entry test also passes a random "
            "non-orthogonal G G^T: it cannot tell a learned orthogonal sketch"))
    else:
        claims.append(cm.claim(
            text, "indistinguishable (Fig 4)", ours, frac >= 0.5,
            "not rejected, and the control is rejected",
            "the entry distribution differs from a random orthogonal projector"))
    cs = c["summary"]
    align = cs.get("value_alignment", [1.0])
    claims.append(cm.claim(
        "compute-limited: the value side uses the query sketch too (top-left W_VP block = a2 "
        "S S^T, the paper's sketched UPDATE)", "S S^T on both sides (section 3)",
        "share of the rank-r value map inside span S per layer "
        + " ".join(f"{v:.2f}" for v in align) + "; fidelity of that form "
        + " ".join(f"{v:.1e}" for v in cs.get("fidelity_paper", [])),
        min(align) >= 0.9, "one sketch on both sides",
        "the learned value map lies partly outside span S (shares above); the extracted "
        "algorithm reads it (A <- A - eta rho (A S)(A S)^T A R; faithful: "
        f"{cs['faithful']}), the paper's S S^T form of the same steps is faithful: "
        f"{cs.get('faithful_paper')}"))
    dist = data["regimes"]["distributed"]["summary"]
    cw = dist.get("cross_write", [0.0])
    claims.append(cm.claim(
        "distributed: off-machine blocks of W_VP are diag(0, a2 I_n'): only C, D are sent "
        "(heads read only their machine's columns; off-machine write strength "
        "||W_VP[:, J_nu]|| / ||W_VP[:, J_mu + N']|| at most 0.2)",
        "cross writes ~0 (Fig 13)", "off-machine write strength per layer "
        + " ".join(f"{v:.2f}" for v in cw), max(cw) <= 0.2, "local update as in the paper",
        "the heads also write other machines' A columns (A-sized communication); the "
        "extracted local update leaves these writes in its residue"))
    return claims


def _canonical_claims(r: str, s: dict) -> list:
    """The parameter-free rule: canonical EAGLE (one eta, gamma over the batch-max norm N_l)
    with the paper's constants and with the fitted ones, scored as the extraction is."""
    from eaglelab.extract.summary import PAPER_FIDELITY

    out = []
    for label, fid, mse, all_mse in (
            (f"the paper's constants (eta = {PAPER_ETA:g}, gamma = {PAPER_GAMMA:g})",
             s["fidelity_paper_constants"], s["mse_paper_constants"],
             s["mse_paper_constants_all_tasks"]),
            (f"the fitted constants (eta {s['eta']:.2f}, gamma {s['gamma']:.2f})",
             s["fidelity_canonical"], s["mse_canonical"], None)):
        ok = s["learned"] and max(fid) <= PAPER_FIDELITY and max(fid) < s["mse"]
        out.append(cm.claim(
            f"{r}: canonical EAGLE with {label} relative to the batch-max ||A_l||^2 follows "
            "the model (paper's bound and below the model's MSE at every layer)",
            "eta ~ 1, gamma ~ 1.9 describe the learned steps (section 3)",
            "fidelity " + " ".join(f"{v:.1e}" for v in fid) + f"; its test MSE {mse:.2e}"
            + (f" (all tasks {all_mse:.2e})" if all_mse is not None else "")
            + f" vs the model's {s['mse']:.2e}; learned eta per layer (median over seeds) "
            + " ".join(f"{v:.2f}" for v in s["eta_layers_median"]) + ", gamma "
            + " ".join(f"{v:.2f}" for v in s["gamma_layers_median"]),
            ok, "one (eta, gamma) pair over N_l describes the layers",
            "the learned steps vary by layer (per-layer medians), so one constant pair over "
            "N_l does not reproduce them"))
    return out


def _control_claim(r: str, control: dict):
    """Negative control: the same extraction on the untrained (step-0) model must not be
    called faithful."""
    return cm.claim(
        f"{r}: negative control - the extraction of the untrained (step-0) model is not "
        "called faithful" + cm.AFTER_DATA, "(a control of ours)",
        f"faithful: {control['faithful']} (its test MSE {control['mse']:.2e}, predicting zero "
        f"{control['zero_mse']:.2e}; fidelity up to {max(control['fidelity']):.1e})",
        not control["faithful"], "the verdict rejects a model that learned nothing",
        "the verdict calls an untrained model faithful: the criterion does not test the claim")


def _perturbed_claim(r: str, perturbed: dict):
    """Negative control for the fidelity part of the verdict: a model with a trained seed's
    accuracy whose weights were moved off the extracted structure must not be called
    faithful - for every seed.  A seed decides only where it is faithful itself and some
    eps kept its accuracy (else rejecting its control says nothing); the claim agrees when
    no deciding seed's control is faithful, and is "not tested" when no seed decides."""
    text = (f"{r}: negative control - every seed's trained weights perturbed (Gaussian, "
            "relative size eps, the largest of " + ", ".join(f"{e:g}" for e in PERTURBATIONS)
            + f" that keeps that seed's validation MSE within {MATCHED:g}x its own) are not "
            "called faithful" + cm.AFTER_DATA)
    records = perturbed.get("seeds") or [perturbed]
    deciding = [x for x in records if x["reference"]["faithful"] and x["control"] is not None]
    passed = [x for x in deciding if x["control"]["faithful"]]
    ladder = "; ".join(f"eps {row['eps']:g}: MSE {row['mse']:.1e}, fidelity up to "
                       f"{max(row['fidelity']):.1e}" for row in perturbed["ladder"])
    ours = (f"{len(deciding)} of {len(records)} seeds decide (faithful themselves, a control "
            f"kept their accuracy); controls called faithful: {len(passed)}"
            + (" (seeds " + ", ".join(f"{x['seed']} at eps {x['control']['eps']:g}"
                                      for x in passed) + ")" if passed else "")
            + "; chosen eps per deciding seed: "
            + (", ".join(f"{x['control']['eps']:g}" for x in deciding) or "-")
            + f"; first seed's ladder: {ladder}")
    if not deciding:
        return cm.untested(text, "(a control of ours)", ours,
                           "no seed is faithful with a perturbed copy of its accuracy, so the "
                           "control cannot show that the criterion bites")
    return cm.claim(
        text, "(a control of ours)", ours, not passed,
        "the fidelity criterion rejects, for every deciding seed, a model of the same "
        "accuracy whose weights left the extracted structure",
        "a perturbation keeps a seed's accuracy and its extraction within the bound: the "
        "verdict cannot tell departures of that size from the algorithm")


SPIKE_RATE = 0.01     # "occasional": at most this share of the steps spikes, per seed
RECOVERED = 2.0       # survived: the last held-out median MSE within this factor of the best


def _spike_claim(r: str, training: dict):
    """The paper's recipe sees occasional spikes and survives them (rules set when the old
    runs' counts were known, the recovery-after-prune rule after the first re-run; per
    seed): spikes (loss > 100x the running median, or non-finite) on at most SPIKE_RATE of
    the steps; no step skipped (a non-finite step the paper's recipe would
    have applied is a departure), no guard; finite weights at the end; the last held-out
    median MSE within RECOVERED of the best one seen since the last prune (the spikes did
    not hurt).  Whether the model reached the paper's accuracy is the test-MSE claim's, not
    this one's."""
    text = (f"{r}: training with the paper's recipe survives its loss spikes (per seed: spikes "
            f"on at most {SPIKE_RATE:.0%} of the steps, no step skipped, finite weights, the "
            f"last held-out median MSE within {RECOVERED:g}x of the best)" + cm.AFTER_DATA)
    paper = "occasional spikes when ||A||_2 is atypically large; the run survives (section 4)"
    steps = training["step"][-1] if training["step"] else 0
    med = [row for row in training.get("eval_median_mse") or [] if row is not None]
    if training.get("spikes_total") is None or training.get("skipped_total") is None or not med:
        return cm.untested(text, paper, "the run logged no spike counts or held-out medians",
                           "cannot: the measurement is missing (a run of an older version)")
    spikes = np.asarray(training["spikes_total"], float)
    skipped = np.asarray(training["skipped_total"], float)
    guard = training.get("spike_guard")
    finite = bool(training.get("final_finite", True))
    m = np.asarray(med, float)                         # (evaluations, seeds)
    # recovery is judged within the last phase: after a prune the best seen before it is
    # the multi-head model's, which measures the pruning, not the spikes
    start = training.get("prune_at") or 0
    steps_eval = np.asarray(training.get("eval_step") or [], float)
    if start and steps_eval.size == m.shape[0] and np.any(steps_eval > start):
        m = m[steps_eval > start]
    best = np.nanmin(np.where(np.isfinite(m), m, np.nan), axis=0)
    hurt = m[-1] / best                                # NaN / inf: did not recover
    rate = spikes / max(steps, 1)
    recovered = np.isfinite(hurt) & (hurt <= RECOVERED)
    ok = (finite and not guard and bool(np.all(skipped == 0))
          and bool(np.all(rate <= SPIKE_RATE)) and bool(np.all(recovered)))
    return cm.claim(
        text, paper,
        f"spikes (loss > 100x the running median, or non-finite) per seed over {steps} "
        "steps: " + " ".join(f"{int(v)}" for v in spikes) + f" (largest rate {rate.max():.2%}); "
        "steps not applied (non-finite): " + " ".join(f"{int(v)}" for v in skipped)
        + f"; spike guard: {guard}; finite weights: {finite}; last held-out median MSE / best "
        "seen per seed" + (f" after the prune at step {start}" if start else "") + ": "
        + " ".join(f"{v:.2g}" for v in hurt),
        ok, "every seed spiked only occasionally and recovered, with no step skipped",
        _spike_reason(finite, guard, skipped, rate, recovered))


def _spike_reason(finite, guard, skipped, rate, recovered) -> str:
    parts = []
    if guard:
        parts.append("the run used the opt-in spike guard")
    if not finite:
        parts.append("the weights ended non-finite")
    if np.any(skipped > 0):
        parts.append(f"{int((skipped > 0).sum())} seed(s) met non-finite steps the paper's "
                     "recipe would have applied")
    if np.any(rate > SPIKE_RATE):
        parts.append(f"{int((rate > SPIKE_RATE).sum())} seed(s) spiked on more than "
                     f"{SPIKE_RATE:.0%} of the steps (not occasional)")
    if not np.all(recovered):
        parts.append(f"{int((~recovered).sum())} seed(s) ended more than {RECOVERED:g}x above "
                     "their best held-out median MSE, or non-finite (the spikes hurt)")
    return "; ".join(parts) or "fails a rule"


TAIL = 95.0    # "atypically large": an input norm at or above this percentile of the batch
SKETCH_CONTROL_DRAWS = 10


def _gaussian_sketch_control() -> float:
    """Share of random G G^T (G n x r Gaussian: rank r but not a projector; n, r of the
    compute-limited model) that the entry test of `extract.properties.sketch_comparison`
    does not reject (p > 0.05)."""
    from eaglelab.extract.properties import sketch_comparison
    from eaglelab.models import ModelConfig

    c = ModelConfig(regime="compute-limited")
    n, r = c.n, c.r
    rng = np.random.default_rng(2026)
    passed = 0
    for k in range(SKETCH_CONTROL_DRAWS):
        G = rng.standard_normal((n, r))
        passed += sketch_comparison(G @ G.T, r, draws=100, seed=k)["p_entries"] > 0.05
    return passed / SKETCH_CONTROL_DRAWS


NULL_CHANCE = 0.01   # agreement needs failures that would all be at the tail by chance
                     # with at most this probability (2 or more at TAIL 95; set 2026-12-04)


def _explosion_claim(r: str, s: dict):
    """The paper's explanation of its training spikes (an atypically large ||A||_2), tested
    on the trained model's failures at test - not on the training batches: the tasks whose
    error ||pred - D||^2 / max(||D||^2, median ||D||^2) is above 100x its median (or
    non-finite) have a raw input norm ||A_0||_2 at or above the TAIL percentile of the test
    batch (the floor added after the first 2-seed run had been seen)."""
    e = s.get("exploded")
    text = (f"{r}: the test tasks the trained model fails on (error over max(||D||^2, its "
            "median) above 100x the median, or non-finite) have an atypically large ||A||_2 "
            "(input norm at or above "
            f"the {TAIL:g}th percentile of the test batch; the paper's explanation of its "
            "training spikes, tested at test time)" + cm.AFTER_DATA)
    paper = "spikes happen when ||A||_2 is atypically large (section 4)"
    if not e or not sum(e["count"]):
        return cm.untested(text, paper, f"no test task exploded ({e['count'] if e else '-'} per "
                           "seed)", "cannot: nothing failed to explain")
    pct = np.asarray(e["norm_percentiles"])
    # were failures unrelated to the norm, each would sit in the top (100 - TAIL)% by chance;
    # the seeds share one test batch, so a task failing on several seeds counts once
    distinct = int(e.get("distinct_tasks", len(pct)))
    p_null = ((100 - TAIL) / 100) ** distinct
    ours = ("exploded tasks per seed: " + " ".join(map(str, e["count"])) + f" of {s['tasks']}; "
            f"their input-norm percentiles: min {pct.min():.1f}, median {np.median(pct):.1f}; "
            f"{e['out_of_range']} of them outside the calibrated range; {distinct} distinct "
            f"task(s); chance that all {distinct} lie at or above the {TAIL:g}th percentile "
            f"with no relation to the norm: {p_null:.1e}")
    if pct.min() >= TAIL and p_null > NULL_CHANCE:
        return cm.untested(text, paper, ours,
                           f"too few failures: {distinct} distinct task(s) at the tail happen "
                           "by chance with "
                           f"probability {p_null:.2g} > {NULL_CHANCE:g}")
    return cm.claim(
        text, paper, ours,
        bool(pct.min() >= TAIL), "every failure is a task with an atypically large input norm",
        f"{int(np.sum(pct < TAIL))} failing task(s) have an input norm below the {TAIL:g}th "
        "percentile: not (only) the norm")


def _schedule_table(data: dict) -> list[str]:
    """The learned per-layer constants (median over seeds) beside two parameter-free
    schedules read from the data (`extract.scaling.reference_steps`): the C step of optimal
    GD and the cubic A step that equalises the extreme singular values, for the medians
    over tasks of s_max and s_min, both relative to the batch-max N_l."""
    lines = ["Learned step constants per layer (median over seeds, relative to the batch-max "
             "||A_l||^2) beside two simple schedules from the data at each layer (ours, "
             "`extract.scaling.reference_steps`), with s_max and s_min the medians over tasks "
             "of the largest and the rank-th singular value of A_l (each median on its own): "
             "gamma_gd = 2 N_l / (s_max^2 + s_min^2), the optimal fixed GD step for that "
             "spectrum, and eta_eq = N_l / (s_min^2 + s_min s_max + s_max^2), the cubic step "
             "that maps s_min and s_max to the same value.", "",
             "| regime | eta_l learned | eta_eq | gamma_l learned | gamma_gd | layers 1-3 within "
             "1.5x (eta, gamma) |", "|---|---|---|---|---|---|"]
    for r in REGIMES:
        s = data["regimes"][r]["summary"]
        ref = s.get("reference_layers_median")
        if not ref:
            continue
        el, gl = np.asarray(s["eta_layers_median"]), np.asarray(s["gamma_layers_median"])
        ee, gg = np.asarray(ref["eta_equal"]), np.asarray(ref["gamma_gd"])

        def close(x, y):
            ratio = np.abs(x[:-1] / y[:-1])
            return bool(np.all((ratio <= 1.5) & (ratio >= 1 / 1.5)))
        fmt = lambda v: " ".join(f"{x:.2f}" for x in v)  # noqa: E731
        lines.append(f"| {r} | {fmt(el)} | {fmt(ee)} | {fmt(gl)} | {fmt(gg)} | "
                     f"{close(el, ee)}, {close(gl, gg)} |")
    return lines


def _constants_reason(s: dict) -> str:
    """Why the fitted (eta, gamma) miss the paper's, read from the per-layer medians (layers
    1..L-1: the last layer's A step is never read, its C step is a read-out)."""
    eta, gamma = s["eta_layers_median"], s["gamma_layers_median"]
    text = ("per-layer medians over seeds: eta " + " ".join(f"{v:.2f}" for v in eta)
            + ", gamma " + " ".join(f"{v:.2f}" for v in gamma))
    varying = []
    for name, v in (("eta", eta), ("gamma", gamma)):
        inner = np.abs(np.asarray(v[:-1] if len(v) > 1 else v, float))
        spread = inner.max() / max(inner.min(), 1e-300)
        if spread > 2:
            varying.append(f"{name} varies {spread:.2g}x over layers 1-{len(inner)}")
    if varying:
        return (text + "; " + ", ".join(varying) + ", so no single constant over N_l describes "
                "them and the fit through the origin depends on the layer mix")
    return (text + "; eta and gamma each vary less than 2x over layers 1-"
            f"{max(len(eta) - 1, 1)}, at other values than the paper's")


def _simplify_reason(sweep: dict) -> str:
    """Which simplification step costs the accuracy, read from the sweep (medians over
    seeds): quantising the unthresholded products, or the threshold itself."""
    factors = list(sweep["factors"])
    med_s = np.median(np.asarray(sweep["sparsified"]), axis=0)
    med_q = np.median(np.asarray(sweep["quantised"]), axis=0)
    parts = []
    if 0.0 in factors:
        i = factors.index(0.0)
        parts.append(f"quantising alone (no threshold) gives median MSE {med_q[i]:.2e} against "
                     f"{med_s[i]:.2e} unquantised")
    if 1.5 in factors:
        i = factors.index(1.5)
        parts.append(f"the threshold 1.5 alone gives {med_s[i]:.2e}, with quantising "
                     f"{med_q[i]:.2e}")
    return "the simplified products lose accuracy: " + "; ".join(parts) + " (sweep figure)"


def _median_reason(s: dict, budget: str) -> str:
    """Why the medians miss, with what restoring the structured blocks' residue gives."""
    text = f"not faithful after {budget} on typical tasks"
    res = (s.get("residue") or {}).get("in_structure")
    if res:
        text += (": the learned residue inside the structured blocks (patternless) carries it; "
                 "putting it back takes the fidelity to " + " ".join(f"{v:.1e}" for v in res))
    return text


# ------------------------------------------------------------------------------ section


def _section(data: dict, cfg: Config, seeds: int) -> str:
    protocol = (f"{cfg.heads} heads per layer (machine), pruned greedily to one on a "
                f"validation batch at step {cfg.prune_at} and fine-tuned"
                if cfg.prune_at else f"{cfg.heads} head(s) per layer (machine), no pruning")
    lines = [f"Training: {cfg.steps} steps, batch {cfg.batch}, {seeds} seed(s), {protocol}; "
             f"extraction on {cfg.val_size} test tasks.  Pruning study: {cfg.heads} heads, "
             f"{cfg.steps} steps unpruned, {cfg.prune_seeds} seed(s).", "",
             "| regime | layer 1 | layer 2 | layer 3 | layer 4 | test MSE | Nystrom MSE |",
             "|---|---|---|---|---|---|---|"]
    for r in REGIMES:
        s = data["regimes"][r]["summary"]
        cells = [f"{m:.1e} +- {sd:.0e}" for m, sd in zip(s["fidelity"], s["fidelity_std"],
                                                         strict=True)]
        lines.append(f"| {r} | " + " | ".join(cells) + f" | {s['mse']:.2e} | "
                     f"{s['nystrom_mse']:.1e} |")
        if any(s["out_of_range"]):
            lines.append(f"| {r}, all {s['tasks']} tasks (input norm out of range: "
                         f"{', '.join(map(str, s['out_of_range']))} per seed) | "
                         + " | ".join(f"{v:.1e}" for v in s["fidelity_all_tasks"])
                         + f" | {s['mse_all_tasks']:.2e} | |")
        lines.append(f"| {r}, median over tasks | "
                     + " | ".join(f"{v:.1e}" for v in s["fidelity_median"])
                     + f" | {s['mse_median']:.2e} (median) | |")
        if "fidelity_paper" in s:
            lines.append(f"| {r}, paper's form ({s['paper_form']}) | "
                         + " | ".join(f"{v:.1e}" for v in s["fidelity_paper"])
                         + f" | {s['mse_paper']:.2e} (its MSE) | |")
    lines += ["", "Where the models depart from the extracted algorithm (`eaglelab.extract.residue`):"
              " fidelity per layer (mean over tasks and seeds) of the structure the algorithm "
              "reads, with the learned residue of the structured blocks put back, and with that "
              "of the single block that helps most (geometric mean over layers).", "",
              "| regime | structure only (= extracted) | + residue of QK tl, VP tl, VP br | best "
              "single block | + its residue |", "|---|---|---|---|---|"]
    for r in REGIMES:
        res = data["regimes"][r]["summary"].get("residue")
        if not res:
            continue
        single = {k: float(np.mean(np.log(v))) for k, v in res.items()
                  if k not in ("structured", "in_structure")}
        best = min(single, key=single.get)
        cells = [" ".join(f"{v:.1e}" for v in res[k]) for k in ("structured", "in_structure", best)]
        lines.append(f"| {r} | {cells[0]} | {cells[1]} | {best} | {cells[2]} |")
    lines += ["", *_schedule_table(data)]
    lines += ["", "| regime | heads | median task MSE before pruning | after | mean before | "
              "mean after | fidelity after (max) | pruned half-way + fine-tuned: median | "
              "mean | fidelity (max) |", "|---|---|---|---|---|---|---|---|---|---|"]
    if not data["pruning"]:
        lines.append("| (the pruning study was not run: prune_seeds = 0) | | | | | | | | | |")
    for r in (r for r in REGIMES if r in data["pruning"]):
        p = data["pruning"][r]
        ft = p.get("finetuned")
        tail = (f"{ft['median']:.2e} | {ft['mean']:.2e} | {max(ft['fidelity']):.1e}"
                if ft else "| |")
        lines.append(f"| {r} | {p['heads']} | {p['median_before']:.2e} | "
                     f"{p['median_after']:.2e} | {np.mean(p['loss_before']):.2e} | "
                     f"{np.mean(p['loss_after']):.2e} | {max(p['fidelity']):.1e} | {tail} |")
    return "\n".join(lines)


CAPTIONS = {
    "fidelity.png": "Fidelity per layer (mean and spread over seeds) against the model's test "
                    "MSE (dashed), both over the test tasks with an input norm in range; dotted: the paper's "
                    "bound 6e-4, "
                    "three regimes (Tables 1/3).",
    "scaling.png": "Learned steps -a1 a2 (top) and -a1 a3 (bottom) against 1/N_l on log-log "
                   "axes (a line of slope 1 is a constant over N_l), N_l the batch-max "
                   "||A_l||^2, numbered by layer, one colour per seed; red dotted: the paper's "
                   "eta = 1, gamma = 1.9; dashed: the "
                   "fitted eta and gamma; hollow: the last layer's A step, which no read-out "
                   "sees and the eta fit leaves out (Figs 5, 11).",
    "weights_distributed_heads.png": "Distributed: W_QK and W_VP of every head of layer 1 "
                                     "(first seed), machine column blocks outlined: a head "
                                     "reads only its machine's block and the shared columns "
                                     "(rows), any nonzero outside its own column block is a "
                                     "write to another machine (Fig 13).",
    "sketch.png": "Compute-limited: the learned top-left W_QK block against a random S S^T "
                  "(Fig 4).",
    "sparsify.png": "Test MSE of the model rebuilt from sparsified (and quantised) products "
                    "against the threshold factor; the paper's factor is 1.5 (Fig 10).",
    "training.png": "Training loss logged every 100 steps (the median batch loss of each "
                    "interval, median over seeds, band: min-max over seeds) and the held-out "
                    "MSE as mean and as median over tasks (Fig 9); the spike counts are in "
                    "the spike claim.",
    **{f"weights_{r}.png": f"{r}: W_QK and W_VP per layer, first seed (Figs 2, 12, 13)."
       for r in REGIMES},
}


# ------------------------------------------------------------------------------ figures


def _plot_fidelity(ctx: Context, data: dict) -> None:
    fig, axes = cm.figure(3, 1, width=4.2, height=3.4)
    for ax, r in zip(axes[0], REGIMES, strict=True):
        s = data["regimes"][r]["summary"]
        f = np.asarray(data["regimes"][r]["fidelity_seeds"])
        x = np.arange(1, f.shape[1] + 1)
        ax.semilogy(x, f.mean(axis=0), "o-", label="extracted")
        if f.shape[0] > 1:
            ax.fill_between(x, f.min(axis=0), f.max(axis=0), alpha=0.25)
        ax.semilogy(x, s["fidelity_canonical"], "s:", label="canonical EAGLE")
        if "fidelity_paper" in s:
            ax.semilogy(x, s["fidelity_paper"], "^:", label=f"paper's form ({s['paper_form']})")
        ax.semilogy(x, s["fidelity_paper_constants"], "d:", label="EAGLE, eta 1, gamma 1.9")
        ax.axhline(s["mse"], color="k", ls="--", label="model test MSE")
        ax.axhline(s["fidelity_bound"], color="r", ls=":", label="paper's bound")
        # a diverging canonical run (e.g. the local reading with fitted constants) would
        # squash the scale: keep the model's error and the extracted fidelity in view
        top = 100 * max(float(f.max()), s["mse"])
        ax.set_ylim(top=top)
        if max(s["fidelity_canonical"] + s["fidelity_paper_constants"]) > top:
            ax.annotate("canonical diverges", (0.02, 0.95), xycoords="axes fraction",
                        fontsize=7, va="top")
        ax.set(xlabel="layer", title=r, xticks=x)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("||Z_model - Z_alg||^2 / #entries")
    ctx.save_figure(fig, "fidelity")


def _plot_scaling(ctx: Context, data: dict) -> None:
    fig, axes = cm.figure(3, 2, width=4.0, height=3.2)
    for j, r in enumerate(REGIMES):
        d = data["regimes"][r]
        s = d["summary"]
        for i, (key, const, name) in enumerate((("steps_A", s["eta"], "eta"),
                                                ("steps_C", s["gamma"], "gamma"))):
            ax = axes[i, j]
            xmin, xmax = np.inf, 0.0
            for k, (N, y) in enumerate(zip(d["norms"], d[key], strict=True)):
                x = 1.0 / np.asarray(N)
                y = np.abs(np.asarray(y))          # log axes: magnitudes (steps are > 0)
                xmin, xmax = min(xmin, float(x.min())), max(xmax, float(x.max()))
                # the last layer's A update is never read, so eta is fitted without it
                fit = slice(None, -1) if i == 0 and len(x) > 1 else slice(None)
                ax.plot(x[fit], np.asarray(y)[fit], "o", color=f"C{k % 10}", alpha=0.7)
                if i == 0 and len(x) > 1:
                    ax.plot(x[-1:], y[-1:], "o", mfc="none", color=f"C{k % 10}", alpha=0.7)
                for l, (xi, yi) in enumerate(zip(x, y, strict=True)):
                    if k == 0:
                        ax.annotate(str(l + 1), (xi, yi), fontsize=7, xytext=(3, 3),
                                    textcoords="offset points")
            grid = np.geomspace(xmin / 1.5, xmax * 1.5, 20)
            ax.loglog(grid, abs(const) * grid, "k--", label=f"fit: {name} = {const:.2f}"
                      + (" (layers 1-3)" if i == 0 else " (all layers)"))
            paper = PAPER_ETA if i == 0 else PAPER_GAMMA
            ax.loglog(grid, paper * grid, "r:", label=f"paper: {name} = {paper:g}")
            ax.set(xlabel="1 / N_l", ylabel="|-a1 a2|" if i == 0 else "|-a1 a3|",
                   title=f"{r}: {name}")
            ax.legend(fontsize=7)
    ctx.save_figure(fig, "scaling")


def _plot_sparsify(ctx: Context, data: dict) -> None:
    fig, axes = cm.figure(3, 1, width=4.2, height=3.4)
    for ax, r in zip(axes[0], REGIMES, strict=True):
        sw = data["regimes"][r]["sweep"]
        x = sw["factors"]
        ax.semilogy(x, np.median(sw["sparsified"], axis=0), "o-", label="sparsified")
        ax.semilogy(x, np.median(sw["quantised"], axis=0), "s-", label="+ quantised")
        ax.axhline(float(np.median(data["regimes"][r]["mse_seeds"])), color="k", ls="--",
                   label="trained model")
        ax.axvline(1.5, color="grey", lw=0.8)
        ax.set(xlabel="threshold factor (tau = factor ||W||_1 / #)", title=r)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("test MSE (median over seeds)")
    ctx.save_figure(fig, "sparsify")


def _plot_training(ctx: Context, data: dict) -> None:
    fig, axes = cm.figure(3, 1, width=4.2, height=3.4)
    for ax, r in zip(axes[0], REGIMES, strict=True):
        t = data["regimes"][r]["training"]
        if not t["step"]:
            continue
        # the median batch loss of each log interval (median over seeds; band: seeds' range);
        # interval means carry every applied spike (up to 1e30), so they set no axis
        med = np.asarray(t["loss_median"] if t.get("loss_median") else t["loss"], float)
        ax.semilogy(t["step"], np.median(med, axis=1), label="batch loss (interval median)")
        if med.shape[1] > 1:
            ax.fill_between(t["step"], med.min(axis=1), med.max(axis=1), alpha=0.25)
        top = 30 * float(np.nanmax(med))
        if t["zero_mse"]:
            top = max(top, 30 * t["zero_mse"])
        ax.semilogy(t["eval_step"], np.median(np.asarray(t["eval_mse"]), axis=1), "o",
                    ms=3, label="held-out MSE (mean over tasks)")
        ax.set_ylim(top=top)
        if all(v is not None for v in t["eval_median_mse"]):
            ax.semilogy(t["eval_step"], np.median(np.asarray(t["eval_median_mse"]), axis=1),
                        "k-", lw=1, label="held-out MSE (median over tasks)")
        if t["zero_mse"]:
            ax.axhline(t["zero_mse"], color="grey", ls=":", label="predict zero")
        ax.set(xlabel="step", title=r)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("MSE")
    ctx.save_figure(fig, "training")
