"""GD in context (von Oswald et al., ICML 2023, arXiv 2212.07677): a trained single
linear-attention layer is one step of gradient descent.

Task (related brief section 2; `tasks.icl`): d = 10, N = 10, w ~ N(0, I), noiseless,
x ~ U(-0.5, 0.5) (their public code) and, for the brief's finding, U(-1, 1) (their text).
Model: one full layer (every weight free), trained by eaglelab's trainer.  Reference: one
GD step from w = 0 with the step eta tuned on a validation batch (`solvers.icl_baselines`).
Measured on untouched test prompts: the loss (1/2 squared error, their convention) of
model and GD; the cosine between the sensitivities d(prediction)/d(x_q) of model and GD
(autograd for the model, eta h for GD, h = X^T y / N), averaged over prompts; the mean
absolute differences of predictions and of sensitivities; and the loss of the model whose
products W_QK, W_VP are the midpoint of the trained model's and the GD construction's
(`models.family.preconditioned_gd` with Gamma = eta I; interpolated in product space, the
gauge-free form of their weight interpolation).  Negative control: the untrained model
must fail "matches GD".

Rules fixed before the first full run: "matches one GD step" means the model's loss within
MATCH_TOL (relative) of GD's and a mean sensitivity cosine >= COSINE_MIN; the loss "about
0.2" means within LOSS_WINDOW of 0.2 (ours).  Our recipe: Adam lr 1e-3, batch 2,048 (theirs),
10,000 steps (theirs: tens of thousands; 5,000 left one of three seeds at the saddle of
the small initialisation, loss 0.398 against predicting zero's 0.415 - the budget was raised
after that run, the rules were not changed), init std 0.002 (theirs for one layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eaglelab.experiments import _common as cm
from eaglelab.experiments._family import trained_icl_run
from eaglelab.experiments.base import Context, ExperimentResult

TITLE = "GD in context (von Oswald et al.): a trained linear-attention layer is one GD step"
PAPER_REF = "arXiv 2212.07677, Section 3 (Fig 2)"

PAPER_LOSS = 0.2
LOSS_WINDOW = (0.16, 0.24)
MATCH_TOL = 0.05
COSINE_MIN = 0.99


@dataclass
class Config:
    seeds: int = 3
    steps: int = 10000        # 5,000 left one of three seeds at the saddle of the small init
    batch: int = 2048
    lr: float = 1e-3
    init_std: float = 0.002
    tokens: int = 10
    features: int = 10
    ranges: tuple[float, ...] = (0.5, 1.0)
    test_size: int = 20000
    val_size: int = 5000
    base_seed: int = 0


QUICK = dict(seeds=1, steps=3000, batch=512, test_size=4000, val_size=2000)


def make_config(quick: bool = False, seeds: int | None = None, **overrides: Any) -> Config:
    return cm.make_config(Config, QUICK, quick, seeds, overrides)


def _train(cfg: Config, x_range: float, seed: int, folder: Path):
    over = {"task.family": "von-oswald", "task.tokens": str(cfg.tokens),
            "task.features": str(cfg.features), "task.x_range": str(x_range),
            "model.layers": "1", "model.init_std": str(cfg.init_std),
            "train.batch": str(cfg.batch), "train.lr": str(cfg.lr), "train.seed": str(seed),
            "train.eval_size": "512", "train.eval_every": "1000", "train.threads": "1"}
    return trained_icl_run(over, cfg.steps, folder)


def _predict_and_sensitivity(model, prompts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions (B,) and d(prediction)/d(x_q) (B, d) by autograd, float64."""
    Z = torch.as_tensor(prompts).clone().requires_grad_(True)
    pred = model(Z)[0, :, 0, 0]
    (grad,) = torch.autograd.grad(pred.sum(), Z)
    return pred.detach().numpy(), grad[:, -1, :-1].numpy()


def _measure(model, test, val, cfg: Config) -> dict[str, Any]:
    from eaglelab.models.family import family_model, preconditioned_gd
    from eaglelab.solvers import icl_baselines as R

    model = model.double()
    eta, _ = R.tune_gd_step(val.X, steps=1)
    pred, sens = _predict_and_sensitivity(model, test.prompt)
    x, y = test.X[:, :-1, :-1], test.X[:, :-1, -1]
    h = np.einsum("bnd,bn->bd", x, y) / cfg.tokens
    pred_gd, sens_gd = np.einsum("bd,bd->b", test.X[:, -1, :-1], eta * h), eta * h
    cos = np.einsum("bd,bd->b", sens, sens_gd) / (
        np.linalg.norm(sens, axis=1) * np.linalg.norm(sens_gd, axis=1) + 1e-300)
    gd_model = family_model(*preconditioned_gd([eta * np.eye(cfg.features)]), cfg.tokens)
    mid = _midpoint(model, gd_model)
    with torch.no_grad():
        pred_mid = mid(torch.as_tensor(test.prompt))[0, :, 0, 0].numpy()
    half = lambda p: 0.5 * R.mse(p, test.X)  # noqa: E731
    return {"loss": half(pred), "loss_gd": half(pred_gd), "loss_mid": half(pred_mid),
            "loss_zero": 0.5 * float(np.mean(test.answer ** 2)), "eta": eta,
            "cosine": float(np.mean(cos)), "pred_l1": float(np.mean(np.abs(pred - pred_gd))),
            "sens_l1": float(np.mean(np.abs(sens - sens_gd)))}


