"""Measured iteration counts against the Theorem 1 and Theorem 2 bounds.

Paper: Theorems 1-2 (Sections 5.1-5.2; Fig 7 for the alpha dependence).  The bounds are
`eaglelab.theory`'s: `eagle_iterations_bound` runs EAGLE's scalar recursion for the worst
singular value exactly, `theorem1_bound` is its closed form with Theorem 1's shape, and
`theorem2_bound` adds the distributed phase, log(1/eps) / -log(1 - gamma alpha) (about
(gamma alpha)^-1 log(1/eps) for small alpha; the paper states only the order).  They bound the
NORMALISED error ||D_l - D*||_F / (||W*||_2 ||P C||_F) (P the projector onto range(A); here
C = A G lies in range(A), so P C = C), which is what we measure.

Theorem 1: `conditioned_problem` over a kappa grid, dense EAGLE (eta = 1/3, gamma = 1).

Theorem 2: distributed EAGLE (simulated, M workers) on problems with a prescribed
diversity index alpha and local condition number kappa_max: `eaglelab.tasks.diverse_problem`
(the construction the distributed experiment uses too; its docstring derives alpha), with
`t2_cells` cells, M blocks of `t2_cols_per_worker` columns and every block's spectrum
geometric from 1 down to 1/kappa_max, so ||A^mu||_2 = 1 for all mu (the theorem's
normalisation); B = W A, C = A G as in the centralised problems.  The measured alpha
(`theory.diversity_index`) is recorded beside the target.

Distributed EAGLE runs in the paper's accelerated form (each worker freezes A^mu, B^mu
once ||A^mu - A^mu A^mu^T A^mu||_F^2 < 1e-10); the plain form is run too and scored against
the same bound.  Distributed GD (same communication) is the baseline and the negative control
of the Theorem 2 rule; dense GD (run one iteration past the closed form) is the control of
Theorem 1's.  Medians of round counts rank a missed target above every reached count
(`_common.censored_median`), and a maximum over seeds with a miss is undefined (None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eaglelab.experiments import _common as cm
from eaglelab.experiments.base import Context, ExperimentResult
from eaglelab.solvers import distributed_gd, eagle, eagle_distributed, gradient_descent
from eaglelab.tasks import conditioned_problem, diverse_problem, nystrom_reference
from eaglelab.theory import (
    condition_number,
    diversity_index,
    eagle_iterations_bound,
    gd_rounds_bound,
    theorem1_bound,
    theorem2_bound,
)

TITLE = "Measured iterations vs the Theorem 1 (kappa) and Theorem 2 (alpha) bounds"
PAPER_REF = "Theorems 1-2 (Sections 5.1-5.2, Appendix F; Fig 7)"

FREEZE_TOL = 1e-10  # the paper's accelerated-variant threshold (Appendix E.2)


@dataclass
class Config:
    t1_n: int = 240
    t1_kappas: tuple[float, ...] = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6)
    t1_eps: float = 1e-10
    t2_d: int = 240
    t2_cells: int = 20
    t2_workers: int = 3
    t2_cols_per_worker: int = 80
    t2_kappa_max: float = 1e3
    t2_alphas: tuple[float, ...] = (1.0, 0.6, 0.3, 0.1, 0.03, 0.01)
    t2_eps: float = 1e-8
    t2_max_rounds: int = 5_000
    t2_gd_max_rounds: int = 3_000
    n_prime: int = 2
    seeds: int = 5
    base_seed: int = 0


QUICK = dict(t1_n=100, t2_d=60, t2_cells=12, t2_cols_per_worker=50,
             t2_alphas=(1.0, 0.3, 0.1, 0.03), t2_max_rounds=2_000, t2_gd_max_rounds=500, seeds=2)


def make_config(quick: bool = False, seeds: int | None = None, **overrides: Any) -> Config:
    return cm.make_config(Config, QUICK, quick, seeds, overrides)


def _bound_control_claim(rows: list[dict]):
    """Negative control of the Theorem 2 bound: distributed GD (the same communication, no
    local preconditioning) must fail the rule EAGLE is held to at some alpha - more rounds
    than the bound, or the target missed after at least that many rounds (fewer rounds run
    decide nothing)."""
    fails, undecided = [], []
    for r in rows:
        bound = np.ceil(r["theorem2_bound"])
        runs = [(x["gd_rounds"], x["gd_rounds_run"]) for x in r["runs"]]
        if any(m is not None and m > bound or m is None and run >= bound for m, run in runs):
            fails.append(r["alpha_measured"])
        elif any(m is None for m, _ in runs):
            undecided.append(r["alpha_measured"])
    text = ("Negative control: distributed GD (same communication) fails the Theorem 2 bound "
            "rule at some alpha (the rule must reject an algorithm without EAGLE's local "
            "preconditioning)")
    ours = (f"GD over the bound at alpha {', '.join(f'{a:.3g}' for a in fails)}" if fails
            else "GD within the bound at every decided alpha")
    paper = "- (a negative control of ours; GD needs ~kappa(mean rho A A^T) rounds)"
    if not fails and undecided:
        return cm.untested(text, paper, ours,
                           "GD's round cap was below the bound where it missed the target")
    return cm.claim(text, paper, ours, bool(fails),
                    "the bound rejects GD", "the bound does not reject GD: it cannot tell "
                    "EAGLE from an algorithm without its preconditioning")


def _normalised(errors: list[float], Dstar: np.ndarray, Wstar: np.ndarray, C: np.ndarray
                ) -> np.ndarray:
    scale = np.linalg.norm(Dstar) / (np.linalg.norm(Wstar, 2) * np.linalg.norm(C))
    return np.asarray(errors, float) * scale


def run(cfg: Config, ctx: Context) -> ExperimentResult:
    t1 = _theorem1(cfg, ctx)
    t2 = _theorem2(cfg, ctx)
    data = {"theorem1": t1, "theorem2": t2}
    claims = _claims(cfg, t1, t2)
    _plot(ctx, cfg, t1, t2)
    return ExperimentResult(name="theory", data=data, claims=claims,
                            section=_section(cfg, t1, t2), captions=_captions(cfg))


def _theorem1(cfg: Config, ctx: Context) -> dict[str, Any]:
    measured: dict[float, list] = {k: [] for k in cfg.t1_kappas}
    gd: dict[float, list] = {k: [] for k in cfg.t1_kappas}
    for kappa, seed in ctx.track([(k, s) for k in cfg.t1_kappas for s in ctx.seeds],
                                 "Theorem 1 (kappa grid)"):
        p = conditioned_problem(cfg.t1_n, cfg.t1_n, cfg.n_prime, cfg.n_prime, kappa=kappa,
                                seed=seed)
        res = eagle(p.A, p.B, p.C, tol=1e-300, max_iter=200, reference=p.reference)
        err = _normalised(res.history.error, p.reference, p.W_star, p.C)
        measured[kappa].append(cm.first_below(list(err), cfg.t1_eps))
        # the negative control: GD (step 1/sigma_max^2) on the same problem, run one
        # iteration past the closed form, so "over the closed form" is decidable
        cap = int(np.ceil(theorem1_bound(kappa, cfg.t1_eps))) + 1
        g = gradient_descent(p.A, p.B, p.C, ridge=0.0, tol=1e-300, max_iter=cap,
                             reference=p.reference)
        gd[kappa].append(cm.first_below(list(_normalised(g.history.error, p.reference,
                                                         p.W_star, p.C)), cfg.t1_eps))
    return {"n": cfg.t1_n, "eps": cfg.t1_eps, "kappas": list(cfg.t1_kappas),
            "measured_runs": [measured[k] for k in cfg.t1_kappas],
            "measured_median": [cm.censored_median(measured[k]) for k in cfg.t1_kappas],
            # a seed that missed makes the maximum undefined (None), not the reached seeds'
            "measured_max": [None if None in measured[k] else max(measured[k])
                             for k in cfg.t1_kappas],
            "gd_control_runs": [gd[k] for k in cfg.t1_kappas],
            "fraction_reached": [cm.fraction(measured[k]) for k in cfg.t1_kappas],
            "recursion_bound": [eagle_iterations_bound(k, cfg.t1_eps) for k in cfg.t1_kappas],
            "closed_form_bound": [theorem1_bound(k, cfg.t1_eps) for k in cfg.t1_kappas]}


def _theorem2(cfg: Config, ctx: Context) -> dict[str, Any]:
    rows = []
    for alpha in ctx.track(cfg.t2_alphas, "Theorem 2 (alpha grid)"):
        recs = []
        for seed in ctx.seeds:
            p = diverse_problem(cfg.t2_workers * cfg.t2_cols_per_worker, cfg.t2_d,
                                cfg.t2_workers, alpha=alpha, kappa=cfg.t2_kappa_max,
                                cells=cfg.t2_cells, d_prime=cfg.n_prime, n_prime=cfg.n_prime,
                                seed=5_000 + seed)
            A, B, C, part = p.A, p.B, p.C, p.partition
            Dstar, Wstar = nystrom_reference(A, B, C)
            a = diversity_index(A, part)
            kmax = max(condition_number(A[:, J]) for J in part)
            E = sum(A[:, J] @ A[:, J].T / np.linalg.norm(A[:, J], 2) ** 2 for J in part) / len(part)
            kmean = condition_number(E)
            out = {"seed": 5_000 + seed, "alpha_measured": a, "kappa_max": kmax,
                   "kappa_mean_energy": kmean,
                   "theorem2_bound": theorem2_bound(kmax, a, cfg.t2_eps),
                   "gd_bound": gd_rounds_bound(kmean, cfg.t2_eps)}
            for key, kw in (("accelerated", {"freeze_tol": FREEZE_TOL}), ("plain", {})):
                r = eagle_distributed(A, B, C, partition=part, tol=1e-300,
                                      max_iter=cfg.t2_max_rounds, reference=Dstar, **kw)
                err = _normalised(r.history.error, Dstar, Wstar, C)
                out[f"{key}_rounds"] = cm.first_below(list(err), cfg.t2_eps)
                out[f"{key}_best_error"] = float(err.min())
                out[f"{key}_seconds"] = r.seconds
            # GD gets at least 10x EAGLE's rounds, so "10x more rounds" is decidable
            cap = max(cfg.t2_gd_max_rounds, 10 * (out["accelerated_rounds"] or 0) + 1)
            g = distributed_gd(A, B, C, partition=part, tol=1e-300, max_iter=cap, reference=Dstar)
            gerr = _normalised(g.history.error, Dstar, Wstar, C)
            out["gd_rounds"] = cm.first_below(list(gerr), cfg.t2_eps)
            out["gd_final_error"] = float(gerr[-1])
            out["gd_rounds_run"] = g.iterations
            if out["accelerated_rounds"]:       # a ratio, or a lower bound where GD missed
                reached = out["gd_rounds"] is not None
                out["gd_over_eagle"] = ((out["gd_rounds"] if reached else g.iterations)
                                        / out["accelerated_rounds"])
                out["gd_over_eagle_is_lower_bound"] = out["gd_rounds"] is None
            recs.append(out)
        med = lambda k, recs=recs: cm.median([r[k] for r in recs])  # noqa: E731
        rounds = lambda k, recs=recs: cm.censored_median([r[k] for r in recs])  # noqa: E731
        rows.append({"alpha": alpha, "runs": recs, "alpha_measured": med("alpha_measured"),
                     "kappa_max": med("kappa_max"), "theorem2_bound": med("theorem2_bound"),
                     "gd_bound": med("gd_bound"),
                     "accelerated_rounds": rounds("accelerated_rounds"),
                     "accelerated_rounds_max": (None if any(r["accelerated_rounds"] is None
                                                            for r in recs) else
                                                max(r["accelerated_rounds"] for r in recs)),
                     "accelerated_fraction": cm.fraction([r["accelerated_rounds"] for r in recs]),
                     "plain_rounds": rounds("plain_rounds"),
                     "plain_fraction": cm.fraction([r["plain_rounds"] for r in recs]),
                     "plain_best_error": med("plain_best_error"),
                     "gd_rounds": rounds("gd_rounds"), "gd_final_error": med("gd_final_error"),
                     "gd_fraction": cm.fraction([r["gd_rounds"] for r in recs]),
                     "gd_rounds_run": max(r["gd_rounds_run"] for r in recs),
                     # kept apart: ratios where both reached, lower bounds where GD did not,
                     # and the seeds where EAGLE itself missed (no ratio at all)
                     "gd_over_eagle_reached": [r["gd_over_eagle"] for r in recs
                                               if "gd_over_eagle" in r
                                               and not r["gd_over_eagle_is_lower_bound"]],
                     "gd_over_eagle_bounds": [r["gd_over_eagle"] for r in recs
                                              if r.get("gd_over_eagle_is_lower_bound")],
                     "eagle_missed": sum(r["accelerated_rounds"] is None for r in recs)})
    return {"d": cfg.t2_d, "cells": cfg.t2_cells, "workers": cfg.t2_workers,
            "cols_per_worker": cfg.t2_cols_per_worker, "kappa_max": cfg.t2_kappa_max,
            "eps": cfg.t2_eps, "gd_max_rounds": cfg.t2_gd_max_rounds, "rows": rows}


def _claims(cfg: Config, t1: dict, t2: dict):
    claims = []
    mx, rb = t1["measured_max"], t1["recursion_bound"]
    ok1 = all(m is not None and m <= b + 1 for m, b in zip(mx, rb, strict=True))
    worst = max((m - b for m, b in zip(mx, rb, strict=True) if m is not None), default=None)
    claims.append(cm.code_check(
        f"Theorem 1: dense EAGLE reaches normalised error {cfg.t1_eps:g} within the bound "
        f"(exact scalar recursion) at every kappa in {cfg.t1_kappas[0]:g}..{cfg.t1_kappas[-1]:g}",
        "L = O(log kappa + log log 1/eps)",
        f"max over seeds of (measured - bound) = {cm.fmt(worst)} iterations", ok1,
        "the recursion is EAGLE's own scalar map of the worst singular value, so a correct "
        "implementation meets it (+1 allowed for the power-iteration estimate of ||A_l||); "
        "Theorem 1's O(log kappa + log log 1/eps) shape is scored by the closed-form claim"))
    cf = t1["closed_form_bound"]
    ok2 = all(m is not None and m <= b for m, b in zip(mx, cf, strict=True))
    claims.append(cm.claim(
        "The closed form log(kappa)/log(1/(1-eta)) + log2 log(1/eps) + 2 bounds every measured "
        "count", "Theorem 1's form",
        ", ".join(f"{m}<={b:.1f}" if m is not None else "missed"
                  for m, b in zip(mx, cf, strict=True)),
        ok2, "every measured count is below the closed form", "some count is above it"))
    over = [k for k, runs, b in zip(t1["kappas"], t1["gd_control_runs"], cf, strict=True)
            if any(m is None or m > b for m in runs)]
    claims.append(cm.claim(
        "Negative control: gradient descent (step 1/sigma_max^2, same problems) fails the "
        "closed-form rule at some kappa (the rule must reject an algorithm without EAGLE's "
        "preconditioning)" + cm.AFTER_DATA, "- (a negative control of ours; GD needs ~kappa^2 log(1/eps) "
        "iterations on B A^+)",
        (f"GD over the closed form (run one iteration past it) at kappa "
         f"{', '.join(f'{k:g}' for k in over)}" if over else
         "GD within the closed form at every kappa"),
        bool(over), "the closed form rejects GD",
        "the closed form does not reject GD: it cannot tell EAGLE from plain GD"))
    rows = t2["rows"]
    acc = [(r["alpha_measured"], r["accelerated_rounds_max"], r["theorem2_bound"]) for r in rows]
    # per seed: each seed's rounds against the bound of its own measured alpha and kappa_max
    over = [(x["alpha_measured"], x["accelerated_rounds"], np.ceil(x["theorem2_bound"]))
            for r in rows for x in r["runs"]
            if x["accelerated_rounds"] is None or x["accelerated_rounds"] > np.ceil(
                x["theorem2_bound"])]
    ok3 = not over
    claims.append(cm.claim(
        f"Theorem 2: distributed EAGLE (M = {cfg.t2_workers}, accelerated) reaches "
        f"{cfg.t2_eps:g} within a log(kappa_max) + alpha^-1 log(1/eps)-type bound at every "
        "alpha (`theory.theorem2_bound`: Theorem 1's form plus log(1/eps) / -log(1 - gamma "
        "alpha), constants ours)" + cm.AFTER_DATA,
        "L = O(log kappa_max + alpha^-1 log 1/eps)",
        ", ".join(f"alpha {a:.3g}: max {cm.fmt(m)} vs median bound {b:.0f}" for a, m, b in acc)
        + f"; seeds over their own bound: {len(over)}",
        ok3, "every seed's round count is within its own bound",
        "seeds over their bound (alpha, rounds, bound): "
        + ", ".join(f"({a:.3g}, {cm.fmt(m)}, {b:.0f})" for a, m, b in over)))
    over_plain = [(x["alpha_measured"], x["plain_rounds"], np.ceil(x["theorem2_bound"]))
                  for r in rows for x in r["runs"]
                  if x["plain_rounds"] is None or x["plain_rounds"] > np.ceil(
                      x["theorem2_bound"])]
    claims.append(cm.claim(
        f"Theorem 2 for plain distributed EAGLE (M = {cfg.t2_workers}, no freezing): every seed "
        f"reaches {cfg.t2_eps:g} within the same bound (`theory.theorem2_bound`, constants "
        "ours)" + cm.AFTER_DATA, "L = O(log kappa_max + alpha^-1 log 1/eps)",
        ", ".join(f"alpha {r['alpha_measured']:.3g}: median {cm.fmt(r['plain_rounds'])} "
                  f"({r['plain_fraction']:.0%} reached)" for r in rows)
        + f"; seeds over their own bound or missed: {len(over_plain)}",
        not over_plain, "every seed's round count is within its own bound",
        "seeds over their bound or missed (alpha, rounds, bound): "
        + ", ".join(f"({a:.3g}, {cm.fmt(m)}, {b:.0f})" for a, m, b in over_plain)))
    claims.append(_bound_control_claim(rows))
    window = [r for r in rows if r["alpha_measured"] <= 0.31]
    small = [(r["alpha_measured"], r["accelerated_rounds"]) for r in window
             if r["accelerated_rounds"] is not None]
    slope = cm.fit_line(np.log([1 / a for a, _ in small]), np.log([m for _, m in small]))[0] \
        if len(small) >= 2 else None
    slope_text = ("Distributed rounds grow linearly with 1/alpha (log-log slope of rounds vs "
                  "1/alpha, alpha <= 0.3; every case must reach the target)")
    if len(small) < len(window):
        claims.append(cm.untested(
            slope_text, "linear in 1/alpha (Fig 7)", f"slope {cm.fmt(slope)} over the "
            f"{len(small)} of {len(window)} cases that reached the target",
            "cannot fit the slope: EAGLE did not reach the target in some case, and a fit "
            "without it would hide the hardest alphas"))
    else:
        claims.append(cm.claim(
            slope_text, "linear in 1/alpha (Fig 7)", cm.fmt(slope),
            slope is not None and cm.SLOPE_ONE[0] <= slope <= cm.SLOPE_ONE[1],
            f"slope in {cm.SLOPE_ONE[0]}..{cm.SLOPE_ONE[1]} (ours)",
            "the growth is not linear in 1/alpha"))
    claims.append(_gd_claim(rows))
    pairs = [(r["alpha_measured"], r["accelerated_rounds"], r["plain_rounds"],
              r["plain_fraction"], r["plain_best_error"]) for r in rows]
    same = all(pf == 1.0 and p is not None and m is not None and abs(p - m) <= max(2, 0.05 * m)
               for _, m, p, pf, _ in pairs)
    stalled = any(pf < 1.0 for *_, pf, _ in pairs)
    ours = ", ".join(
        f"alpha {a:.2g}: {cm.fmt(p)} vs {cm.fmt(m)}" if pf == 1.0 else
        f"alpha {a:.2g}: stalls at {e:.1e} vs {cm.fmt(m)}" for a, m, p, pf, e in pairs)
    claims.append(cm.claim(
        "The accelerated variant (freeze A^mu, B^mu once converged) needs the same rounds as "
        "plain distributed EAGLE (plain vs accelerated rounds)",
        "same iterations, less time (App E.2)", ours, same,
        "same round counts (within 5%)",
        "plain EAGLE " + ("stalls" if stalled else "needs more rounds") + " at small alpha; "
        "possible cause (not measured here): once a worker's A^mu has converged, rounding in "
        "the null directions of its rank-deficient block (rank "
        f"{(1 if cfg.t2_workers == 2 else 2) * cfg.t2_cells} of {cfg.t2_cols_per_worker} "
        "columns) grows by 1/(1 - eta) = 1.5 "
        "per round (A <- A (I - eta A^T A) / (1 - eta)), so the block's rank inflates and "
        "B^mu = W* A^mu no longer holds; freezing avoids it"))
    return claims


def _plot(ctx: Context, cfg: Config, t1: dict, t2: dict) -> None:
    fig, axes = cm.figure(2, 1, width=5.2, height=3.9)
    ax = axes[0, 0]
    k = np.asarray(t1["kappas"])
    for j, runs in enumerate(t1["measured_runs"]):
        pts = [x for x in runs if x is not None]
        ax.plot([k[j]] * len(pts), pts, "o", color=cm.STYLE["eagle"]["color"], alpha=0.35,
                markersize=5)
    ax.plot(k, t1["measured_median"], **cm.style("eagle", label="measured (median; dots: seeds)"))
    ax.plot(k, t1["recursion_bound"], "k--", label="bound: exact scalar recursion")
    ax.plot(k, t1["closed_form_bound"], "k:", label="bound: closed form (Theorem 1 shape)")
    ax.set(xscale="log", xlabel="kappa(A)", ylabel=f"iterations to {t1['eps']:g}",
           title=f"Theorem 1: dense EAGLE, n = d = {t1['n']}")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    rows = t2["rows"]
    a = np.array([r["alpha_measured"] for r in rows])
    for key, method, lab in (("accelerated_rounds", "eagle_frozen", "EAGLE (accelerated)"),
                             ("plain_rounds", "eagle_plain", "EAGLE (plain)"),
                             ("gd_rounds", "distributed_gd", "distributed GD")):
        v = [r[key] for r in rows]
        ok = [i for i, x in enumerate(v) if x is not None]
        ax.plot(a[ok], [v[i] for i in ok], **cm.style(method, label=lab))
        miss = [i for i, x in enumerate(v) if x is None]
        if miss:
            caps = [r["gd_rounds_run"] if key == "gd_rounds" else cfg.t2_max_rounds for r in rows]
            ax.plot(a[miss], [caps[i] for i in miss], linestyle="none", marker="x", markersize=9,
                    mew=2, color=cm.STYLE[method]["color"], label=f"{lab}: not reached")
    ax.plot(a, [r["theorem2_bound"] for r in rows], "k--", label="Theorem 2 bound")
    ax.set(xscale="log", yscale="log", xlabel="diversity index alpha",
           ylabel=f"rounds to {t2['eps']:g}",
           title=f"Theorem 2: M = {t2['workers']}, kappa_max = {t2['kappa_max']:g}")
    cm.set_ticks(ax, "x", sorted(set(np.round(a, 3))), [f"{x:.3g}" for x in sorted(set(np.round(a, 3)))])
    ax.invert_xaxis()
    ax.legend(fontsize=7)
    ctx.save_figure(fig, "theory_bounds")


def _captions(cfg: Config) -> dict[str, str]:
    return {"theory_bounds.png": "Measured iterations against the bounds: kappa grid for dense "
            "EAGLE (left), alpha grid for distributed EAGLE with distributed GD (right; x: not "
            "reached when stopped, GD at 10x EAGLE's rounds or more)."}


def _section(cfg: Config, t1: dict, t2: dict) -> str:
    r1 = ["| kappa | measured (median / max) | recursion bound | closed form |",
          "|---|---|---|---|"]
    for i, kappa in enumerate(t1["kappas"]):
        r1.append(f"| {kappa:g} | {cm.fmt(t1['measured_median'][i])} / "
                  f"{cm.fmt(t1['measured_max'][i])} | {t1['recursion_bound'][i]} | "
                  f"{t1['closed_form_bound'][i]:.1f} |")
    r2 = ["| alpha target | alpha measured | accelerated rounds | plain rounds (best error) | "
          "Theorem 2 bound | GD rounds | GD bound |", "|---|---|---|---|---|---|---|"]
    for r in t2["rows"]:
        plain = cm.fmt(r["plain_rounds"]) if r["plain_fraction"] == 1 else \
            f"not reached ({r['plain_best_error']:.1e})"
        gd = cm.fmt(r["gd_rounds"]) if r["gd_fraction"] >= 0.5 else \
            f"> {r['gd_rounds_run']} (error {r['gd_final_error']:.1e})"
        r2.append(f"| {r['alpha']:g} | {r['alpha_measured']:.3g} | {cm.fmt(r['accelerated_rounds'])}"
                  f" | {plain} | {r['theorem2_bound']:.0f} | {gd} | {r['gd_bound']:.3g} |")
    return "\n".join([
        f"{cfg.seeds} seeds.  Errors are normalised as the bounds are: ||D_l - D*||_F / "
        "(||W*||_2 ||C||_F).", "",
        f"Theorem 1 (dense EAGLE, n = d = {t1['n']}, eps = {t1['eps']:g}):", "", *r1, "",
        f"Theorem 2 (simulated distributed EAGLE, d = {t2['d']}, {t2['cells']} cells, M = "
        f"{t2['workers']} workers of {t2['cols_per_worker']} columns, local kappa "
        f"{t2['kappa_max']:g}, eps = {t2['eps']:g}; alpha controlled by the construction in "
        "`tasks.diverse_problem`, medians):", "", *r2])


GD_PAPER = ("10-100x more rounds [the paper's text as we read it; not in our brief]")
GD_FACTOR = 10.0   # "10-100x more rounds": GD needs at least this many times EAGLE's


def _gd_claim(rows: list[dict]):
    """Distributed GD against EAGLE in rounds, per alpha: the smallest ratio where both
    reached the target and the smallest lower bound (GD's rounds run over EAGLE's) where GD
    did not, never mixed; not decided where EAGLE itself missed on some seed."""
    text = ("Distributed GD with the same communication needs many more rounds than "
            f"distributed EAGLE (at least {GD_FACTOR:g}x on every seed, at every alpha)")
    parts, worst = [], []
    for r in rows:
        got, low = r["gd_over_eagle_reached"], r["gd_over_eagle_bounds"]
        bits = []
        if got:
            bits.append(f"smallest ratio {min(got):.3g}x ({len(got)} seeds)")
        if low:
            bits.append(f"GD did not reach it in {min(low):.3g}x EAGLE's rounds ({len(low)} "
                        "seeds)")
        if r["eagle_missed"]:
            bits.append(f"EAGLE missed the target on {r['eagle_missed']} seed(s)")
        parts.append(f"alpha {r['alpha_measured']:.2g}: " + ", ".join(bits))
        worst += got + low
    ours = "; ".join(parts)
    if any(r["eagle_missed"] for r in rows):
        return cm.untested(text, GD_PAPER, ours,
                           "no ratio where EAGLE itself missed the target")
    if any(b < GD_FACTOR for r in rows for b in r["gd_over_eagle_bounds"]):
        return cm.untested(text, GD_PAPER, ours,
                           "GD stopped (divergence) before 10x EAGLE's rounds on some seed: no "
                           "ratio, and the rounds it ran do not decide it")
    return cm.claim(text, GD_PAPER, ours,
                    bool(worst) and min(worst) >= GD_FACTOR,
                    "GD is at least 10x slower in rounds on every seed at every alpha (where GD "
                    "did not reach the target, the rounds it ran already are)",
                    "GD was within 10x of EAGLE on some seed")
