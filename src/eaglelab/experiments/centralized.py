"""Centralised EAGLE against lstsq (SVD), CG on the normal equations and GD.

Paper: Section 5.1 (Fig 6) and Appendix E.3 (Fig 20).  Problems: `conditioned_problem`
(A = U diag(sigma) V^T, geometric singular values from 1 to 1/kappa, B = W A, C = A G,
so D = B A^+ C exactly).  Four comparisons at kappa = 1e2 (full-rank and rank-deficient A,
at n = d = 240 and at the larger n = d = 1920), error against wall time; then a kappa sweep
1e2..1e5 at n = 240: iterations and time until the relative error
||D_k - D*||_F / ||D*||_F first drops to `target` (time read from history.seconds, so it
includes every solver's setup; lstsq's time is its whole solve).

Differences from the paper, stated in the report: the paper's target is eps = 1e-20 (not
reachable in float64 relative error; we use 1e-10), its hardware for these timings is not
stated (its real-data timings are on a GPU), we run on the CPU with numpy/LAPACK;
GD, whose kappa^2 iteration count is far beyond any budget at a 1e-10 target, runs with
an iteration cap and on fewer seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eaglelab.experiments import _common as cm
from eaglelab.experiments.base import Context, ExperimentResult
from eaglelab.solvers import cg_normal, eagle, gradient_descent, lstsq
from eaglelab.tasks import conditioned_problem
from eaglelab.theory import eagle_iterations_bound

TITLE = "Centralised solver: EAGLE vs lstsq, CG and GD (error vs time, kappa sweep, rank-deficient, larger n)"
PAPER_REF = "Section 5.1 (Fig 6) and Appendix E.3 (Fig 20)"

CURVE_POINTS = 300  # histories stored for plotting are thinned to about this many points


@dataclass
class Config:
    n: int = 240                      # n = d for the comparison and the kappa sweep
    n_prime: int = 2                  # n' = d'
    kappa: float = 1e2                # kappa of the comparison problems
    kappas: tuple[float, ...] = (1e2, 1e3, 1e4, 1e5)
    target: float = 1e-10             # relative error target
    deficient_rank: int = 120         # rank of A in the rank-deficient case (n / 2)
    large_n: int = 1920               # the larger problems (Fig 20)
    large_seeds: int = 5              # seeds for the larger problems
    gd_seeds: int = 5                 # GD runs on this many of the seeds
    seeds: int = 50                   # the paper averages 50 runs
    base_seed: int = 0
    tol: float = 1e-13                # shared stopping rule (relative change of D)
    eagle_max_iter: int = 200
    cg_max_iter_per_n: int = 20       # CG gets 20 n iterations (exact arithmetic needs <= n)
    gd_max_iter: int = 50_000
    large_cg_max_iter: int = 6_000
    large_gd_max_iter: int = 5_000


QUICK = dict(n=120, deficient_rank=60, large_n=360, seeds=2, large_seeds=1, gd_seeds=1,
             gd_max_iter=3_000, large_cg_max_iter=3_000, large_gd_max_iter=1_000)


NB = " [the paper's text as we read it; not in our brief]"



LOG_R2 = 0.95     # "grows like log(kappa)": linear in log10(kappa) at least this well (ours)


def _r2_line(x, y) -> float:
    """R^2 of the least-squares line of y against x."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    fit = np.polyval(np.polyfit(x, y, 1), x)
    return float(1.0 - np.sum((y - fit) ** 2) / np.sum((y - y.mean()) ** 2))

def make_config(quick: bool = False, seeds: int | None = None, **overrides: Any) -> Config:
    return cm.make_config(Config, QUICK, quick, seeds, overrides)


def _thin(values: list[float], points: int = CURVE_POINTS) -> list[float]:
    if len(values) <= points:
        return list(values)
    idx = np.unique(np.geomspace(1, len(values), points).astype(int) - 1)
    return [values[i] for i in idx]


