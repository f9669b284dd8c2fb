"""The delta rule's two forms on this CPU: time per token against T (8 .. --max-t), the crossover, and the
chunkwise form's FLOP rate against the measured GEMM rate, in one run.

    python benchmarks/bench_delta.py [--threads 1] [--batch 4] [--dk 64] [--dv 64]
                                     [--chunk 64] [--dtype float32] [--max-t 8192]

Forward passes without autograd (`torch.no_grad`), best of --repeat.  FLOPs of the
chunkwise form per chunk of C rows (multiply-add = 2): K K^T and Q K^T 4 C^2 d_k, the
triangular solve C^2 (d_k + d_v), scores U' 2 C^2 d_v, W S, Q S and K^T U' 6 C d_k d_v.  The
GEMM rate is torch's (the same library the forms run in) on a 1024^3 product of --dtype.
Prints per T: microseconds per token of each form, their ratio recurrent / chunkwise
(above 1: chunkwise faster) and the chunkwise GFLOP/s over the GEMM rate; then the smallest
T from which the chunkwise form is faster.  Writes benchmarks/results/bench_delta.json.
"""

from __future__ import annotations

import argparse

import torch
from _util import best_time, write_json

from eaglelab.models import delta_rule_chunkwise, delta_rule_recurrent


def torch_gemm_rate(dtype: torch.dtype, n: int = 1024) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / best_time(lambda: a @ b, 3)


def chunk_flops(T: int, C: int, dk: int, dv: int) -> float:
    chunks = -(-T // C)
    C = min(C, T)
    return chunks * (4 * C * C * dk + C * C * (dk + dv) + 2 * C * C * dv + 6 * C * dk * dv)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--dk", type=int, default=64)
    ap.add_argument("--dv", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--max-t", type=int, default=8192)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    peak = torch_gemm_rate(dtype)
    print(f"{args.threads} thread(s), {args.dtype}; torch GEMM 1024: {peak / 1e9:.1f} GFLOP/s; "
          f"batch {args.batch}, d_k {args.dk}, d_v {args.dv}, chunk {args.chunk}")
    rows = []
    T = 8
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        while T <= args.max_t:
            q = torch.randn(args.batch, T, args.dk, generator=g).to(dtype)
            k = torch.nn.functional.normalize(torch.randn(args.batch, T, args.dk, generator=g),
                                              dim=-1).to(dtype)
            v = torch.randn(args.batch, T, args.dv, generator=g).to(dtype)
            beta = torch.sigmoid(torch.randn(args.batch, T, generator=g)).to(dtype)
            rep = args.repeat if T <= 2048 else 1
            xs = (q, k, v, beta)
            t_rec = best_time(lambda xs=xs: delta_rule_recurrent(*xs), rep)
            t_chk = best_time(lambda xs=xs: delta_rule_chunkwise(*xs, args.chunk), rep)
            rate = args.batch * chunk_flops(T, args.chunk, args.dk, args.dv) / t_chk
            tokens = args.batch * T
            row = {"T": T, "recurrent_us_per_token": 1e6 * t_rec / tokens,
                   "chunkwise_us_per_token": 1e6 * t_chk / tokens,
                   "recurrent/chunkwise": t_rec / t_chk, "chunkwise_gflops": rate / 1e9,
                   "chunkwise/gemm_peak": rate / peak}
            rows.append(row)
            print(f"T {T:5d}: recurrent {row['recurrent_us_per_token']:8.2f} us/token, "
                  f"chunkwise {row['chunkwise_us_per_token']:7.2f} us/token, ratio "
                  f"{row['recurrent/chunkwise']:6.1f}, chunkwise {rate / 1e9:6.2f} GFLOP/s = "
                  f"{rate / peak:.1%} of GEMM")
            T *= 2
    faster = [r["T"] for r in rows if r["recurrent/chunkwise"] > 1]
    cross = min(faster) if faster else None
    print(f"chunkwise faster from T = {cross} on (of the sizes measured)")
    path = write_json("bench_delta", {"args": vars(args), "gemm_flops": peak, "rows": rows,
                                      "crossover_T": cross})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
