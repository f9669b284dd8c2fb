"""Shared helpers for the benchmark scripts: BLAS thread pinning and a GEMM peak."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np


def best_time(fn, repeat: int = 5) -> float:
    """Best wall time of `repeat` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def gemm_rate(n: int, dtype=np.float64, repeat: int = 3) -> float:
    """Measured FLOP/s of an n x n x n numpy matmul (the machine's practical peak)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
    return 2 * n**3 / best_time(lambda: a @ b, repeat)


def machine() -> dict:
    from threadpoolctl import threadpool_info

    return {"python": platform.python_version(), "numpy": np.__version__,
            "processor": platform.processor() or platform.machine(),
            "blas": [{k: i.get(k) for k in ("internal_api", "architecture", "num_threads")}
                     for i in threadpool_info()]}


def write_json(name: str, payload: dict) -> Path:
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    return path
