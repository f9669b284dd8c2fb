"""Which algorithm does each architecture learn on masked-block completion? (issue "Related
systems II"; related brief sections 4-5; no paper has this table.)

Task: the paper's training distribution (brief section 5: d = n = 18, d' = n' = 2, rank
s = 10, alpha = 0.7), in the sequence view (`tasks.sequence`: the d complete rows, then the
d' query rows with D zeroed and a query flag; nothing of D reaches a prediction, tested).
Models (`models.sequence`): `layers` residual layers of causal linear attention, causal
softmax attention (the control: not linear in the prompt's products), Delta Net, Delta RNN
and Recurrent Delta Net ("rec-update"), each trained with the transformer's recipe (Adam,
lr 1e-3, a fresh batch every step, clip 0.1; `train.sequence`) at a CPU budget far below
the transformer's 20,000 steps x batch 1,024 (`PAPER_BUDGET`, for a GPU).

Measured on held-out prompts (float64), per layer l = 1..L: the median over prompts of the
D-slot MSE against the true D; the median condition number of the token states' A block
over its top s singular values (does the layer precondition A like EAGLE?); and the
distance of the layer's D from each algorithm's D after l steps on the same prompts -
median over prompts of ||D_model,l - D_alg,l||_F / ||D*||_F - for EAGLE (dense, the proof's
steps eta = 1/3, gamma = 1 with rho = 1 / ||A_l||_2^2: `extract.algorithm.eagle_layers`)
and GD on min ||W A - B||_F (W <- W - (W A - B) A^T / ||A||_2^2, D_l = W_l C).  The closest
algorithm is the one at the smallest last-layer distance.

Rules (ours, fixed before the first run; no paper number exists): an architecture
"learned" when its median test MSE is at most LEARNED x its untrained self's; causal linear
attention "learns EAGLE's rule" when its last layer is closer to EAGLE than to GD and within
CLOSE of EAGLE.  Negative control: the untrained linear model must fail that rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eaglelab.experiments import _common as cm
from eaglelab.experiments.base import Context, ExperimentResult

TITLE = "Which algorithm does each architecture learn? Linear, softmax, delta-rule, RFWP"
PAPER_REF = "related brief sections 4-5 (a question of ours: no paper has these numbers)"

LEARNED = 0.1
CLOSE = 0.5
ALGORITHMS = ("EAGLE", "GD")


@dataclass
class Config:
    archs: tuple[str, ...] = ("linear", "softmax", "delta", "delta-rnn", "rec-delta")
    layers: int = 4
    steps: int = 2000
    batch: int = 256
    lr: float = 1e-3
    seeds: int = 1            # one model per architecture: the first seed
    base_seed: int = 0
    test_size: int = 2048
    test_seed: int = 4243


# the transformer's recipe (brief section 5), for a GPU: --set steps=20000 --set batch=1024
PAPER_BUDGET = {"steps": 20000, "batch": 1024}

QUICK = dict(steps=150, batch=128, test_size=512)


def make_config(quick: bool = False, seeds: int | None = None, **overrides: Any) -> Config:
    return cm.make_config(Config, QUICK, quick, seeds, overrides)


def _gd_layers(Z0: torch.Tensor, d: int, n: int, L: int) -> list[torch.Tensor]:
    """D after 0..L GD steps on min ||W A - B||_F from W = 0 (step 1 / ||A||_2^2)."""
    A, B, C = Z0[:, :d, :n], Z0[:, d:, :n], Z0[:, :d, n:]
    eta = 1.0 / torch.linalg.matrix_norm(A, ord=2) ** 2
    W = torch.zeros(B.shape[0], B.shape[1], d, dtype=Z0.dtype)
    out = [W @ C]
    for _ in range(L):
        W = W - eta[:, None, None] * (W @ A - B) @ A.transpose(-1, -2)
        out.append(W @ C)
    return out


def _measure(model, Z0: torch.Tensor, D: torch.Tensor, s: int, algs: dict) -> dict[str, Any]:
    from eaglelab.extract.fidelity import layer_quantities

    d, n = model.d, model.n
    with torch.no_grad():
        states = [x[..., :-1] for x in model.double().token_states(Z0)]
    q = layer_quantities(states, D, d, n, rank=s)
    ref = torch.linalg.matrix_norm(D)
    mse, dist = [], {a: [] for a in algs}
    for l, Z in enumerate(states[1:], start=1):
        Dm = -Z[:, d:, n:]
        mse.append(float((Dm - D).square().flatten(1).mean(dim=1).median()))
        for a, Ds in algs.items():
            dist[a].append(float((torch.linalg.matrix_norm(Dm - Ds[l]) / ref).median()))
    last = {a: v[-1] for a, v in dist.items()}
    closest = min(last, key=last.get)
    return {"mse_median": mse, "kappa": q["kappa"][1:], "distance": dist,
            "closest": closest, "closest_distance": last[closest]}


def run(cfg: Config, ctx: Context) -> ExperimentResult:
    from eaglelab.extract.algorithm import eagle_layers
    from eaglelab.extract.fidelity import layer_quantities
    from eaglelab.extract.pipeline import held_out
    from eaglelab.models.sequence import SequenceModel
    from eaglelab.tasks.training import TrainingTaskConfig
    from eaglelab.train.sequence import SequenceRunConfig, train_sequence

    task = TrainingTaskConfig()
    Z0, D = held_out(task, cfg.test_size, cfg.test_seed)
    L = cfg.layers
    eagle = eagle_layers(Z0, task.d, task.n, [0.0] * L, [0.0] * L,
                         eta_gamma=([1 / 3] * L, [1.0] * L))
    algs = {"EAGLE": [-Z[:, task.d:, task.n:] for Z in eagle],
            "GD": _gd_layers(Z0, task.d, task.n, L)}
    zero = float(D.square().flatten(1).mean(dim=1).median())
    alg_rows = {a: {"mse_median": [float((Ds[l] - D).square().flatten(1).mean(dim=1).median())
                                   for l in range(1, L + 1)]} for a, Ds in algs.items()}
    alg_rows["EAGLE"]["kappa"] = layer_quantities(eagle, D, task.d, task.n,
                                                  rank=task.s)["kappa"][1:]
    rows: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for arch in ctx.track(cfg.archs, "architectures"):
        rc = SequenceRunConfig(arch=arch, layers=L, steps=cfg.steps, batch=cfg.batch,
                               lr=cfg.lr, seed=cfg.base_seed, task=task)
        folder = ctx.out_dir / "runs" / f"{arch}-L{L}-seed{cfg.base_seed}"
        model = train_sequence(rc, folder, progress=ctx.progress)
        seconds[arch] = _training_seconds(folder)
        blank = SequenceModel(arch, task.d, task.n, task.d_prime, task.n_prime, layers=L,
                              seed=cfg.base_seed)
        rows[arch] = {"trained": _measure(model, Z0, D, task.s, algs),
                      "untrained": _measure(blank, Z0, D, task.s, algs)}
    data = {"rows": rows, "algorithms": alg_rows, "zero_mse_median": zero,
            "training_seconds": seconds, "config": cfg.__dict__}
    _plot(ctx, cfg, data)
    return ExperimentResult(name="architectures", data=data, claims=_claims(data),
                            section=_section(cfg, data), captions=_captions())


def _training_seconds(folder) -> float:
    import json

    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    evals = [x["seconds"] for x in lines if x["kind"] == "eval"]
    return float(evals[-1]) if evals else 0.0


def _eagle_rule(m: dict) -> bool:
    dist = m["distance"]
    return dist["EAGLE"][-1] < dist["GD"][-1] and dist["EAGLE"][-1] <= CLOSE


def _claims(data: dict) -> list:
    claims = []
    rows = data["rows"]
    learned = {a: r["trained"]["mse_median"][-1] <= LEARNED * r["untrained"]["mse_median"][-1]
               for a, r in rows.items()}
    claims.append(cm.claim(
        f"Every architecture learns the task at this budget: median test MSE at most "
        f"{LEARNED:g} x its untrained self's (rule ours)", "(no paper number)",
        "; ".join(f"{a}: {r['trained']['mse_median'][-1]:.3g} vs untrained "
                  f"{r['untrained']['mse_median'][-1]:.3g}" for a, r in rows.items()),
        all(learned.values()), "every architecture learned",
        "not learned at this budget: " + ", ".join(a for a, v in learned.items() if not v)))
    if "linear" in rows:
        t, u = rows["linear"]["trained"], rows["linear"]["untrained"]
        claims.append(cm.claim(
            "Causal linear attention learns EAGLE's rule: its last layer's D is closer to "
            f"EAGLE's than to GD's and within {CLOSE:g} of EAGLE's (rule ours)",
            "(no paper number: the paper's model is non-causal)",
            f"distance to EAGLE {t['distance']['EAGLE'][-1]:.3f}, to GD "
            f"{t['distance']['GD'][-1]:.3f}", _eagle_rule(t), "closest to EAGLE",
            f"closest to {t['closest']}" if t["closest"] != "EAGLE" else "not within the "
            "distance"))
        claims.append(cm.claim(
            "Negative control: the untrained linear model fails the EAGLE rule",
            "(a control of ours)", f"distance to EAGLE {u['distance']['EAGLE'][-1]:.3f}, to "
            f"GD {u['distance']['GD'][-1]:.3f}", not _eagle_rule(u),
            "the rule rejects an untrained model", "the rule accepts an untrained model"))
    return claims


def _plot(ctx: Context, cfg: Config, data: dict) -> None:
    fig, axes = cm.figure(3, 1, width=4.4, height=3.6)
    x = np.arange(1, cfg.layers + 1)
    for i, (arch, r) in enumerate(data["rows"].items()):
        t = r["trained"]
        axes[0, 0].plot(x, t["mse_median"], "o-", color=f"C{i}", label=arch)
        axes[0, 1].plot(x, t["kappa"], "o-", color=f"C{i}", label=arch)
        axes[0, 2].plot(x, t["distance"]["EAGLE"], "o-", color=f"C{i}", label=arch)
    for a, style in (("EAGLE", "k--"), ("GD", "k:")):
        axes[0, 0].plot(x, data["algorithms"][a]["mse_median"], style, label=a)
    axes[0, 1].plot(x, data["algorithms"]["EAGLE"]["kappa"], "k--", label="EAGLE")
    axes[0, 0].axhline(data["zero_mse_median"], color="grey", lw=0.8, label="predict zero")
    axes[0, 0].set(yscale="log", xlabel="layer", ylabel="median test MSE of D",
                   title="error per layer", xticks=x)
    axes[0, 1].set(yscale="log", xlabel="layer", ylabel="median kappa(A_l), top s",
                   title="does a layer precondition A?", xticks=x)
    axes[0, 2].set(yscale="log", xlabel="layer", ylabel="||D_l - D_EAGLE,l|| / ||D*||",
                   title="distance from EAGLE", xticks=x)
    for ax in axes[0]:
        ax.legend(fontsize=7)
    ctx.save_figure(fig, "architectures")


def _captions() -> dict[str, str]:
    return {"architectures.png": "Per layer of each trained architecture on held-out prompts: "
            "left, the median MSE of D (dashed / dotted: EAGLE with the proof's steps and GD "
            "after as many steps; grey: predicting zero); middle, the median condition number "
            "of the token states' A block over its top s singular values (EAGLE dashed); "
            "right, the median distance of the layer's D from EAGLE's."}


def _section(cfg: Config, data: dict) -> str:
    lines = [f"{cfg.layers} layers per architecture, one seed, {cfg.steps} Adam steps at batch "
             f"{cfg.batch} (the transformer's recipe: 20,000 x 1,024); {cfg.test_size} "
             f"held-out prompts; predicting zero: median MSE {data['zero_mse_median']:.3g}.",
             "", "| architecture | median test MSE (untrained) | kappa(A_l) per layer | "
             "closest algorithm (distance) | distance to EAGLE / GD per layer | training s |",
             "|---|---|---|---|---|---|"]
    for arch, r in data["rows"].items():
        t, u = r["trained"], r["untrained"]
        lines.append(
            f"| {arch} | {t['mse_median'][-1]:.3g} ({u['mse_median'][-1]:.3g}) | "
            + ", ".join(f"{k:.3g}" for k in t["kappa"]) + f" | {t['closest']} "
            f"({t['closest_distance']:.3f}) | "
            + ", ".join(f"{e:.2f}/{g:.2f}" for e, g in zip(t["distance"]["EAGLE"],
                                                         t["distance"]["GD"], strict=True))
            + f" | {data['training_seconds'][arch]:.0f} |")
    a = data["algorithms"]
    lines += ["", "Algorithms on the same prompts, median MSE per step: "
              + "; ".join(f"{k} " + ", ".join(f"{v:.3g}" for v in a[k]["mse_median"])
                          for k in ALGORITHMS)
              + "; EAGLE's kappa(A_l): " + ", ".join(f"{v:.3g}" for v in a["EAGLE"]["kappa"])
              + "."]
    return "\n".join(lines)
