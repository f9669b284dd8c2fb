"""Layer-wise quantities of trained transformers in the three regimes (Figs 3, 14) and the
per-layer fidelity of the extracted algorithm (Tables 1/3).

Per regime: train (the paper's recipe; quick mode: a few hundred steps at a smaller batch),
extract with `eaglelab.extract.extract`, and record for every layer input l = 0..L the
median condition number of A_l over held-out tasks (over the top s singular values: the
data has rank s) and the MSE of the D-slot read-out, for the model and for the extracted
algorithm, plus the fidelity per layer and the fitted eta, gamma.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eaglelab.experiments import _common as cm
from eaglelab.experiments._training import QUICK_TRAINING, REGIMES, TrainedConfig, trained_run
from eaglelab.experiments.base import Context, ExperimentResult

TITLE = "Layer-wise quantities and fidelity of trained transformers, three regimes"
PAPER_REF = "Figs 3, 14; Tables 1/3"


@dataclass
class Config(TrainedConfig):
    pass


QUICK = dict(QUICK_TRAINING)


def make_config(quick: bool = False, seeds: int | None = None, **overrides: Any) -> Config:
    return cm.make_config(Config, QUICK, quick, seeds, overrides)


def run(cfg: Config, ctx: Context) -> ExperimentResult:
    from eaglelab.extract import extract

    per_regime: dict[str, dict] = {}
    for regime in ctx.track(REGIMES, "regimes"):
        run_ = trained_run(ctx, regime, steps=cfg.steps, batch=cfg.batch,
                           noise_std=cfg.noise_std)
        ex = extract(run_.model, run_.config.task, val_size=cfg.val_size)
        s = ex.summary()
        per_regime[regime] = {
            "summary": s,
            "run": run_.run_dir.name,
            "kappa_model": [sd.layers_model["kappa"] for sd in ex.seeds],
            "mse_model": [sd.layers_model["mse"] for sd in ex.seeds],
            "kappa_algorithm": [sd.layers_algorithm["kappa"] for sd in ex.seeds],
            "mse_algorithm": [sd.layers_algorithm["mse"] for sd in ex.seeds],
            "eta_layers": [sd.eta_layers for sd in ex.seeds],
            "gamma_layers": [sd.gamma_layers for sd in ex.seeds],
        }
    med = {r: {k: np.median(np.asarray(v[k]), axis=0).tolist()
               for k in ("kappa_model", "mse_model", "kappa_algorithm", "mse_algorithm")}
           for r, v in per_regime.items()}
    claims = []
    for r in REGIMES:
        mse = med[r]["mse_model"]
        kap = med[r]["kappa_model"]
        drop = mse[0] / mse[-1]
        claims.append(cm.claim(
            f"{r}: the D-slot error falls at every layer and the 4 layers cut it by one to two "
            "orders of magnitude", "10x-100x (Fig 3)", f"{drop:.1f}x, monotone: "
            f"{all(b < a for a, b in zip(mse, mse[1:], strict=False))}",
            drop >= 10 and all(b < a for a, b in zip(mse, mse[1:], strict=False)),
            "as in the paper", "short training (quick mode) or a regime that has not converged"))
        claims.append(cm.claim(
            f"{r}: the condition number of A_l falls through the layers",
            "falls (Fig 3)", f"{kap[0]:.3g} -> {kap[-1]:.3g}", kap[-1] < kap[0],
            "the layers precondition A as EAGLE does", "A_l is not being conditioned"))
        s = per_regime[r]["summary"]
        claims.append(cm.claim(
            f"{r}: the extracted algorithm's fidelity is below the model's test MSE at every "
            "layer", "<= 6e-4 vs MSE ~1e-3 (Table 1, 10 seeds, 20k steps)",
            "fidelity " + " ".join(f"{v:.1e}" for v in s["fidelity"]) + f"; MSE {s['mse']:.1e}",
            s["faithful"], "faithful",
            "not faithful at this budget: learned off-structure noise in the A block "
            "(see docs/demo.md and the `fidelity` experiment)"))
    _plot(ctx, med)
    rows = ["| regime | test MSE | fidelity per layer | eta (fit, layers 1-3) | gamma (fit, "
            "layers 1-3) | gamma (fit, all layers) |", "|---|---|---|---|---|---|"]
    for r in REGIMES:
        s = per_regime[r]["summary"]
        rows.append(f"| {r} | {s['mse']:.2e} | " + " ".join(f"{v:.1e}" for v in s["fidelity"])
                    + f" | {s['eta']:.2f} +- {s['eta_std']:.2f} | {s['gamma_inner']:.2f} +- "
                    f"{s['gamma_inner_std']:.2f} | {s['gamma']:.2f} +- {s['gamma_std']:.2f} |")
    section = "\n".join([
        f"Training: {cfg.steps} steps, batch {cfg.batch}, {len(ctx.seeds)} seed(s), noise "
        f"{cfg.noise_std:g}; extraction on {cfg.val_size} held-out tasks.", "", *rows])
    return ExperimentResult(name="layers", data={"regimes": per_regime, "median": med},
                            claims=claims, section=section,
                            captions={"layers.png": "Median over seeds of kappa(A_l) and the "
                                      "D-slot MSE per layer: transformer (solid) and extracted "
                                      "algorithm (dashed)."})


def _plot(ctx: Context, med: dict) -> None:
    fig, axes = cm.figure(2, 1, width=5.0, height=3.6)
    for i, r in enumerate(REGIMES):
        m = med[r]
        x = np.arange(len(m["kappa_model"]))
        axes[0, 0].semilogy(x, m["kappa_model"], "o-", color=f"C{i}", label=r)
        axes[0, 0].semilogy(x, m["kappa_algorithm"], "x--", color=f"C{i}")
        axes[0, 1].semilogy(x, m["mse_model"], "o-", color=f"C{i}", label=r)
        axes[0, 1].semilogy(x, m["mse_algorithm"], "x--", color=f"C{i}")
    axes[0, 0].set(xlabel="layer l", ylabel="median kappa(A_l)", title="conditioning of A_l")
    axes[0, 1].set(xlabel="layer l", ylabel="MSE of the D slot", title="error of D_l")
    for ax in axes.flat:
        ax.legend(fontsize=8)
    ctx.save_figure(fig, "layers")
