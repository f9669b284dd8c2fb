"""The estimation form of EAGLE (W_k -> W* = B A^+) against EAGLE itself.

Paper: Appendix D (Fig 15): n = d = 240, n' = d' = 2, kappa(A) = 100, 50 runs; the
estimation iteration "recovers the same second order convergence as EAGLE".  Per seed we
run `eagle` (error of D_k against D*) and `eagle_estimate` (error of W_k against W*, and of
W_k C against D* through its callback), both with the proof constants, and record the
iterations each needs to `target`.  The telescoping identity W_k C = D_k is checked at
every k: the two runs are deterministic and take the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eaglelab.experiments import _common as cm
from eaglelab.experiments.base import Context, ExperimentResult
from eaglelab.solvers import eagle, eagle_estimate
from eaglelab.tasks import conditioned_problem

TITLE = "Estimation form of EAGLE (W_k -> B A^+) vs EAGLE: same second-order rate"
PAPER_REF = "Appendix D (Fig 15)"


@dataclass
class Config:
    n: int = 240
    n_prime: int = 2
    kappa: float = 1e2
    target: float = 1e-10
    max_iter: int = 60
    seeds: int = 50
    base_seed: int = 0


QUICK = dict(n=120, seeds=4)


def make_config(quick: bool = False, seeds: int | None = None, **overrides: Any) -> Config:
    return cm.make_config(Config, QUICK, quick, seeds, overrides)


def run(cfg: Config, ctx: Context) -> ExperimentResult:
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
        "median_eagle_D_iterations": cm.median([r["eagle_D_iterations"] for r in recs]),
        "median_estimate_W_iterations": cm.median([r["estimate_W_iterations"] for r in recs]),
        "median_estimate_WC_iterations": cm.median([r["estimate_WC_iterations"] for r in recs]),
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
        cm.claim(
            "W_k C = D_k at every iteration (the iteration telescopes from EAGLE's)",
            "exact identity (Appendix D)",
            f"max ||W_k C - D_k|| / ||D*|| = {cm.fmt(summary['max_identity_gap'])}",
            summary["max_identity_gap"] < 1e-10,
            "equal up to rounding", "the two iterations drift apart"),
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
    return ExperimentResult(name="estimation", data=data, claims=claims, section=section,
                            captions={"estimation_convergence.png":
                                      "Median relative error per iteration: EAGLE's D_k, the "
                                      "estimation form's W_k and W_k C."})


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
