"""Training step time against its floor (issue 3), in one run.

    python benchmarks/bench_train.py [--steps 200] [--threads N] [--seeds 10] [--compile]

Floor = model FLOPs per step / the measured rate of the batched matmul the model is made
of (torch.bmm on 1024 x 20 x 20 x 20).  Two FLOP counts are reported:
  full  - the architecture as written: L complete layers, every row, products W_QK, W_VP
          precomputed, backward = 2 x forward (the prototypes' floor);
  exec  - what the fused kernel actually multiplies (Gram-form contraction over the d key
          rows, last layer restricted to the d' query rows and the n' D-slot columns, no
          input gradient in layer 1).
Step time is a whole training step: data for every seed, forward, backward, per-seed
clipping, spike guard and Adam.  "model" is forward + backward alone on a fixed batch.
Timings are the best of 5 chunks (the machine is shared; see docs/training.md for the
numbers and the thread count).  Keep runs short; never run two benchmarks at once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from eaglelab.models._fused import fused_flops_per_sample
from eaglelab.tasks.blocks import split_prompt
from eaglelab.train import Trainer, resolve_config
from eaglelab.train.cli import _tune_malloc


def _rate(fn, flops: float, repeats: int = 7, inner: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t) / inner)
    return flops / min(times)


def bmm_rate() -> float:
    a, b = torch.randn(1024, 20, 20), torch.randn(1024, 20, 20)
    return _rate(lambda: torch.bmm(a, b), 2 * 1024 * 20 * 20 * 20, inner=50)


def gemm_peak() -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    return _rate(lambda: a @ b, 2 * 1024**3, repeats=5, inner=5)


def _best_time(fn, steps: int) -> float:
    """Seconds per call: the best of 5 chunks of steps/5 calls (the machine is shared;
    the best chunk is the least disturbed one)."""
    for _ in range(min(10, steps)):
        fn()
    chunk = max(steps // 5, 1)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(chunk):
            fn()
        times.append((time.perf_counter() - t) / chunk)
    return min(times)


def trainer(regime: str, heads: int, seeds: int, batch: int, tmp: Path) -> Trainer:
    cfg = resolve_config(regime, seeds, 10**9, {"model.heads": str(heads),
                                                "batch": str(batch), "eval_size": "64"})
    return Trainer(cfg, tmp / f"{regime}-{heads}-{seeds}")


def model_only(tr: Trainer, compiled=None) -> float:
    X = tr.stream.next()
    Z0, D = split_prompt(X, tr.config.model.d, tr.config.model.n)
    theta = tr.model.theta

    def step():
        theta.grad = None
        (compiled or tr.model.loss)(Z0, D).sum().backward()

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile of the autograd path (slow to compile)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _tune_malloc()
    rate, peak = bmm_rate(), gemm_peak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"bmm 1024x20x20x20: {rate / 1e9:.1f} GFLOP/s; large GEMM peak: {peak / 1e9:.1f} "
          f"GFLOP/s ({rate / peak:.0%} of peak)")
    B = args.batch
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    header = (f"{'regime':16} {'H':>2} {'step ms':>8} {'model ms':>8} {'data ms':>7} "
              f"{'floor full':>10} {'ratio':>6} {'floor exec':>10} {'ratio':>6} "
              f"{'%peak':>6}")
    print(header)
    for regime, heads in [("unconstrained", 1), ("unconstrained", 8),
                          ("compute-limited", 1), ("distributed", 1), ("distributed", 8),
                          ("estimation", 1)]:
        tr = trainer(regime, heads, 1, B, tmp)
        c = tr.model.config
        t_step = _best_time(tr.train_step, args.steps)
        t_model = _best_time(model_only(tr), max(args.steps // 2, 10))
        t_data = _best_time(tr.stream.next, 20)
        full = 3 * tr.model.flops_per_sample(full=True) * B
        groups = c.machines if regime == "distributed" else 1
        R = c.local_width if regime == "distributed" else c.width
        f, b = fused_flops_per_sample(c.d, c.d_prime, c.n, c.width, c.total_heads, c.layers,
                                      R, groups)
        exe = (f + b) * B
        print(f"{regime:16} {c.total_heads:>2} {t_step * 1e3:8.2f} {t_model * 1e3:8.2f} "
              f"{t_data * 1e3:7.2f} {full / rate * 1e3:8.2f}ms {t_step / (full / rate):6.2f} "
              f"{exe / rate * 1e3:8.2f}ms {t_step / (exe / rate):6.2f} "
              f"{exe / t_step / peak:6.1%}")
    # vectorised seeds
    t1 = _best_time(trainer("unconstrained", 1, 1, B, tmp).train_step, args.steps)
    K = args.seeds
    tK = _best_time(trainer("unconstrained", 1, K, B, tmp).train_step,
                      max(args.steps // K, 10))
    print(f"seeds: 1 seed {t1 * 1e3:.2f} ms/step, {K} seeds {tK * 1e3:.2f} ms/step -> "
          f"{K * t1 / tK:.2f}x cheaper than {K} runs in sequence; "
          f"{K} seeds x 20k steps ~ {tK * 20000 / 60:.1f} min at this rate")
    if args.compile:
        tr = trainer("unconstrained", 1, 1, B, tmp)
        compiled = torch.compile(lambda Z0, D: tr.model.loss(Z0, D, fused=False))
        t = time.perf_counter()
        model_only(tr, compiled)()
        print(f"torch.compile (autograd path): compile {time.perf_counter() - t:.0f} s")
        t_c = _best_time(model_only(tr, compiled), max(args.steps // 2, 10))
        t_e = _best_time(model_only(tr, lambda Z0, D: tr.model.loss(Z0, D, fused=False)),
                           max(args.steps // 2, 10))
        t_f = _best_time(model_only(tr), max(args.steps // 2, 10))
        print(f"model fwd+bwd: autograd eager {t_e * 1e3:.2f} ms, autograd compiled "
              f"{t_c * 1e3:.2f} ms, fused eager {t_f * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
