"""Distributed EAGLE on the real multi-process engine against distributed GD (Figs 7, 8, 16).

Problems from `eaglelab.tasks.diverse_problem`: the contiguous M-block
partition has diversity index exactly alpha and every local block condition number exactly
kappa_max.  EAGLE (accelerated variant) runs on torch.distributed (gloo, M local
processes) and its communication is measured at the collective; distributed GD with the
same communication runs in the in-process simulation up to a round cap (with kappa_max =
1e3 it needs millions of rounds, so the cap gives a lower bound on its count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eaglelab.experiments import _common as cm
from eaglelab.experiments.base import Context, ExperimentResult

TITLE = "Distributed EAGLE (multi-process) vs distributed GD: M and alpha sweeps"
PAPER_REF = "Figs 7, 8, 16"


@dataclass
class Config:
    n: int = 1000
    kappa_max: float = 1e3
    cells: int = 50
    workers: list[int] = field(default_factory=lambda: [1, 3, 5, 8])
    alphas: list[float] = field(default_factory=lambda: [1.0, 2 / 3, 0.35, 0.01])
    alpha_workers: int = 3
    target: float = 1e-6
    eagle_cap: int = 5000
    gd_cap: int = 20000
    seeds: int = 1
    base_seed: int = 0


QUICK = dict(n=150, cells=10, workers=[1, 2, 3], alphas=[1.0, 0.35, 0.1], eagle_cap=2000,
             gd_cap=2000)


def make_config(quick: bool = False, seeds: int | None = None, **overrides: Any) -> Config:
    return cm.make_config(Config, QUICK, quick, seeds, overrides)


GD_PAPER = ("10-100x more rounds for GD [the paper's text as we read it; not in our brief]")
GD_FACTOR = 10.0   # "10-100x more rounds": GD needs at least this many times EAGLE's


def _case(cfg: Config, M: int, alpha: float, seed: int) -> dict:
    from eaglelab.distributed import solve_distributed
    from eaglelab.solvers import distributed_gd
    from eaglelab.tasks import diverse_problem

    p = diverse_problem(cfg.n, cfg.n, M, alpha=alpha, kappa=cfg.kappa_max, cells=cfg.cells,
                        seed=seed)
    e = solve_distributed(p.A, p.B, p.C, workers=M, method="eagle", reference=p.D, tol=1e-13,
                          max_iter=cfg.eagle_cap, freeze_tol=1e-10)
    eagle_rounds = cm.first_below(e.history.error, cfg.target)
    # GD runs at least 10x EAGLE's rounds, so "10x more rounds" is decidable from its cap
    cap = max(cfg.gd_cap, GD_FACTOR * (eagle_rounds or 0) + 1)
    g = distributed_gd(p.A, p.B, p.C, partition=p.partition, reference=p.D, tol=1e-300,
                       max_iter=int(cap))
    comm = e.info["comm"]
    return {"M": M, "alpha": p.alpha, "seed": seed,
            "eagle_rounds": eagle_rounds,
            "gd_rounds": cm.first_below(g.history.error, cfg.target),
            "gd_final_error": g.relative_error, "gd_cap": g.iterations,
            "floats_per_round_per_rank": comm["floats_per_round_per_rank"],
            "expected_floats": comm["expected_floats_per_round"],
            "eagle_bytes_per_round": comm["bytes_per_round_per_rank"] * M,
            "wall_seconds": e.info.get("wall_seconds"),
            "eagle_curve": _thin(e.history.error), "gd_curve": _thin(g.history.error)}


def _thin(errors, points: int = 120) -> dict[str, list]:
    """(round, error) pairs at about `points` log-spaced rounds (the first and last kept)."""
    err = [float(x) for x in errors]
    idx = np.unique(np.geomspace(1, len(err), min(points, len(err))).astype(int)) - 1
    return {"round": [int(i) + 1 for i in idx], "error": [err[i] for i in idx]}


def run(cfg: Config, ctx: Context) -> ExperimentResult:
    cases = [(M, 1.0) for M in cfg.workers] + [(cfg.alpha_workers, a) for a in cfg.alphas
                                               if not (a == 1.0 and cfg.alpha_workers in
                                                       cfg.workers)]
    rows = [_case(cfg, M, a, s) for (M, a) in ctx.track(cases, "cases") for s in ctx.seeds]
    m_rows = [r for r in rows if r["alpha"] == 1.0]
    a_rows = sorted([r for r in rows if r["M"] == cfg.alpha_workers], key=lambda r: -r["alpha"])
    m_rounds = [r["eagle_rounds"] for r in m_rows]
    reached = [k for k in m_rounds if k]
    m_missed = [r["M"] for r in m_rows if not r["eagle_rounds"]]
    # a case where EAGLE missed the target counts against "rounds do not grow with M"
    spread = (max(reached) / min(reached) if reached and len(reached) == len(m_rounds)
              else float("inf"))
    pts = [(r["alpha"], r["eagle_rounds"]) for r in a_rows if r["eagle_rounds"]]
    alpha_missed = sum(1 for r in a_rows if r["alpha"] < 1 and not r["eagle_rounds"])
    slope = float(-np.polyfit(np.log([a for a, _ in pts if a < 1]),
                              np.log([k for a, k in pts if a < 1]), 1)[0]) \
        if sum(a < 1 for a, _ in pts) >= 2 else None
    both = [r["gd_rounds"] / r["eagle_rounds"] for r in rows
            if r["eagle_rounds"] and r["gd_rounds"]]           # ratios only where both reached
    missed = [r for r in rows if r["eagle_rounds"] and not r["gd_rounds"]]
    # where GD never reached the target its count exceeds the cap: cap / EAGLE's rounds
    # bounds the ratio from below, which decides ">= 10x" but is not reported as a ratio
    bounds = [r["gd_cap"] / r["eagle_rounds"] for r in missed]
    gd_text = ((f"ratio where both reached: min {cm.fmt(min(both))} ({len(both)} cases)"
                if both else "GD reached the target in no case")
               + (f"; in {len(missed)} cases GD did not reach it within "
                  f"{min(r['gd_cap'] for r in missed)}+ rounds "
                  f"(best final error {cm.fmt(min(r['gd_final_error'] for r in missed))}), "
                  f"where EAGLE took at most {max(r['eagle_rounds'] for r in missed)}"
                  if missed else ""))
    comm_ok = all(r["M"] == 1 or r["floats_per_round_per_rank"] == r["expected_floats"]
                  for r in rows)
    claims = [
        cm.claim("At alpha = 1 EAGLE's rounds to the target do not grow with M",
                 "independent of M (Fig 7)", f"{m_rounds} for M = {cfg.workers}",
                 spread <= 1.5, "rounds within 1.5x of each other",
                 f"EAGLE missed the target at M = {m_missed}" if m_missed
                 else "rounds change with M"),
        cm.claim("EAGLE's rounds grow like 1/alpha (slope of log rounds vs log 1/alpha; "
                 "window 0.7-1.3, the theory experiment's, which replaced this experiment's "
                 "0.5-1.5 on 2026-12-04 after its slope 0.939 was known)" + cm.AFTER_DATA,
                 "~1/alpha (Theorem 2, Fig 8)", cm.fmt(slope) + (
                     f" (EAGLE missed the target at {alpha_missed} alpha case(s))"
                     if alpha_missed else ""),
                 not alpha_missed and slope is not None
                 and cm.SLOPE_ONE[0] <= slope <= cm.SLOPE_ONE[1],
                 f"slope in {cm.SLOPE_ONE[0]}..{cm.SLOPE_ONE[1]} (ours)",
                 "EAGLE missed the target in some alpha case (a miss counts against the "
                 "claim)" if alpha_missed else "the growth is not ~1/alpha at these sizes"),
        _gd_claim(gd_text, both, bounds, [r for r in rows if not r["eagle_rounds"]]),
        cm.code_check("Measured floats per rank per round equal (d + d') n' (what our own "
                      "all_reduce sends: a check of our engine, not of the paper)",
                      "(d + d') n'", f"{rows[-1]['floats_per_round_per_rank']} (expected "
                      f"{rows[-1]['expected_floats']})", comm_ok,
                      "measured at the all_reduce"),
    ]
    _plot(ctx, cfg, m_rows, a_rows)
    table = ["| M | alpha | EAGLE rounds | GD rounds | floats/rank/round |", "|---|---|---|---|---|"]
    for r in rows:
        gd = r["gd_rounds"] if r["gd_rounds"] else f"> {r['gd_cap']}"
        table.append(f"| {r['M']} | {r['alpha']:.3g} | {r['eagle_rounds']} | {gd} | "
                     f"{r['floats_per_round_per_rank']} |")
    section = "\n".join([
        f"n = d = {cfg.n}, kappa_max = {cfg.kappa_max:g}, target relative error "
        f"{cfg.target:g}; EAGLE on torch.distributed (gloo, M processes, accelerated "
        "variant), GD simulated in one process.  alpha = 0.83 at M = 3 (the paper's value) "
        "cannot be built under the brief's definition (alpha is 1 or at most (M-1)/M), so the "
        "sweep uses values below 2/3.", "", *table])
    return ExperimentResult(name="distributed", data={"rows": rows, "slope": slope,
                                                      "m_spread": spread},
                            claims=claims, section=section,
                            captions={"distributed.png": "Rounds to the target against M "
                                      "(alpha = 1) and against alpha (M = "
                                      f"{cfg.alpha_workers}); GD points at the cap did not "
                                      "reach the target.  Right: relative error against "
                                      "rounds for EAGLE (solid) and distributed GD (dotted), "
                                      "one seed per alpha; dashed: the target."})


def _gd_claim(gd_text: str, both: list[float], bounds: list[float], eagle_missed: list[dict]):
    """GD against EAGLE in rounds: decided only where EAGLE reached the target; a ratio where
    both reached, a lower bound (GD's cap over EAGLE's rounds) where GD did not."""
    text = ("EAGLE needs >= 10x fewer rounds than distributed GD with the same communication")
    if eagle_missed:
        where = ", ".join(f"M = {r['M']}, alpha {r['alpha']:.3g}" for r in eagle_missed)
        return cm.untested(text, GD_PAPER,
                           gd_text + f"; EAGLE did not reach the target in {len(eagle_missed)} "
                           f"case(s) ({where})",
                           "no ratio where EAGLE itself missed the target")
    if any(b < GD_FACTOR for b in bounds):
        return cm.untested(text, GD_PAPER, gd_text,
                           "GD stopped (cap or divergence) before 10x EAGLE's rounds in some "
                           "case: no ratio, and the cap does not decide it")
    return cm.claim(text, GD_PAPER, gd_text,
                    bool(both or bounds) and min(both + bounds) >= GD_FACTOR,
                    "in every case (where GD never reached the target, its cap is already "
                    ">= 10x EAGLE's rounds)", "not in every case")


def _plot(ctx: Context, cfg: Config, m_rows: list[dict], a_rows: list[dict]) -> None:
    fig, axes = cm.figure(3, 1, width=4.8, height=3.6)
    ax = axes[0, 0]
    ax.semilogy([r["M"] for r in m_rows], [r["eagle_rounds"] for r in m_rows], "o-",
                label="EAGLE (multi-process)")
    ax.semilogy([r["M"] for r in m_rows], [r["gd_rounds"] or r["gd_cap"] for r in m_rows],
                "x--", label="distributed GD (x at cap: not reached)")
    ax.set(xlabel="machines M", ylabel=f"rounds to {cfg.target:g}", title="alpha = 1")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    ax.loglog([1 / r["alpha"] for r in a_rows], [r["eagle_rounds"] for r in a_rows], "o-",
              label="EAGLE")
    ax.loglog([1 / r["alpha"] for r in a_rows], [r["gd_rounds"] or r["gd_cap"] for r in a_rows],
              "x--", label="distributed GD")
    ax.set(xlabel="1 / alpha", ylabel=f"rounds to {cfg.target:g}",
           title=f"M = {cfg.alpha_workers}")
    ax.legend(fontsize=8)
    ax = axes[0, 2]          # error against rounds, the first seed of each alpha at M = alpha_workers
    seen = set()
    for i, r in enumerate(a_rows):
        if r["alpha"] in seen:
            continue
        seen.add(r["alpha"])
        ax.loglog(r["eagle_curve"]["round"], r["eagle_curve"]["error"], "-", color=f"C{i}",
                  label=f"EAGLE, alpha {r['alpha']:.2g}")
        ax.loglog(r["gd_curve"]["round"], r["gd_curve"]["error"], ":", color=f"C{i}",
                  label=f"GD, alpha {r['alpha']:.2g}")
    ax.axhline(cfg.target, color="k", lw=0.8, ls="--")
    ax.set(xlabel="round", ylabel="relative error of D", title=f"error vs rounds, M = "
           f"{cfg.alpha_workers}")
    ax.legend(fontsize=6, ncol=2)
    ctx.save_figure(fig, "distributed")