def _solve(method: str, p, cfg: Config, large: bool) -> tuple[dict[str, Any], Any]:
    n = p.A.shape[1]
    if method == "eagle":
        res = eagle(p.A, p.B, p.C, tol=cfg.tol, max_iter=cfg.eagle_max_iter, reference=p.reference)
    elif method == "cg":
        cap = cfg.large_cg_max_iter if large else cfg.cg_max_iter_per_n * n
        res = cg_normal(p.A, p.B, p.C, tol=cfg.tol, max_iter=cap, reference=p.reference)
    elif method == "gd":
        cap = cfg.large_gd_max_iter if large else cfg.gd_max_iter
        res = gradient_descent(p.A, p.B, p.C, tol=cfg.tol, max_iter=cap, reference=p.reference)
    elif method == "lstsq":
        res = lstsq(p.A, p.B, p.C, reference=p.reference)
    else:  # pragma: no cover - internal
        raise ValueError(method)
    h = res.history
    if method == "lstsq":
        reached = h.error[-1] <= cfg.target
        it, sec = (1 if reached else None), (res.seconds if reached else None)
    else:
        it, sec = cm.first_below(h.error, cfg.target), cm.time_to(h, cfg.target)
    rec = {"iterations_to_target": it, "seconds_to_target": sec, "iterations": res.iterations,
           "seconds": res.seconds, "best_error": float(np.min(h.error)),
           "final_error": float(h.error[-1]), "status": res.status}
    if method == "gd":
        rec["ridge"] = res.info.get("ridge")
    return rec, res


def _curve(res: Any) -> dict[str, list[float]]:
    h = res.history
    if len(h.error) == 1:  # direct solve: one point at its total time
        return {"seconds": [res.seconds], "error": [h.error[0]]}
    return {"seconds": _thin(list(h.seconds)), "error": _thin(list(h.error))}


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    its = [r["iterations_to_target"] for r in records]
    secs = [r["seconds_to_target"] for r in records]
    return {"runs": len(records), "fraction_reached": cm.fraction(its),
            "median_iterations": cm.censored_median(its),
            "iqr_iterations": cm.censored_quantiles(its),
            "median_seconds": cm.censored_median(secs),
            "iqr_seconds": cm.censored_quantiles(secs),
            "median_best_error": cm.median([r["best_error"] for r in records]),
            "max_iterations_run": max(r["iterations"] for r in records),
            "total_seconds": cm.median([r["seconds"] for r in records])}


def run(cfg: Config, ctx: Context) -> ExperimentResult:
    seeds = ctx.seeds
    cases = {
        "full_rank": dict(n=cfg.n, rank=None, large=False, seeds=seeds),
        "rank_deficient": dict(n=cfg.n, rank=cfg.deficient_rank, large=False, seeds=seeds),
        "large_full_rank": dict(n=cfg.large_n, rank=None, large=True,
                                seeds=seeds[: cfg.large_seeds]),
        "large_rank_deficient": dict(n=cfg.large_n, rank=cfg.large_n // 2, large=True,
                                     seeds=seeds[: cfg.large_seeds]),
    }
    comparison: dict[str, Any] = {}
    jobs = [(c, s) for c, spec in cases.items() for s in spec["seeds"]]
    per_case: dict[str, dict[str, list]] = {c: {m: [] for m in ("eagle", "lstsq", "cg", "gd")}
                                           for c in cases}
    curves: dict[str, dict[str, Any]] = {c: {} for c in cases}
    for case, seed in ctx.track(jobs, "comparison problems"):
        spec = cases[case]
        p = conditioned_problem(spec["n"], spec["n"], cfg.n_prime, cfg.n_prime, kappa=cfg.kappa,
                                rank=spec["rank"], seed=seed)
        _ = p.reference  # computed before any timing starts
        gd_here = seed in spec["seeds"][: cfg.gd_seeds]
        for method in ("eagle", "lstsq", "cg", "gd"):
            if method == "gd" and not gd_here:
                continue
            rec, res = _solve(method, p, cfg, spec["large"])
            rec["seed"] = seed
            per_case[case][method].append(rec)
            if seed == spec["seeds"][0]:
                curves[case][method] = _curve(res)
    for case, spec in cases.items():
        comparison[case] = {
            "n": spec["n"], "rank": spec["rank"] or spec["n"], "kappa": cfg.kappa,
            "seeds": spec["seeds"],
            "summary": {m: _summary(r) for m, r in per_case[case].items() if r},
            "runs": per_case[case], "curves_first_seed": curves[case]}

    # kappa sweep
    sweep: dict[str, Any] = {"kappas": list(cfg.kappas), "n": cfg.n, "methods": {}}
    recs: dict[str, dict[float, list]] = {m: {k: [] for k in cfg.kappas}
                                          for m in ("eagle", "cg", "lstsq")}
    for kappa, seed in ctx.track([(k, s) for k in cfg.kappas for s in seeds], "kappa sweep"):
        p = conditioned_problem(cfg.n, cfg.n, cfg.n_prime, cfg.n_prime, kappa=kappa,
                                seed=10_000 + seed)
        _ = p.reference
        for method in ("eagle", "cg", "lstsq"):
            rec, _res = _solve(method, p, cfg, large=False)
            rec["seed"] = 10_000 + seed
            recs[method][kappa].append(rec)
    for method, by_kappa in recs.items():
        sweep["methods"][method] = [_summary(by_kappa[k]) for k in cfg.kappas]
    sweep["bound_iterations"] = [eagle_iterations_bound(k, cfg.target) for k in cfg.kappas]
    sweep["cg_max_iter"] = cfg.cg_max_iter_per_n * cfg.n

    data = {"comparison": comparison, "kappa_sweep": sweep, "target": cfg.target}
    claims, facts = _claims(cfg, comparison, sweep)
    data["derived"] = facts
    _plot_comparison(ctx, cfg, comparison)
    _plot_sweep(ctx, cfg, sweep)
    return ExperimentResult(name="centralized", data=data, claims=claims,
                            section=_section(cfg, comparison, sweep, facts),
                            captions=_captions(cfg))