def _midpoint(a, b):
    """A model whose W_QK, W_VP are the means of a's and b's (one head, one layer each):
    Wq = W_QK, Wk = I, Wv = W_VP, Wp = I.  The layer is bilinear in (W_QK, W_VP), so
    (c W_QK, W_VP / c) is the same model for every c != 0: a's pair is first brought to
    b's scale and sign, c = sign(<W_QK^a, W_QK^b>) ||W_QK^b|| / ||W_QK^a|| (the balanced
    gauge), so the midpoint is defined."""
    from eaglelab.models import LinearTransformer

    pa, pb = a.products(), b.products()
    qa, va = pa["W_QK"][0, 0, 0], pa["W_VP"][0, 0, 0]
    qb, vb = pb["W_QK"][0, 0, 0], pb["W_VP"][0, 0, 0]
    c = torch.linalg.matrix_norm(qb) / torch.linalg.matrix_norm(qa)
    if float((qa * qb).sum()) < 0:
        c = -c
    mid = LinearTransformer(a.config, [0], dtype=torch.float64)
    W = a.config.width
    with torch.no_grad():
        p = mid.params()
        p["wq"][0, 0, 0] = (c * qa + qb) / 2
        p["wv"][0, 0, 0] = (va / c + vb) / 2
        p["wk"][0, 0, 0] = torch.eye(W, dtype=torch.float64)
        p["wp"][0, 0, 0] = torch.eye(W, dtype=torch.float64)
    return mid


def run(cfg: Config, ctx: Context) -> ExperimentResult:
    from eaglelab.models import LinearTransformer
    from eaglelab.tasks.icl import ICLTaskConfig, icl_batch
    from eaglelab.train.runs import training_seconds

    seeds = [cfg.base_seed + k for k in range(cfg.seeds)]
    rows: dict[str, list[dict]] = {}
    controls: dict[str, dict] = {}
    jobs = [(r, s) for r in cfg.ranges for s in seeds]
    for r, s in ctx.track(jobs, "train and measure"):
        task = ICLTaskConfig(family="von-oswald", tokens=cfg.tokens, features=cfg.features,
                             x_range=r)
        test, val = icl_batch(task, cfg.test_size, 10_000 + s), icl_batch(task, cfg.val_size,
                                                                        20_000 + s)
        folder = ctx.out_dir / "runs" / f"range{r:g}-seed{s}"
        run_ = _train(cfg, r, s, folder)
        ctx.trained_runs[str(folder)] = training_seconds(folder)
        rows.setdefault(f"{r:g}", []).append({"seed": s, **_measure(run_.model, test, val, cfg)})
        if s == seeds[0]:
            blank = LinearTransformer(run_.model.config, [s], dtype=torch.float64)
            controls[f"{r:g}"] = _measure(blank, test, val, cfg)
    data = {"rows": rows, "controls": controls, "paper_loss": PAPER_LOSS,
            "config": cfg.__dict__}
    _plot(ctx, rows)
    return ExperimentResult(name="von_oswald", data=data, claims=_claims(rows, controls),
                            section=_section(cfg, rows, controls), captions=_captions())


def _matches(m: dict) -> bool:
    return abs(m["loss"] - m["loss_gd"]) <= MATCH_TOL * m["loss_gd"] and m["cosine"] >= COSINE_MIN


