"""GPU check: correctness of the CUDA paths first, then timings - one JSON and a text table.

    python benchmarks/gpu_check.py [--device cuda] [--quick] [--out DIR] [--budget-s 420]

For a maintainer with one GPU (and a CUDA build of torch already installed); it installs
nothing.  Without a CUDA device it prints one line saying so and exits 0.  `--device cpu
--quick` runs every step at toy sizes on the CPU (what the test suite does, so the script
itself is checked on machines without a GPU).

1. Correctness (fails loudly, exit 1): every EAGLE variant (dense, frozen, rows and
   orthogonal sketches, schedule, estimation, simulated distributed) and the device
   baselines (lstsq via the thin SVD, CG, GD) on the device against the numpy float64 path
   of the same function (relative difference <= 1e-10 in float64; 1e-8 for CG, which
   squares the condition number), and float32 EAGLE on
   the device against the float64 answer (<= 50 kappa eps32).
2. Solvers: time to a target (float64, TF32 off) for EAGLE, torch lstsq (SVD) and CG on
   synthetic n = d problems (1920 and 8192; kappa 1e3; relative error 1e-6) and on the
   real matrices of ../shared/data/suitesparse when present (the realdata block
   construction; the paper's target ||D - D*||_F^2 <= 1e-3 ||B||_F^2).
3. Training: seconds per step for the three regimes at 1 and 8 heads (per machine) with
   10 seeds at the paper's batch of 1024, and the estimated cost of the paper's protocol
   (10 seeds, 8 heads to step 10,000, pruned to 1, 1 head to step 20,000) per regime.

Every section stops starting new work once `--budget-s` seconds have passed (the whole
check is meant to stay under 8 minutes on one GPU); what was skipped is listed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from eaglelab.solvers import (
    Schedule,
    cg_normal,
    eagle,
    eagle_distributed,
    eagle_estimate,
    gradient_descent,
    lstsq,
)

KAPPA_CHECK = 100.0
PAPER_EPS = 1e-3          # the real-matrix residual target of the paper's Table 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> tuple[object, float]:
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t


def _rel(a, b) -> float:
    a = a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().cpu().double().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _small_problem(seed: int = 0, d: int = 40, n: int = 56, r: int = 40):
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((d, r)))[0]
    V = np.linalg.qr(rng.standard_normal((n, r)))[0]
    A = U @ np.diag(np.logspace(0, -np.log10(KAPPA_CHECK), r)) @ V.T
    B = rng.standard_normal((4, r)) @ V.T
    C = rng.standard_normal((d, 5))
    return A, B, C, B @ np.linalg.pinv(A) @ C


def correctness(device: torch.device) -> list[dict]:
    """Device path vs the numpy float64 path of the same solver (see module docstring)."""
    A, B, C, ref = _small_problem()
    W = B @ np.linalg.pinv(A)
    cases = {
        "eagle dense": (eagle, {}),
        "eagle frozen": (eagle, {"freeze_tol": 1e-8}),
        "eagle rows sketch": (eagle, {"sketch": "rows", "r": 30, "seed": 1, "max_iter": 3000}),
        "eagle orthogonal sketch": (eagle, {"sketch": "orthogonal", "r": 30, "seed": 1,
                                            "max_iter": 3000}),
        "eagle schedule": (eagle, {"schedule": Schedule.constant(0.2, 0.5, 30)}),
        "eagle distributed (simulated)": (eagle_distributed, {"workers": 4}),
        "lstsq (svd)": (lstsq, {}),
        "cg": (cg_normal, {}),
        "gd": (gradient_descent, {"max_iter": 300}),
    }
    t = lambda x, dt=torch.float64: torch.as_tensor(x, dtype=dt, device=device)  # noqa: E731
    rows = []
    for name, (fn, kw) in cases.items():
        want = fn(A, B, C, reference=ref, **kw)
        got = fn(t(A), t(B), t(C), reference=ref, **kw)
        # CG works on the normal equations (condition kappa^2 = 1e4): its rounding
        # differences between two BLAS are kappa^2 larger than EAGLE's
        tol = 1e-8 if name == "cg" else 1e-10
        ok = (isinstance(got.D, torch.Tensor) and got.D.device.type == device.type
              and got.code == want.code and _rel(got.D, want.D) <= tol)
        rows.append({"check": name, "float": 64, "rel_diff": _rel(got.D, want.D),
                     "tol": tol, "code": str(got.code), "ok": bool(ok)})
    est_np = eagle_estimate(A, B, C, reference=W)
    est = eagle_estimate(t(A), t(B), t(C), reference=W)
    rows.append({"check": "eagle estimation", "float": 64, "rel_diff": _rel(est.W, est_np.W),
                 "tol": 1e-10, "code": str(est.code),
                 "ok": bool(_rel(est.W, est_np.W) <= 1e-10)})
    bound = 50 * KAPPA_CHECK * float(np.finfo(np.float32).eps)
    f32 = eagle(t(A, torch.float32), t(B, torch.float32), t(C, torch.float32), tol=1e-6)
    rows.append({"check": "eagle dense float32 vs float64 answer", "float": 32,
                 "rel_diff": _rel(f32.D, ref), "tol": bound, "code": str(f32.code),
                 "ok": bool(f32.D.dtype == torch.float32 and _rel(f32.D, ref) <= bound)})
    return rows


def _square_problem(n: int, kappa: float, device: torch.device, seed: int = 0):
    """A (n x n, condition kappa), B = W A, C on the device; D* = W C exactly."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device)  # noqa: E731
    U, _ = torch.linalg.qr(rand(n, n))
    V, _ = torch.linalg.qr(rand(n, n))
    s = torch.logspace(0, -np.log10(kappa), n, dtype=torch.float64, device=device)
    A = (U * s) @ V.T
    Wm, C = rand(2, n), rand(n, 2)
    return A, Wm @ A, C, (Wm @ C).cpu().numpy()


