"""EAGLE's per-iteration FLOP rate against the measured fp64 GEMM rate (n = d = 1920).

Counted FLOPs per dense iteration (d <= n branch): A A^T (d^2 n multiply-adds, symmetric:
numpy calls syrk, so 1 d^2 n FLOP pairs -> we count 2 d^2 n as the GEMM-equivalent work a
plain product would do, and report both), G A (2 d^2 n), G C (2 d^2 n'), B A^T (2 d' d n),
(B A^T) A (2 d' d n), (B A^T) C (2 d' d n').  Target: achieved / GEMM >= 0.75.
Usage: python benchmarks/bench_eagle_flops.py [--n 1920] [--iters 10]
"""

from __future__ import annotations

import argparse

import numpy as np
from _util import gemm_rate, write_json

from eaglelab.solvers import Schedule, eagle
from eaglelab.tasks import conditioned_problem


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1920)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    n = d = args.n
    dp = np_ = 2
    p = conditioned_problem(n, d, np_, dp, kappa=1e3, seed=0)
    peak = gemm_rate(n)
    flops_plain = 2 * d * d * n + 2 * d * d * n + 2 * d * d * np_ + 4 * dp * d * n + 2 * dp * d * np_
    flops_syrk = flops_plain - d * d * n
    # adaptive solver (power iteration + normalisation each step), fixed iteration count
    res = eagle(p.A, p.B, p.C, tol=1e-300, max_iter=args.iters)
    per_iter = np.diff([0.0, *res.history.seconds])[1:]  # drop the first (Lanczos) iteration
    t_iter = float(np.median(per_iter))
    # fixed-step schedule: the pure update, no norm estimation
    rho = 1.0 / np.linalg.norm(p.A, 2) ** 2
    sched = eagle(p.A, p.B, p.C, schedule=Schedule.constant(rho / 3, rho, args.iters), tol=1e-300)
    t_sched = float(np.median(np.diff([0.0, *sched.history.seconds])[1:]))
    out = {
        "n": n, "d": d, "gemm_gflops": peak / 1e9,
        "seconds_per_iteration": t_iter, "seconds_per_iteration_fixed_steps": t_sched,
        "gflops_counted_as_gemm": flops_plain / t_iter / 1e9,
        "ratio_to_gemm": flops_plain / t_iter / peak,
        "ratio_to_gemm_fixed_steps": flops_plain / t_sched / peak,
        "ratio_to_gemm_syrk_flops": flops_syrk / t_iter / peak,
    }
    for k, v in out.items():
        print(f"{k:40s} {v:.4g}" if isinstance(v, float) else f"{k:40s} {v}")
    print("results:", write_json("eagle_flops", out))


if __name__ == "__main__":
    main()
