"""Distributed EAGLE vs distributed GD on the real engine (brief section 5, distributed).

    python benchmarks/bench_distributed.py [--quick] [--parts msweep,alpha,kappa1,overhead]
                                           [--json out.json]

Problems: `eaglelab.tasks.diverse_problem` - n = d = 1000, d' = n' = 2, every block
with condition number exactly kappa_max = 1e3, and a diversity index alpha fixed by
construction (block ranges are hyperplanes of 3-dimensional cells with controlled normals;
A has rank 100 when alpha = 1 and 150 otherwise, 50 cells).  alpha ~ 1 cannot come from a
full-rank square A cut into blocks narrower than d, and alpha in (2/3, 1) is impossible
with M = 3 (docs/distributed.md), so the alpha sweep uses {1, 2/3, 0.35, 0.01}.

Measured:
* EAGLE (accelerated: freeze_tol = 1e-10) runs on the real engine - M local gloo
  processes via `solve_distributed` - and "rounds to 1e-6" is the first round whose
  relative error ||D_l - D*||_F / ||D*||_F is <= 1e-6; bytes = rounds x the bytes every
  rank handed to the round all_reduce (measured at the call) x M.
* GD needs millions of rounds at kappa_max = 1e3, far too many to run.  It is linear, so
  its error after l rounds is known exactly from one eigendecomposition:
  D_l - D* = -S T^+ (I - T)^l C with T = (1/M) sum rho_mu A^mu A^mu^T and
  S = (1/M) sum rho_mu B^mu A^mu^T; the first l with error <= 1e-6 is found by bisection.
  The formula is checked against a short real GD run on the engine (first rounds' errors).
* Overhead: wall time of the multi-process run against the in-process simulation
  (`eagle_distributed`, one BLAS thread like each worker) on the same problem.

Machine note: run alone (2 shared cores); --quick shrinks n = d to 300 for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
from threadpoolctl import threadpool_limits

from eaglelab.distributed import partition_report, solve_distributed
from eaglelab.solvers import eagle_distributed
from eaglelab.tasks import diverse_problem

TARGET = 1e-6


def rounds_to(errors: list[float], target: float = TARGET) -> int | None:
    for k, e in enumerate(errors):
        if e <= target:
            return k + 1
    return None


def gd_error_model(p):
    """(error(l) for integer l, the check of the formula's limit against D*)."""
    A, B, C, D = p.A, p.B, p.C, p.D
    M = len(p.partition)
    d = A.shape[0]
    T = np.zeros((d, d))
    S = np.zeros((B.shape[0], d))
    for J in p.partition:
        Am, Bm = A[:, J], B[:, J]
        rho = 1.0 / np.linalg.norm(Am, 2) ** 2
        T += rho * Am @ Am.T / M
        S += rho * Bm @ Am.T / M
    lam, V = np.linalg.eigh(T)
    r = int(np.linalg.matrix_rank(A))
    lam, V = lam[-r:], V[:, -r:]
    K = (S @ V) / lam                          # S V Lambda^{-1}
    c = V.T @ C
    ref = float(np.linalg.norm(D))
    limit_err = float(np.linalg.norm(K @ c - D)) / ref
    log_decay = np.log1p(-np.minimum(lam, 1.0 - 1e-16))

    def error(l: float) -> float:
        return float(np.linalg.norm((K * np.exp(l * log_decay)) @ c)) / ref

    return error, limit_err, float(lam.min())


def gd_rounds_to(error, target: float = TARGET) -> int:
    hi = 1
    while error(hi) > target:
        hi *= 2
        if hi > 2**62:
            raise RuntimeError("GD does not reach the target")
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if error(mid) > target else (lo, mid)
    return hi


def run_case(M: int, alpha: float, *, n: int, kappa: float, cells: int, seed: int,
             eagle_cap: int, gd_check_rounds: int, timeout: float) -> dict:
    p = diverse_problem(n, n, M, alpha=alpha, kappa=kappa, cells=cells, seed=seed)
    rep = partition_report(p.A, p.partition)
    t0 = time.perf_counter()
    eagle = solve_distributed(p.A, p.B, p.C, workers=M, method="eagle", reference=p.D,
                              tol=1e-10, max_iter=eagle_cap, freeze_tol=1e-10,
                              timeout=timeout)
    wall = time.perf_counter() - t0
    comm = eagle.info["comm"]
    payload_bytes = comm["bytes_per_round_per_rank"]
    er = rounds_to(eagle.history.error)
    error, limit_err, lam_min = gd_error_model(p)
    gr = gd_rounds_to(error)
    check = None
    if gd_check_rounds:
        gd = solve_distributed(p.A, p.B, p.C, workers=M, method="gd", reference=p.D,
                               tol=1e-300, max_iter=gd_check_rounds, timeout=timeout)
        model = [error(k + 1) for k in range(gd_check_rounds)]
        check = float(np.max(np.abs(np.array(gd.history.error) - model)))
    bytes_round = payload_bytes * M
    return {
        "M": M, "alpha_target": alpha, "alpha": rep.alpha, "kappa_max": rep.kappa_max,
        "rank": rep.rank, "eagle_rounds": er, "eagle_final_error": eagle.relative_error,
        "eagle_wall_s": wall, "eagle_solve_s": eagle.seconds,
        "frozen_at": eagle.info.get("frozen_at"),
        "floats_per_round_per_rank": comm["floats_per_round_per_rank"],
        "expected_floats": (n + 2) * 2 if M > 1 else 0,
        "eagle_bytes": None if er is None else er * bytes_round,
        "gd_rounds": gr, "gd_bytes": gr * bytes_round, "gd_lambda_min": lam_min,
        "gd_model_limit_error": limit_err, "gd_model_vs_engine": check,
        "ratio": None if er is None else gr / er,
    }


def overhead(M: int, *, n: int, kappa: float, cells: int, seed: int, timeout: float) -> dict:
    p = diverse_problem(n, n, M, alpha=1.0, kappa=kappa, cells=cells, seed=seed)
    kw = dict(reference=p.D, tol=1e-10, max_iter=200)
    t0 = time.perf_counter()
    with threadpool_limits(1):
        sim = eagle_distributed(p.A, p.B, p.C, partition=p.partition, **kw)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    eng = solve_distributed(p.A, p.B, p.C, workers=M, partition=p.partition, timeout=timeout,
                            **kw)
    t_eng = time.perf_counter() - t0
    return {"M": M, "rounds": eng.iterations, "same_rounds": eng.iterations == sim.iterations,
            "max_abs_diff": float(np.abs(eng.D - sim.D).max()),
            "sim_s": t_sim, "engine_wall_s": t_eng, "engine_solve_s": eng.seconds,
            "ratio_wall": t_eng / t_sim, "ratio_solve": eng.seconds / sim.seconds,
            "ms_per_round_sim": 1e3 * sim.seconds / sim.iterations,
            "ms_per_round_engine": 1e3 * eng.seconds / eng.iterations}


def fmt(x, spec=".3g"):
    if x is None:
        return "-"
    return format(x, spec) if isinstance(x, float) else str(x)


def table(rows: list[dict]) -> str:
    head = ("| M | alpha | EAGLE rounds | GD rounds | GD/EAGLE | EAGLE bytes | GD bytes | "
            "floats/rank/round (expected) | >= 10x |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        ok = r["ratio"] is not None and r["ratio"] >= 10
        eb = r["eagle_bytes"]
        lines.append(
            f"| {r['M']} | {r['alpha']:.3g} | {fmt(r['eagle_rounds'])} | {r['gd_rounds']:.3g} | "
            f"{fmt(r['ratio'])} | {fmt(None if eb is None else float(eb))} | "
            f"{r['gd_bytes']:.3g} | {r['floats_per_round_per_rank']} ({r['expected_floats']}) | "
            f"{'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n = d = 300, cells = 15 (smoke run)")
    ap.add_argument("--parts", default="msweep,alpha,kappa1,overhead")
    ap.add_argument("--json", default=None, help="write all numbers to this file")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n, cells = (300, 15) if args.quick else (1000, 50)
    kappa, timeout = 1e3, 120.0
    parts = set(args.parts.split(","))
    out: dict = {"n": n, "d": n, "kappa_max": kappa, "cells": cells, "target": TARGET}
    common = dict(n=n, kappa=kappa, cells=cells, seed=args.seed, timeout=timeout)
    if "msweep" in parts:
        rows = [run_case(M, 1.0, eagle_cap=400, gd_check_rounds=30 if M == 3 else 0, **common)
                for M in (1, 3, 5, 8)]
        out["msweep"] = rows
        print(f"\n## M sweep (alpha = 1, kappa_max = {kappa:g}, n = d = {n})\n")
        print(table(rows))
    if "alpha" in parts:
        rows = [run_case(3, a, eagle_cap=4000, gd_check_rounds=30 if a == 0.35 else 0, **common)
                for a in (1.0, 2 / 3, 0.35, 0.01)]
        out["alpha"] = rows
        print(f"\n## alpha sweep (M = 3, kappa_max = {kappa:g}, n = d = {n})\n")
        print(table(rows))
        print("\nalpha x EAGLE rounds: " + ", ".join(
            f"{r['alpha']:.3g}: {r['alpha'] * r['eagle_rounds']:.3g}" for r in rows
            if r["eagle_rounds"]))
    if "kappa1" in parts:
        rows = [run_case(3, a, eagle_cap=4000, gd_check_rounds=0, **dict(common, kappa=1.0))
                for a in (0.35,)]
        out["kappa1"] = rows
        print("\n## where EAGLE does not win: well-conditioned blocks (kappa_max = 1), M = 3\n")
        print(table(rows))
    if "overhead" in parts:
        rows = [overhead(M, **common) for M in (3, 8)]
        out["overhead"] = rows
        print("\n## multi-process engine vs in-process simulation (alpha = 1)\n")
        print("| M | rounds | same rounds | max |D diff| | simulation s | engine wall s | "
              "engine solve s | wall ratio | solve ratio | ms/round sim | ms/round engine |")
        print("|" + "---|" * 11)
        for r in rows:
            print(f"| {r['M']} | {r['rounds']} | {r['same_rounds']} | {r['max_abs_diff']:.1e} | "
                  f"{r['sim_s']:.2f} | {r['engine_wall_s']:.2f} | {r['engine_solve_s']:.2f} | "
                  f"{r['ratio_wall']:.2f} | {r['ratio_solve']:.2f} | "
                  f"{r['ms_per_round_sim']:.1f} | {r['ms_per_round_engine']:.1f} |")
    for rows in (out.get("msweep", []), out.get("alpha", [])):
        for r in rows:
            if r["gd_model_vs_engine"] is not None:
                print(f"\nGD closed form vs engine (M = {r['M']}, alpha = {r['alpha']:.3g}): "
                      f"max error difference over the first rounds {r['gd_model_vs_engine']:.1e}; "
                      f"formula limit vs D*: {r['gd_model_limit_error']:.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=lambda x: None if isinstance(x, float)
                      and not math.isfinite(x) else x)


if __name__ == "__main__":
    main()