# ----------------------------------------------------------------------------------------


def _per_seed_time_ratios(runs: dict[str, list[dict]]) -> list[float]:
    """EAGLE's time to the target over lstsq's, per seed where both reached it."""
    lstsq = {r["seed"]: r["seconds_to_target"] for r in runs["lstsq"]}
    return [r["seconds_to_target"] / lstsq[r["seed"]] for r in runs["eagle"]
            if r["seconds_to_target"] is not None and lstsq.get(r["seed"]) is not None]


def _claims(cfg: Config, comparison: dict, sweep: dict):
    kap = list(cfg.kappas)
    eag = [s["median_iterations"] for s in sweep["methods"]["eagle"]]
    cg = sweep["methods"]["cg"]
    cap = sweep["cg_max_iter"]
    facts: dict[str, Any] = {}
    claims = []

    ok_eagle = all(e is not None for e in eag)
    slope = cm.fit_line(np.log10(kap), eag)[0] if ok_eagle else None
    bound_slope = cm.fit_line(np.log10(kap), sweep["bound_iterations"])[0]
    facts.update(eagle_median_iterations=eag, eagle_slope_per_decade=slope,
                 bound_slope_per_decade=bound_slope)
    x = np.log10(kap)
    r2 = _r2_line(x, eag) if ok_eagle else None
    control = _r2_line(x, np.sqrt(kap))        # a count growing like sqrt(kappa)
    facts.update(eagle_log_kappa_r2=r2, sqrt_kappa_r2=control)
    claims.append(cm.claim(
        f"EAGLE's iterations to the target grow like log(kappa) (Theorem 1): linear in "
        f"log10(kappa) with R^2 >= {LOG_R2:g} and a positive slope" + cm.AFTER_DATA,
        "log(kappa) (no slope given)",
        f"R^2 {cm.fmt(r2)}, {cm.fmt(slope)} per decade; control: a count growing like "
        f"sqrt(kappa) has R^2 {control:.3f} on the same kappas",
        r2 is not None and r2 >= LOG_R2 and slope > 0 and control < LOG_R2,
        "iterations rise by a constant amount per decade of kappa, and the test rejects "
        "sqrt(kappa) growth", "EAGLE missed the target at some kappa, its count is not "
        "linear in log(kappa), or the test cannot reject sqrt(kappa) growth"))
    claims.append(cm.code_check(
        "EAGLE's slope per decade of kappa against our Theorem-1 recursion's (the same map "
        "of the worst singular value: a check of our code, not of the paper)",
        "(Theorem 1's recursion)", f"{cm.fmt(slope)} per decade (recursion "
        f"{cm.fmt(bound_slope)})", slope is not None and abs(slope - bound_slope)
        <= max(2.0, 0.5 * bound_slope), "the measured slope is the recursion's"))

    def ratio_at(i: int) -> float | None:
        """CG/EAGLE iteration ratio at kappa index i where both reached the target."""
        if eag[i] is None or cg[i]["fraction_reached"] < 0.5 or cg[i]["median_iterations"] is None:
            return None
        return cg[i]["median_iterations"] / eag[i]

    def missed(i: int) -> str:
        return (f"CG did not reach the target within {cap} iterations at kappa={kap[i]:g} "
                f"(median best error {cm.fmt(cg[i]['median_best_error'])}); EAGLE took "
                f"{cm.fmt(eag[i])}")

    ratios = [ratio_at(i) for i in range(len(kap))]
    facts["cg_over_eagle_ratio"] = ratios
    if 1e4 in kap:
        i4 = kap.index(1e4)
        r4 = ratios[i4]
        text, paper = ("EAGLE needs ~100x fewer iterations than CG at kappa = 1e4",
                       "~100x [the paper's text as we read it; not in our brief]")
        if r4 is None:
            claims.append(cm.untested(text, paper, missed(i4),
                                      "no ratio of iteration counts exists where one solver "
                                      "never reached the target"))
        else:
            claims.append(cm.claim(text, paper, cm.fmt(r4) + "x", 30 <= r4 <= 300,
                                   "same order as the paper's ~100x (within 0.3x-3x)",
                                   "the ratio is not of the paper's order; CG's count depends "
                                   "on n, the target and finite-precision loss of orthogonality"))
    # the growth is read over the kappas where BOTH reached the target: a CG that misses
    # has stalled at an accuracy floor (finite precision), which says nothing about how its
    # iteration count grows (until 2026-12-05 a miss at the largest kappa counted as
    # cap / EAGLE's count - an audit finding)
    both = [(k, r) for k, r in zip(kap, ratios, strict=True) if r is not None]
    # a missing ratio is CG's miss only where EAGLE reached the target (an audit finding:
    # an EAGLE miss was labelled a CG stall)
    stalled = [k for i, (k, r) in enumerate(zip(kap, ratios, strict=True))
               if r is None and eag[i] is not None]
    eagle_missed = [k for k, e in zip(kap, eag, strict=True) if e is None]
    text = ("CG's iteration count grows much faster with kappa than EAGLE's: over the kappas "
            "where both reach the target (at least two, a decade or more apart), the ratio at the "
            "largest is > 10 and above the ratio at the smallest" + cm.AFTER_DATA)
    paper = "CG ~ sqrt(kappa(A A^T)) = kappa vs log(kappa)"
    stall_text = (f"; CG stalled (missed the target within {cap} iterations) at kappa "
                  + ", ".join(f"{k:g}" for k in stalled) + ", not counted") if stalled else ""
    if eagle_missed:
        stall_text += ("; EAGLE missed the target at kappa "
                       + ", ".join(f"{k:g}" for k in eagle_missed) + ", not counted")
    if len(both) < 2 or both[-1][0] < 10 * both[0][0]:
        claims.append(cm.untested(
            text, paper, ", ".join(f"{r:.3g}x at kappa={k:g}" for k, r in both) + stall_text,
            "less than a decade of kappa where both solvers reached the target"))
    else:
        (k_lo, r_lo), (k_hi, r_hi) = both[0], both[-1]
        claims.append(cm.claim(
            text, paper, f"{cm.fmt(r_lo)}x at kappa={k_lo:g} -> {cm.fmt(r_hi)}x at "
            f"kappa={k_hi:g}" + stall_text, r_hi > 10 and r_hi > r_lo,
            "the gap widens with kappa", "the CG/EAGLE ratio did not grow as expected"))

    fr = comparison["full_rank"]["summary"]
    t_e, t_l = fr["eagle"]["median_seconds"], fr["lstsq"]["median_seconds"]
    tr = None if (t_e is None or t_l is None) else t_e / t_l
    facts["eagle_over_lstsq_time_n"] = tr
    claims.append(cm.claim(
        f"EAGLE's wall time to the target is comparable to the SVD solver's (n = {cfg.n}, "
        f"kappa = {cfg.kappa:g}): within a factor log(kappa) = {np.log(cfg.kappa):.1f}",
        "'matches SVD-based performance up to a log factor'" + NB,
        f"EAGLE / lstsq time = {cm.fmt(tr)}",
        tr is not None and tr <= np.log(cfg.kappa),
        "within a small constant factor of LAPACK's SVD solve",
        f"on this machine's CPU ({_cpus()} cores) LAPACK's SVD at this size is faster than "
        "EAGLE (the paper does not state its hardware here; possible cause, not measured "
        "here: on a GPU the matrix products EAGLE is made of gain most)"))
    lg = comparison["large_full_rank"]["summary"]
    if lg["eagle"]["median_seconds"] is not None and lg["lstsq"]["median_seconds"] is not None:
        trl = lg["eagle"]["median_seconds"] / lg["lstsq"]["median_seconds"]
        facts["eagle_over_lstsq_time_large"] = trl
        per_seed = _per_seed_time_ratios(comparison["large_full_rank"]["runs"])
        facts["eagle_over_lstsq_time_large_per_seed"] = per_seed
        spread = (f" (per seed {min(per_seed):.3g}..{max(per_seed):.3g}"
                  + (", straddling the threshold: timing noise decides this verdict"
                     if min(per_seed) <= np.log(cfg.kappa) < max(per_seed) else "") + ")"
                  if per_seed else "")
        claims.append(cm.claim(
            f"At the larger size (n = {cfg.large_n}) EAGLE's time is within a factor "
            f"log(kappa) = {np.log(cfg.kappa):.1f} of lstsq's",
            "comparable (Fig 20)", f"EAGLE / lstsq time = {cm.fmt(trl)} (ratio of medians)"
            + spread,
            trl <= np.log(cfg.kappa),
            "within a small constant factor",
            f"on this machine's CPU ({_cpus()} cores) the SVD solver wins by more than a log "
            "factor"))

    gd = fr.get("gd")
    if gd:
        t_gd = gd["median_seconds"]
        facts["gd_fraction_reached"] = gd["fraction_reached"]
        faster = t_e is not None and (t_gd is None or t_gd > t_e)
        claims.append(cm.claim(
            "EAGLE reaches the target far faster than gradient descent (GD needs ~kappa^2 "
            "log(1/eps) iterations)", "GD much slower",
            ("GD did not reach the target within "
             f"{gd['max_iterations_run']} iterations ({cm.fmt(gd['total_seconds'])} s; best error "
             f"{cm.fmt(gd['median_best_error'])}); EAGLE {cm.fmt(t_e)} s") if t_gd is None
            else f"GD {cm.fmt(t_gd)} s vs EAGLE {cm.fmt(t_e)} s",
            faster, "as expected from kappa^2 vs log(kappa)", "GD was not slower here"))

    rd = comparison["rank_deficient"]["summary"]
    claims.append(cm.claim(
        f"EAGLE is robust to rank deficiency (rank {cfg.deficient_rank} of {cfg.n}): it reaches "
        "the target like in the full-rank case",
        "reaches eps (Fig 6)",
        f"reached in {rd['eagle']['fraction_reached']:.0%} of runs, median "
        f"{cm.fmt(rd['eagle']['median_iterations'])} iterations",
        rd["eagle"]["fraction_reached"] == 1.0,
        "EAGLE conditions only the nonzero spectrum of A",
        "EAGLE missed the target on some rank-deficient problems"))
    e_small = fr["eagle"]["median_iterations"]
    e_large = lg["eagle"]["median_iterations"]
    facts["eagle_iterations_small_vs_large"] = [e_small, e_large]
    claims.append(cm.claim(
        f"EAGLE's iteration count depends on kappa, not on the size (n = {cfg.n} vs "
        f"{cfg.large_n}, kappa = {cfg.kappa:g})", "same iterations (Fig 20)",
        f"{cm.fmt(e_small)} vs {cm.fmt(e_large)} iterations",
        e_small is not None and e_large is not None and abs(e_large - e_small) <= 3,
        "the iteration count is a function of kappa and eps only",
        "the iteration count changed with the size"))
    lrd = comparison["large_rank_deficient"]["summary"]
    facts["large_rank_deficient_cg_fraction"] = lrd["cg"]["fraction_reached"]
    facts["gd_ridges_rank_deficient"] = sorted({
        float(r["ridge"]) for case in ("rank_deficient", "large_rank_deficient")
        for r in comparison[case]["runs"]["gd"] if r.get("ridge") is not None})
    cg_low = [comparison[c]["summary"]["cg"]["fraction_reached"]
              for c in ("rank_deficient", "large_rank_deficient")]
    claims.append(cm.claim(
        "CG on the normal equations does not converge reliably on low-rank A (App E.3, "
        f"n = {cfg.large_n})", "CG unreliable, omitted from the low-rank plots" + NB,
        f"CG reached the target in {cg_low[0]:.0%} (n = {cfg.n}) and {cg_low[1]:.0%} "
        f"(n = {cfg.large_n}) of the rank-deficient runs",
        min(cg_low) < 1.0,
        "CG failed on some low-rank problems, as the paper reports",
        "our CG converges on every rank-deficient problem: it starts from W = 0, so its "
        "iterates stay in range(A) and approach the minimum-norm solution B A^+ (solvers/cg.py); "
        "the paper's CG implementation is not specified in enough detail to say why it failed"))
    return claims, facts