def _claims(rows: dict[str, list[dict]], controls: dict[str, dict]):
    claims = []
    main = rows.get("0.5", [])
    if main:
        claims.append(cm.claim(
            f"x ~ U(-0.5, 0.5): the trained layer matches one GD step with the best step - "
            f"loss within {MATCH_TOL:.0%} of GD's and mean sensitivity cosine >= {COSINE_MIN:g} "
            "for every seed (rule ours)",
            "trained layer = one GD step; cosine ~1, L2 differences ~0 (Fig 2)",
            "; ".join(f"seed {m['seed']}: loss {m['loss']:.3f} vs GD {m['loss_gd']:.3f}, "
                      f"cosine {m['cosine']:.4f}" for m in main),
            all(_matches(m) for m in main), "every seed matches",
            "not every seed: " + ", ".join(
                f"seed {m['seed']} " + ("stays at the zero predictor's saddle (loss "
                                        f"{m['loss']:.3f} vs {m['loss_zero']:.3f})"
                                        if m["loss"] > 0.9 * m["loss_zero"] else "differs")
                for m in main if not _matches(m))))
        med = cm.median([m["loss"] for m in main])
        claims.append(cm.claim(
            "The trained layer's loss (1/2 squared error) is about 0.2 for x ~ U(-0.5, 0.5) "
            f"(window {LOSS_WINDOW[0]:g}-{LOSS_WINDOW[1]:g}, ours)", "about 0.2 (Fig 2)",
            f"median {med:.3f}", LOSS_WINDOW[0] <= med <= LOSS_WINDOW[1], "inside the window",
            "outside the window"))
        claims.append(cm.claim(
            "The weight interpolation (midpoint of the trained and the GD products) has the "
            f"same loss: within {MATCH_TOL:.0%} of the trained layer's, every seed",
            "same loss at (theta + theta_GD) / 2",
            "; ".join(f"{m['loss_mid']:.3f} vs {m['loss']:.3f}" for m in main),
            all(abs(m["loss_mid"] - m["loss"]) <= MATCH_TOL * m["loss"] for m in main),
            "the midpoint loses nothing", "the midpoint is worse"))
        if "0.5" in controls:
            c = controls["0.5"]
            claims.append(cm.claim(
                "Negative control: the untrained layer does not match one GD step",
                "(a control of ours)", f"loss {c['loss']:.3f} vs GD {c['loss_gd']:.3f}, "
                f"cosine {c['cosine']:.3f}", not _matches(c),
                "the rule rejects a layer that learned nothing",
                "the rule accepts an untrained layer"))
    wide = rows.get("1", [])
    if wide:
        med = cm.median([m["loss_gd"] for m in wide])
        claims.append(cm.claim(
            "With the text's x ~ U(-1, 1) one GD step's loss is far from the published 0.2 "
            "(the published loss matches the code's U(-0.5, 0.5))",
            "text: x ~ U(-1, 1); reported loss ~0.2", f"one GD step: {med:.3f}",
            not LOSS_WINDOW[0] <= med <= LOSS_WINDOW[1],
            "U(-1, 1) gives a different loss: the published number is U(-0.5, 0.5)'s",
            "U(-1, 1) also gives about 0.2"))
    return claims


def _plot(ctx: Context, rows: dict[str, list[dict]]) -> None:
    fig, axes = cm.figure(1, 1, width=5.2, height=3.8)
    ax = axes[0, 0]
    keys = sorted(rows, key=float)
    xs = np.arange(len(keys))
    for off, key, label in ((-0.25, "loss", "trained layer"), (0.0, "loss_gd", "one GD step"),
                            (0.25, "loss_mid", "midpoint")):
        ax.bar(xs + off, [cm.median([m[key] for m in rows[k]]) for k in keys], width=0.25,
               label=label)
    ax.axhline(PAPER_LOSS, color="k", ls=":", label="paper ~0.2")
    ax.set(xticks=xs, xticklabels=[f"x ~ U(-{k}, {k})" for k in keys],
           ylabel="test loss (1/2 squared error)", title="one layer vs one GD step")
    ax.legend(fontsize=8)
    ctx.save_figure(fig, "von_oswald")


def _captions() -> dict[str, str]:
    return {"von_oswald.png": "Median test loss over seeds of the trained single layer, one GD "
            "step with the tuned step and the product-space midpoint (balanced gauge), for "
            "both input ranges; dotted: the paper's ~0.2."}


def _section(cfg: Config, rows: dict[str, list[dict]], controls: dict[str, dict]) -> str:
    lines = [f"One full layer, {cfg.seeds} seed(s), {cfg.steps} Adam steps at batch "
             f"{cfg.batch}; losses are 1/2 squared error on {cfg.test_size} test prompts.", "",
             "| x range | seed | loss | one GD step (eta) | midpoint | cosine | mean abs pred "
             "diff | mean abs sensitivity diff |", "|---|---|---|---|---|---|---|---|"]
    for k in sorted(rows, key=float):
        for m in rows[k]:
            lines.append(f"| U(-{k}, {k}) | {m['seed']} | {m['loss']:.4f} | {m['loss_gd']:.4f} "
                         f"({m['eta']:.2f}) | {m['loss_mid']:.4f} | {m['cosine']:.4f} | "
                         f"{m['pred_l1']:.2e} | {m['sens_l1']:.2e} |")
    for k, c in sorted(controls.items()):
        lines += ["", f"Untrained control, U(-{k}, {k}): loss {c['loss']:.3f} (predicting zero "
                  f"{c['loss_zero']:.3f}), cosine {c['cosine']:.3f}."]
    return "\n".join(lines)