def _time_to(history_error, history_seconds, target: float) -> float | None:
    for e, s in zip(history_error, history_seconds, strict=True):
        if e <= target:
            return float(s)
    return None


def _methods(A, B, C, ref) -> dict:
    """The timed solves of one problem (EAGLE and CG run past the target, to tol 1e-14)."""
    return {"eagle": lambda: eagle(A, B, C, reference=ref, tol=1e-14, max_iter=200),
            "lstsq": lambda: lstsq(A, B, C, reference=ref),
            "cg": lambda: cg_normal(A, B, C, reference=ref, tol=1e-14, max_iter=3000)}


def solver_timings(device: torch.device, sizes: list[int], real: bool, deadline: float,
                   skipped: list[str], target: float = 1e-6) -> list[dict]:
    torch.backends.cuda.matmul.allow_tf32 = False
    problems = []
    for n in sizes:
        problems.append((f"synthetic n=d={n}, kappa=1e3", lambda n=n: (*_square_problem(
            n, 1e3, device), target)))
    if real:
        from eaglelab.experiments.realdata import resolve_data_dir
        from eaglelab.tasks import load_matrix, matrix_task

        folder = resolve_data_dir("")
        for path in sorted(folder.glob("*.mtx")) if folder else []:
            def make(path=path):
                p = matrix_task(load_matrix(path), on_full_rank="shrink")
                t = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float64,  # noqa: E731
                                              device=device)
                D = np.asarray(p.D, dtype=np.float64)
                # the paper's target ||D - D*||_F^2 <= 1e-3 ||B||_F^2 (Table 2) as a relative
                # error of D
                rel = np.sqrt(PAPER_EPS) * np.linalg.norm(p.B) / max(np.linalg.norm(D), 1e-300)
                return t(p.A), t(p.B), t(p.C), D, float(rel)
            problems.append((path.stem, make))
    rows = []
    for name, make in problems:
        if time.perf_counter() > deadline:
            skipped.append(f"solver timing: {name}")
            continue
        A, B, C, ref, goal = make()
        row = {"problem": name, "shape": list(A.shape), "target_rel_error": goal}
        for method, fn in _methods(A, B, C, ref).items():
            res, secs = _timed(fn, device)
            reached = _time_to(res.history.error, res.history.seconds, goal)
            row[method] = {"seconds_total": secs, "seconds_to_target": reached,
                           "best_error": float(min(res.history.error)),
                           "iterations": res.iterations}
        rows.append(row)
    return rows