def _plot_comparison(ctx: Context, cfg: Config, comparison: dict) -> None:
    titles = {"full_rank": f"n = d = {cfg.n}, full rank",
              "rank_deficient": f"n = d = {cfg.n}, rank {cfg.deficient_rank}",
              "large_full_rank": f"n = d = {cfg.large_n}, full rank",
              "large_rank_deficient": f"n = d = {cfg.large_n}, rank {cfg.large_n // 2}"}
    fig, axes = cm.figure(2, 2, width=5.0, height=3.6)
    for ax, (case, title) in zip(axes.flat, titles.items(), strict=True):
        curves = comparison[case]["curves_first_seed"]
        for method in ("eagle", "cg", "gd", "lstsq"):
            c = curves.get(method)
            if not c:
                continue
            err = np.maximum(np.asarray(c["error"], float), 1e-17)
            st = cm.style(method)
            if method == "lstsq":
                ax.plot(c["seconds"], err, linestyle="none", markersize=9, **st)
            else:
                ax.plot(c["seconds"], err, linewidth=1.6, markevery=[len(err) - 1], **st)
        ax.axhline(cfg.target, color="gray", linestyle=":", linewidth=1)
        ax.set(xscale="log", yscale="log", title=f"{title}, kappa = {cfg.kappa:g}",
               xlabel="wall time (s)", ylabel="relative error of D")
        ax.set_ylim(1e-17, 10)
    axes[0, 0].legend(fontsize=8, loc="lower left")
    ctx.save_figure(fig, "centralized_error_vs_time")


