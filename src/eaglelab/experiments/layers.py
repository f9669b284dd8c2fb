"""Layer-wise quantities of trained transformers in the three regimes (Figs 3, 14) and the
per-layer fidelity of the extracted algorithm (Tables 1/3).

Per regime: train (the paper's recipe; quick mode: a few hundred steps at a smaller batch),
extract with `eaglelab.extract.extract`, and record for every layer input l = 0..L the
median condition number of A_l over held-out tasks (over the top s singular values: the
data has rank s) and the MSE of the D-slot read-out, for the model and for the extracted
algorithm, plus the fidelity per layer and the fitted eta, gamma.

Fig 14 repeats this on noisy data: the brief's noise variant adds i.i.d. Gaussian noise of
variance sigma^2 = 0.01 (noisy_std = 0.1) to every entry of X, the hidden block included, so
no read-out can beat an MSE of sigma^2 on the noisy targets.  noisy_steps / noisy_seeds
(0: as the clean runs) set its training budget; noisy_std = 0 skips it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eaglelab.experiments import _common as cm
from eaglelab.experiments._training import (
    QUICK_TRAINING,
    REGIMES,
    TrainedConfig,
    fidelity_claim,
    protocol,
    trained_run,
)
from eaglelab.experiments.base import Context, ExperimentResult

TITLE = "Layer-wise quantities and fidelity of trained transformers, three regimes"
PAPER_REF = "Figs 3, 14; Tables 1/3"


@dataclass
class Config(TrainedConfig):
    noisy_std: float = 0.1       # Fig 14: noise of variance 0.01 on every entry of X
    noisy_steps: int = 0         # 0: the clean runs' steps
    noisy_seeds: int = 0         # 0: the clean runs' seeds


QUICK = dict(QUICK_TRAINING)


def make_config(quick: bool = False, seeds: int | None = None, **overrides: Any) -> Config:
    return cm.make_config(Config, QUICK, quick, seeds, overrides)


def _regime(ctx: Context, cfg: Config, regime: str, noise_std: float, steps: int,
            seeds: int | None) -> dict[str, Any]:
    from eaglelab.extract import extract

    run_ = trained_run(ctx, regime, steps=steps, batch=cfg.batch, noise_std=noise_std,
                       seeds=seeds, **protocol(cfg, steps))
    ex = extract(run_.model, run_.config.task, val_size=cfg.val_size)
    return {
        "summary": ex.summary(),
        "run": run_.name,
        "noise_std": noise_std, "steps": steps, "seeds": len(ex.seeds),
        "kappa_model": [sd.layers_model["kappa"] for sd in ex.seeds],
        "mse_model": [sd.layers_model["mse"] for sd in ex.seeds],
        "mse_seeds": [sd.mse for sd in ex.seeds],
        "mse_algorithm_seeds": [sd.mse_algorithm for sd in ex.seeds],
        "fidelity_seeds": [sd.fidelity for sd in ex.seeds],
        "kappa_algorithm": [sd.layers_algorithm["kappa"] for sd in ex.seeds],
        "mse_algorithm": [sd.layers_algorithm["mse"] for sd in ex.seeds],
        "eta_layers": [sd.eta_layers for sd in ex.seeds],
        "gamma_layers": [sd.gamma_layers for sd in ex.seeds],
    }


def _medians(per_regime: dict) -> dict:
    return {r: {k: np.median(np.asarray(v[k]), axis=0).tolist()
                for k in ("kappa_model", "mse_model", "kappa_algorithm", "mse_algorithm")}
            for r, v in per_regime.items()}


def run(cfg: Config, ctx: Context) -> ExperimentResult:
    per_regime = {r: _regime(ctx, cfg, r, cfg.noise_std, cfg.steps, None)
                  for r in ctx.track(REGIMES, "regimes")}
    noisy: dict[str, dict] = {}
    if cfg.noisy_std > 0:
        steps, seeds = cfg.noisy_steps or cfg.steps, cfg.noisy_seeds or None
        noisy = {r: _regime(ctx, cfg, r, cfg.noisy_std, steps, seeds)
                 for r in ctx.track(REGIMES, "noisy regimes")}
    med, med_noisy = _medians(per_regime), _medians(noisy)
    claims = []
    for r in REGIMES:
        mse = med[r]["mse_model"]
        kap = med[r]["kappa_model"]
        drop = mse[0] / mse[-1]
        claims.append(cm.claim(
            f"{r}: the D-slot error (median over seeds) falls at every layer and the 4 layers "
            "cut it by one to two orders of magnitude", "10x-100x (Fig 3)", f"{drop:.1f}x, monotone: "
            f"{all(b < a for a, b in zip(mse, mse[1:], strict=False))}",
            drop >= 10 and all(b < a for a, b in zip(mse, mse[1:], strict=False)),
            "as in the paper", SLOW_REASON.get(r, "short training (quick mode) or a regime that "
                                                  "has not converged")))
        claims.append(cm.claim(
            f"{r}: the condition number of A_l (median over seeds) falls through the layers "
            "(by at least "
            f"{KAPPA_FALL:g}x)" + cm.AFTER_DATA, "falls (Fig 3)",
            f"{kap[0]:.3g} -> {kap[-1]:.3g} ({kap[0] / kap[-1]:.2g}x)",
            kap[0] >= KAPPA_FALL * kap[-1], "the layers precondition A as EAGLE does",
            "A_l is conditioned by less than the stated factor"))
        s = per_regime[r]["summary"]
        claims.append(fidelity_claim(r, s, per_regime[r]))
    claims += _noisy_claims(cfg, med_noisy) if noisy else []
    _plot(ctx, med, "layers")
    captions = {"layers.png": "Median over seeds of kappa(A_l) and the D-slot MSE per layer: "
                              "transformer (solid) and extracted algorithm (dashed) (Fig 3)."}
    rows = ["| data | regime | test MSE | fidelity per layer | eta (fit, layers 1-3) | gamma "
            "(fit, layers 1-3) | gamma (fit, all layers) |", "|---|---|---|---|---|---|---|"]
    for label, group in (("clean", per_regime), ("noisy", noisy)):
        for r, v in group.items():
            s = v["summary"]
            rows.append(f"| {label} (sigma {v['noise_std']:g}, {v['steps']} steps x "
                        f"{v['seeds']}) | {r} | {s['mse']:.2e} | "
                        + " ".join(f"{x:.1e}" for x in s["fidelity"])
                        + f" | {s['eta']:.2f} +- {s['eta_std']:.2f} | {s['gamma_inner']:.2f} +- "
                        f"{s['gamma_inner_std']:.2f} | {s['gamma']:.2f} +- {s['gamma_std']:.2f} |")
    if noisy:
        _plot(ctx, med_noisy, "layers_noisy", floor=cfg.noisy_std ** 2)
        captions["layers_noisy.png"] = (
            f"As Fig 3 on noisy data (noise variance {cfg.noisy_std ** 2:g} on every entry; "
            "dotted: that variance, the floor of the D-slot MSE on noisy targets) (Fig 14).")
    section = "\n".join([
        f"Training: {cfg.steps} steps, batch {cfg.batch}, {len(ctx.seeds)} seed(s), noise "
        f"{cfg.noise_std:g}; extraction on {cfg.val_size} held-out tasks.", "", *rows])
    return ExperimentResult(name="layers", data={"regimes": per_regime, "median": med,
                                                 "noisy": noisy, "median_noisy": med_noisy},
                            claims=claims, section=section, captions=captions)


KAPPA_FALL = 2.0   # "kappa falls" needs at least this factor from A_0 to A_L (rule ours)

# a possible cause, not measured here, named as such in the report
SLOW_REASON = {
    "compute-limited": "possible cause (not measured here): each layer sees A through a "
                       "rank-5 sketch of its n = 18 columns, and sketched EAGLE needs about "
                       "n/r times the iterations (measured for the solver in `sketched`)",
}


def _noisy_claims(cfg: Config, med: dict) -> list[dict]:
    """Fig 14: with noise the layers still condition A and cut the error, down to the noise
    floor sigma^2 that no read-out of noisy targets can beat."""
    out = []
    floor = cfg.noisy_std ** 2
    for r, m in med.items():
        mse, kap = m["mse_model"], m["kappa_model"]
        excess = (mse[0] - floor) / max(mse[-1] - floor, 1e-12)
        monotone = all(b < a for a, b in zip(mse, mse[1:], strict=False))
        out.append(cm.claim(
            f"{r}, noisy data (variance {floor:g}; medians over seeds): the D-slot error falls "
            "at every layer, its excess over the noise floor is cut at least 3x (ours), and "
            f"kappa(A_l) falls by at least {KAPPA_FALL:g}x" + cm.AFTER_DATA,
            "alike to the clean case (Fig 14)",
            f"MSE {mse[0]:.3g} -> {mse[-1]:.3g} (floor {floor:g}; excess over the floor cut "
            f"{excess:.1f}x), monotone: {monotone}; kappa {kap[0]:.3g} -> {kap[-1]:.3g} "
            f"(needs {KAPPA_FALL:g}x)",
            monotone and kap[0] >= KAPPA_FALL * kap[-1] and excess >= 3,
            "the layers act as in the clean case", SLOW_REASON.get(
                r, "the noisy model does not precondition A or reduce the error layer by layer")))
    return out


def _plot(ctx: Context, med: dict, name: str, floor: float | None = None) -> None:
    fig, axes = cm.figure(2, 1, width=5.0, height=3.6)
    for i, r in enumerate(REGIMES):
        m = med[r]
        x = np.arange(len(m["kappa_model"]))
        axes[0, 0].semilogy(x, m["kappa_model"], "o-", color=f"C{i}", label=r)
        axes[0, 0].semilogy(x, m["kappa_algorithm"], "x--", color=f"C{i}")
        axes[0, 1].semilogy(x, m["mse_model"], "o-", color=f"C{i}", label=r)
        axes[0, 1].semilogy(x, m["mse_algorithm"], "x--", color=f"C{i}")
    if floor is not None:
        axes[0, 1].axhline(floor, color="k", ls=":", lw=1, label="noise floor")
    axes[0, 0].set(xlabel="layer l", ylabel="median kappa(A_l)", title="conditioning of A_l")
    axes[0, 1].set(xlabel="layer l", ylabel="MSE of the D slot", title="error of D_l")
    for ax in axes.flat:
        ax.legend(fontsize=8)
    ctx.save_figure(fig, name)
