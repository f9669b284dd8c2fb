"""Iterations and wall time to relative error 1e-10: EAGLE vs CG (normal equations) vs GD.

n = d = 240, n' = d' = 2, kappa in 1e2..1e5.  Prints per-kappa counts and the ratio of
iterations CG / EAGLE at kappa = 1e4 (target >= 100).  A method that does not reach the
target within its budget is reported as such (">budget"), never as converged.
Usage: python benchmarks/bench_kappa_sweep.py [--n 240] [--gd-budget 20000]
"""

from __future__ import annotations

import argparse

from _util import write_json

from eaglelab.distributed.solve import solve_problem
from eaglelab.tasks import conditioned_problem

TARGET = 1e-10


def to_target(res) -> tuple[int | None, float | None]:
    for i, e in enumerate(res.history.error):
        if e <= TARGET:
            return i + 1, res.history.seconds[i]
    return None, None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--cg-budget", type=int, default=20000)
    ap.add_argument("--gd-budget", type=int, default=20000)
    args = ap.parse_args()
    rows = []
    for kappa in (1e2, 1e3, 1e4, 1e5):
        p = conditioned_problem(args.n, args.n, kappa=kappa, seed=0)
        row = {"kappa": kappa}
        for method, budget in (("eagle", 500), ("cg", args.cg_budget), ("gd", args.gd_budget)):
            res = solve_problem(p, method, tol=1e-16, max_iter=budget)
            its, secs = to_target(res)
            row[method] = {"iterations": its, "seconds": secs, "budget": budget,
                           "final_error": res.relative_error}
        rows.append(row)
        cells = []
        for m in ("eagle", "cg", "gd"):
            r = row[m]
            cells.append(f"{m}: " + (f"{r['iterations']} it / {r['seconds']:.3f} s"
                                     if r["iterations"] else f">{r['budget']} it "
                                     f"(err {r['final_error']:.1e})"))
        print(f"kappa {kappa:8.0e}  " + "  |  ".join(cells))
    k4 = next(r for r in rows if r["kappa"] == 1e4)
    reached = k4["cg"]["iterations"] is not None
    ratio = (k4["cg"]["iterations"] if reached else k4["cg"]["budget"]) / k4["eagle"]["iterations"]
    bound = "" if reached else ">= "  # CG never reached the target: its budget is a lower bound
    print(f"CG / EAGLE iterations at kappa 1e4: {bound}{ratio:.1f} (target >= 100)")
    print("results:", write_json("kappa_sweep", {"target": TARGET, "rows": rows,
                                                 "cg_over_eagle_at_1e4": ratio,
                                                 "cg_reached_at_1e4": reached}))


if __name__ == "__main__":
    main()