def _plot_sweep(ctx: Context, cfg: Config, sweep: dict) -> None:
    kap = np.asarray(cfg.kappas, float)
    fig, axes = cm.figure(2, 1, width=5.0, height=3.8)
    ax = axes[0, 0]
    for method in ("eagle", "cg"):
        s = sweep["methods"][method]
        its = [x["median_iterations"] for x in s]
        hit = [i for i, v in enumerate(its) if v is not None]
        ax.plot(kap[hit], [its[i] for i in hit], linewidth=1.6, **cm.style(method))
        miss = [i for i, v in enumerate(its) if v is None]
        if miss:
            ax.plot(kap[miss], [sweep["cg_max_iter"]] * len(miss), linestyle="none",
                    marker="^", markerfacecolor="none", color=cm.STYLE[method]["color"],
                    markersize=10, label=f"{cm.STYLE[method]['label']}: not reached "
                    f"in {sweep['cg_max_iter']}")
    ax.plot(kap, sweep["bound_iterations"], linestyle="--", **cm.style("bound",
            label="bound (theory.eagle_iterations_bound)"))
    ax.set(xscale="log", yscale="log", xlabel="kappa(A)",
           ylabel=f"iterations to rel. error {cfg.target:g}", title=f"n = d = {cfg.n}")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    for method in ("eagle", "cg", "lstsq"):
        s = sweep["methods"][method]
        t = [x["median_seconds"] for x in s]
        hit = [i for i, v in enumerate(t) if v is not None]
        ax.plot(kap[hit], [t[i] for i in hit], linewidth=1.6, **cm.style(method))
    ax.set(xscale="log", yscale="log", xlabel="kappa(A)",
           ylabel=f"seconds to rel. error {cfg.target:g}", title="median over seeds")
    ax.legend(fontsize=8)
    ctx.save_figure(fig, "centralized_kappa_sweep")