def training_timings(device: torch.device, quick: bool, deadline: float,
                     skipped: list[str]) -> list[dict]:
    from eaglelab.train import Trainer, resolve_config

    seeds, batch, steps = (2, 64, 3) if quick else (10, 1024, 10)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for regime in ("unconstrained", "compute-limited", "distributed"):
            per_heads = {}
            for heads in (1, 8):
                if time.perf_counter() > deadline:
                    skipped.append(f"training timing: {regime} {heads}h")
                    continue
                cfg = resolve_config(regime, seeds, 20000, {
                    "train.batch": str(batch), "model.heads": str(heads),
                    "train.device": str(device), "train.eval_size": "256"})
                tr = Trainer(cfg, Path(tmp) / f"{regime}-{heads}")
                tr.train_step()                                   # warm-up
                _, secs = _timed(lambda tr=tr: [tr.train_step() for _ in range(steps)], device)
                per_heads[heads] = secs / steps
                rows.append({"regime": regime, "heads": heads, "seeds": seeds, "batch": batch,
                             "seconds_per_step": secs / steps})
            if len(per_heads) == 2:      # the paper's protocol: 8 heads to 10k, 1 head after
                rows.append({"regime": regime, "protocol_estimate_s":
                             10000 * per_heads[8] + 10000 * per_heads[1],
                             "seeds": seeds, "batch": batch})
    return rows


def _table(report: dict) -> str:
    lines = [f"gpu_check on {report['device_name']} ({report['device']}), torch "
             f"{report['torch']}", "", "correctness:"]
    for r in report["correctness"]:
        lines.append(f"  {'ok  ' if r['ok'] else 'FAIL'} {r['check']:40} rel diff "
                     f"{r['rel_diff']:.1e} (tol {r['tol']:.0e}) {r['code']}")
    lines += ["", "solvers (seconds to the target; '-' not reached, best error):"]
    for r in report["solvers"]:
        cells = []
        for m in ("eagle", "lstsq", "cg"):
            t = r[m]["seconds_to_target"]
            cells.append(f"{m} {t:.3f}" if t is not None else f"{m} - ({r[m]['best_error']:.0e})")
        lines.append(f"  {r['problem']:32} {r['shape']}  " + "  ".join(cells))
    lines += ["", "training (seconds per step):"]
    for r in report["training"]:
        if "seconds_per_step" in r:
            lines.append(f"  {r['regime']:16} {r['heads']}h x{r['seeds']} batch {r['batch']}: "
                         f"{r['seconds_per_step'] * 1e3:.1f} ms")
        else:
            lines.append(f"  {r['regime']:16} paper protocol (x{r['seeds']}, 20k steps): "
                         f"~{r['protocol_estimate_s'] / 60:.1f} min")
    if report["skipped"]:
        lines += ["", "skipped (budget): " + "; ".join(report["skipped"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--quick", action="store_true", help="toy sizes (a smoke run)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--budget-s", type=float, default=420.0)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device (torch {torch.__version__}, "
              f"cuda build: {torch.version.cuda}); nothing to check - skipped")
        return 0
    start = time.perf_counter()
    deadline = start + args.budget_s
    skipped: list[str] = []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    report = {"device": str(device), "device_name": name, "torch": torch.__version__,
              "quick": args.quick}
    report["correctness"] = correctness(device)
    if not all(r["ok"] for r in report["correctness"]):
        report.update(solvers=[], training=[], skipped=["everything after correctness"])
        sys.stdout.write(_table(report))
        print("gpu_check: CORRECTNESS FAILED - the device paths disagree with the float64 "
              "reference (see the table)", file=sys.stderr)
        _write(args.out, report)
        return 1
    sizes = [64, 128] if args.quick else [1920, 8192]
    report["solvers"] = solver_timings(device, sizes, real=not args.quick, deadline=deadline,
                                       skipped=skipped)
    report["training"] = training_timings(device, args.quick, deadline, skipped)
    report["skipped"] = skipped
    report["seconds"] = time.perf_counter() - start
    sys.stdout.write(_table(report))
    path = _write(args.out, report)
    print(f"gpu_check: done in {report['seconds']:.0f} s; wrote {path} and {path.with_suffix('.txt')}")
    return 0


def _write(folder: Path, report: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gpu_check.json"
    path.write_text(json.dumps(report, indent=2))
    path.with_suffix(".txt").write_text(_table(report))
    return path


if __name__ == "__main__":
    raise SystemExit(main())
