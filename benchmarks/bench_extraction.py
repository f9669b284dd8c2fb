"""Train every regime briefly, extract, and print fidelity per layer against the test MSE.

Usage: python benchmarks/bench_extraction.py [--steps 10000] [--seeds 1] [--heads 1]
       [--regimes unconstrained,compute-limited,distributed] [--out DIR]
Prints, per regime: per-layer fidelity (all activations and D slot), the model's test MSE,
fitted eta/gamma with their spread over seeds, the loss change of pruning (heads > 1), the
wall time of training, and writes each extraction report into the run folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _util import write_json

from eaglelab.extract import extract
from eaglelab.extract.report import write_report
from eaglelab.train import cli_train, load_run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--regimes", default="unconstrained,compute-limited,distributed")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="eaglelab-bench-extract-"))
    rows = {}
    for regime in args.regimes.split(","):
        run_dir = root / regime
        t0 = time.perf_counter()
        cli_train(regime, args.seeds, args.steps, run_dir, quiet=True,
                  overrides={"model.heads": str(args.heads)})
        train_s = time.perf_counter() - t0
        run = load_run(run_dir)
        ex = extract(run.model, run.config.task)
        write_report(ex, run_dir / "extraction")
        s = ex.summary()
        s["train_seconds"] = train_s
        if ex.prune:
            s["prune_loss_before"] = ex.prune["loss_before"]
            s["prune_loss_after"] = ex.prune["loss_after"]
        rows[regime] = s
        print(f"{regime:16s} train {train_s:6.0f} s  mse {s['mse']:.2e}  fidelity "
              + " ".join(f"{v:.1e}" for v in s["fidelity"]) + "  D-slot "
              + " ".join(f"{v:.1e}" for v in s["fidelity_prediction"])
              + f"  eta {s['eta']:.2f}+-{s['eta_std']:.2f} gamma {s['gamma']:.2f}+-"
              f"{s['gamma_std']:.2f}  faithful {s['faithful']}", flush=True)
    print("results:", write_json("extraction", {"args": vars(args) | {"out": str(root)},
                                               "regimes": json.loads(json.dumps(rows))}))


if __name__ == "__main__":
    main()