def _captions(cfg: Config) -> dict[str, str]:
    return {
        "centralized_error_vs_time.png":
            f"Relative error of D against wall time (first seed), kappa = {cfg.kappa:g}; lstsq is "
            f"one point (its total time); dotted line: target {cfg.target:g}.",
        "centralized_kappa_sweep.png":
            "Kappa sweep: median iterations (left) and seconds (right) to the target; open "
            "triangles: CG did not reach it within its iteration cap.",
    }


def _section(cfg: Config, comparison: dict, sweep: dict, facts: dict) -> str:
    rows = ["| case | method | reached | median iterations | median seconds | best error |",
            "|---|---|---|---|---|---|"]
    for case, c in comparison.items():
        for m, s in c["summary"].items():
            rows.append(f"| {case} (n={c['n']}, rank={c['rank']}) | {m} | "
                        f"{s['fraction_reached']:.0%} of {s['runs']} | "
                        f"{cm.fmt(s['median_iterations'])} | {cm.fmt(s['median_seconds'])} | "
                        f"{cm.fmt(s['median_best_error'])} |")
    sw = ["| kappa | EAGLE its | CG its | bound | EAGLE s | CG s | lstsq s | CG best error |",
          "|---|---|---|---|---|---|---|---|"]
    for i, k in enumerate(cfg.kappas):
        e, c, l_ = (sweep["methods"][m][i] for m in ("eagle", "cg", "lstsq"))
        cg_its = cm.fmt(c["median_iterations"]) if c["fraction_reached"] >= 0.5 else \
            f"> {sweep['cg_max_iter']}"
        sw.append(f"| {k:g} | {cm.fmt(e['median_iterations'])} | {cg_its} | "
                  f"{sweep['bound_iterations'][i]} | {cm.fmt(e['median_seconds'])} | "
                  f"{cm.fmt(c['median_seconds'])} | {cm.fmt(l_['median_seconds'])} | "
                  f"{cm.fmt(c['median_best_error'])} |")
    return "\n".join([
        f"Problems from `tasks.conditioned_problem` (geometric singular values 1..1/kappa, "
        f"n' = d' = {cfg.n_prime}), {cfg.seeds} seeds (larger size: {cfg.large_seeds}; GD: "
        f"{cfg.gd_seeds}, capped at {cfg.gd_max_iter} iterations, {cfg.large_gd_max_iter} at "
        f"n = {cfg.large_n}).  Target: relative error {cfg.target:g} (the paper's 1e-20 is below "
        "float64 resolution).  Times include each solver's setup (power iteration, Lanczos); "
        "the Nystrom reference is computed before timing.  GD: step 1/sigma_max^2 from "
        "power iteration and no ridge (the library's default; `ridge=\"auto\"`, a ridge of "
        "1e-3 sigma_max^2 when a short Lanczos run detects a rank-deficient A, is an option "
        "not used here, and our brief gives the paper no ridge); the ridges recorded on the "
        f"rank-deficient problems: {facts['gd_ridges_rank_deficient']}.",
        "", *rows, "", "Kappa sweep (medians):", "", *sw])


def _cpus() -> int:
    """CPU cores of the machine the run is on (the hardware the timing claims are about)."""
    import os

    return os.cpu_count() or 1
