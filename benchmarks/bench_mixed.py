"""Mixed-precision EAGLE against float64 EAGLE and lstsq, in one run, on this CPU.

    python benchmarks/bench_mixed.py [--n 1920] [--threads 1] [--real] [--max-dim 2000]

Times to tol = 1e-10 (the stop rule; the error against the float64 reference is printed
beside) on a synthetic n = d problem (kappa 1e2) and, with --real, on the SuiteSparse
matrices of ../shared/data/suitesparse (the realdata block construction, sides up to
--max-dim).  Prints the ratios mixed / float64 EAGLE and mixed / lstsq (below 1: mixed
wins) and the float32 / float64 GEMM rate of this machine, which bounds what mixed
precision can gain.  Timings are the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _util import best_time, gemm_rate, write_json
from threadpoolctl import threadpool_limits

from eaglelab.solvers import eagle, eagle_mixed, lstsq


def _case(name: str, A, B, C, ref, repeat: int) -> dict:
    out = {"problem": name, "shape": list(A.shape)}
    for method, fn in (("eagle64", lambda: eagle(A, B, C, tol=1e-10, reference=ref)),
                       ("mixed", lambda: eagle_mixed(A, B, C, tol=1e-10, reference=ref)),
                       ("lstsq", lambda: lstsq(A, B, C, reference=ref))):
        res = fn()
        out[method] = {"seconds": best_time(fn, repeat), "error": res.relative_error,
                       "code": str(res.code), "iterations": res.iterations}
    out["mixed/eagle64"] = out["mixed"]["seconds"] / out["eagle64"]["seconds"]
    out["mixed/lstsq"] = out["mixed"]["seconds"] / out["lstsq"]["seconds"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1920)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--real", action="store_true")
    ap.add_argument("--max-dim", type=int, default=2000)
    args = ap.parse_args()
    from eaglelab.tasks import conditioned_problem

    rows = []
    with threadpool_limits(args.threads):
        r64, r32 = gemm_rate(1024, np.float64), gemm_rate(1024, np.float32)
        print(f"{args.threads} thread(s); GEMM 1024: float64 {r64 / 1e9:.1f}, float32 "
              f"{r32 / 1e9:.1f} GFLOP/s (ratio {r32 / r64:.2f})")
        t = time.perf_counter()
        p = conditioned_problem(args.n, args.n, 2, 2, kappa=1e2, seed=0)
        print(f"synthetic problem built in {time.perf_counter() - t:.0f} s")
        rows.append(_case(f"synthetic n=d={args.n}, kappa=1e2", p.A, p.B, p.C, p.reference,
                          args.repeat))
        if args.real:
            from eaglelab.experiments.realdata import resolve_data_dir
            from eaglelab.tasks import load_matrix, matrix_task

            folder = resolve_data_dir("")
            for path in sorted(folder.glob("*.mtx")) if folder else []:
                M = load_matrix(path)
                if max(M.shape) > args.max_dim:
                    continue
                q = matrix_task(M, on_full_rank="shrink")
                if not np.any(q.reference):
                    continue                   # D* = 0: nothing to time
                rows.append(_case(path.stem, np.asarray(q.A), np.asarray(q.B),
                                  np.asarray(q.C), q.reference, args.repeat))
    print(f"{'problem':34} {'shape':>12} {'eagle64 s':>10} {'mixed s':>9} {'lstsq s':>9} "
          f"{'mixed/e64':>9} {'mixed/lstsq':>11}   errors (e64 / mixed / lstsq)")
    for r in rows:
        print(f"{r['problem']:34} {str(r['shape']):>12} {r['eagle64']['seconds']:10.3f} "
              f"{r['mixed']['seconds']:9.3f} {r['lstsq']['seconds']:9.3f} "
              f"{r['mixed/eagle64']:9.2f} {r['mixed/lstsq']:11.2f}   "
              f"{r['eagle64']['error']:.1e} / {r['mixed']['error']:.1e} / "
              f"{r['lstsq']['error']:.1e}")
    path = write_json("bench_mixed", {"threads": args.threads, "gemm_f64": r64,
                                      "gemm_f32": r32, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
