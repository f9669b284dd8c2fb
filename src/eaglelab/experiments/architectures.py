"""Which algorithm does each architecture learn on masked-block completion? (issue "Related
systems II"; related brief sections 4-5; no paper has this table.)

Task: the paper's training distribution (brief section 5: d = n = 18, d' = n' = 2, rank
s = 10, alpha = 0.7), in the sequence view (`tasks.sequence`: the d complete rows, then the
d' query rows with D zeroed and a query flag; nothing of D reaches a prediction, tested).
Models (`models.sequence`): `layers` residual layers of causal linear attention, causal
softmax attention (a comparison: not linear in the prompt's products), Delta Net, Delta RNN
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

Also, the fair comparison (added 2026-12-04 after the quick run, before the full run's
results were read): EAGLE and GD with per-layer steps fitted to each model
(`fit_steps`, L-BFGS-B within EAGLE's signs on validation prompts; the distances measured
on the test prompts), so that "EAGLE" is not one step schedule; and EAGLE with the steps fitted to the
causal linear model (LINEAR_EAGLE: the algorithm extracted from the linear model), against
which every architecture is measured too.  GD with fitted per-layer steps is also the
scalar-preconditioned GD: the distribution is rotation invariant (Haar factors), so the
best fixed preconditioner of one step (a convex problem) is a multiple of I; a matrix
preconditioner is not fitted separately.

Rules (ours, fixed before the first run; no paper number exists): an architecture
"learned" when its median test MSE is at most LEARNED x its untrained self's; causal linear
attention "learns EAGLE's rule" when its last layer is closer to EAGLE than to GD and within
CLOSE of EAGLE with the proof's steps.  The added claim with fitted steps (rule changed
after the full run, and marked so: its first form - against ||D*||, no margin - let the
untrained control pass): fitted EAGLE leaves at most CLOSE of the model's own D unexplained
at every layer and, on the mean over layers, at most 1 - A_GAIN of fitted GD's share (GD is
EAGLE with rel_A = 0, a nested family, so the A-update has to earn a margin).  Negative
control: the untrained linear model must fail both rules; boundary control: the exact
answer D* at every layer (accurate, not EAGLE's layers) must fail them; positive control:
EAGLE itself (the proof's steps) must pass the fitted one.
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
LINEAR_EAGLE = "EAGLE (linear's steps)"   # EAGLE with the steps fitted to the linear model
STEP_A, STEP_C = (0.0, 1.0), (0.0, 4.0)    # bounds of the fitted steps (x 1 / ||A_l||_2^2)
A_GAIN = 0.25   # the A-update matters: fitted EAGLE leaves <= (1 - A_GAIN) of fitted GD's gap


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
    val_size: int = 512       # prompts the fitted algorithms' steps are chosen on
    val_seed: int = 4244


# the transformer's recipe (brief section 5), for a GPU: --set steps=20000 --set batch=1024
PAPER_BUDGET = {"steps": 20000, "batch": 1024}

QUICK = dict(steps=150, batch=128, test_size=512, val_size=128)


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


def _model_layers(model, Z0: torch.Tensor) -> list[torch.Tensor]:
    """The model's token states per layer in the block layout (float64), input first."""
    with torch.no_grad():
        return [x[..., :-1] for x in model.double().token_states(Z0)]


def _eagle_d(Z0: torch.Tensor, d: int, n: int, rel_A, rel_C) -> list[torch.Tensor]:
    """D after 0..L dense EAGLE steps with per-layer steps rel_A_l, rel_C_l x 1 / ||A_l||_2^2
    (rel_A = 0: GD on min ||W A - B||_F with D_l = W_l C); differentiable in the steps
    (tensors) - `extract.algorithm.eagle_layers`' update, written out for autograd."""
    Z = Z0.to(torch.float64)
    A, B, C = Z[:, :d, :n], Z[:, d:, :n], Z[:, :d, n:]
    D = torch.zeros(Z.shape[0], B.shape[1], C.shape[2], dtype=torch.float64)
    out = [D]
    for a, c in zip(rel_A, rel_C, strict=True):
        rho = (1.0 / torch.linalg.matrix_norm(A, ord=2) ** 2)[:, None, None]
        G = A.transpose(-1, -2) @ A
        AtC = A.transpose(-1, -2) @ C
        D = D + c * rho * (B @ AtC)
        C = C - c * rho * (A @ AtC)
        A, B = A - a * rho * (A @ G), B - a * rho * (B @ G)
        out.append(D)
    return out


def fit_steps(target: list[torch.Tensor], Z0: torch.Tensor, D: torch.Tensor, d: int, n: int,
              a_update: bool = True) -> tuple[list[float], list[float]]:
    """The per-layer steps (rel_A_l, rel_C_l) of EAGLE (a_update) or GD (rel_A = 0) whose
    D after every layer is closest to the model's D after layers 1..L (`target`) on the
    prompts Z0 (choose them on validation prompts): L-BFGS-B (scipy, gradients by
    autograd) on the mean over prompts and layers of ||D_model,l - D_alg,l||_F^2 /
    ||D*||_F^2, from the proof's steps (1/3, 1), within STEP_A and STEP_C (EAGLE's signs:
    a negative step is not EAGLE's update and let unconstrained fits run to rel_A ~ -6e4).
    The last layer's A-update reaches no D, so its rel_A is not identifiable and returned
    as 0."""
    from scipy.optimize import minimize

    L = len(target)
    target = [t.to(torch.float64) for t in target]
    ref = torch.linalg.matrix_norm(D.to(torch.float64)).square()
    k = L - 1 if a_update else 0      # the last A-update reaches no D: not fitted (0)

    def unpack(x: torch.Tensor):
        return torch.cat([x[:k], torch.zeros(L - k, dtype=x.dtype)]), x[k:]

    def loss(x):
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        Ds = _eagle_d(Z0, d, n, *unpack(t))[1:]
        err = sum(((a - b).square().sum((-2, -1)) / ref).mean()
                  for a, b in zip(Ds, target, strict=True))
        if not torch.isfinite(err):
            return 1e30, np.zeros_like(x)
        (g,) = torch.autograd.grad(err, t)
        return float(err.detach()), g.numpy()

    x0 = np.r_[[1 / 3] * k, [1.0] * L]
    res = minimize(loss, x0, jac=True, method="L-BFGS-B", bounds=[STEP_A] * k + [STEP_C] * L,
                   options={"maxiter": 500, "ftol": 1e-15, "gtol": 1e-10})
    rel_A, rel_C = unpack(torch.as_tensor(res.x))
    return [float(v) for v in rel_A], [float(v) for v in rel_C]


def _d_of(states: list[torch.Tensor], d: int, n: int) -> list[torch.Tensor]:
    """D after every layer (input first) from the token states in the block layout."""
    return [-Z[:, d:, n:] for Z in states]


def _measure(model, Z0: torch.Tensor, D: torch.Tensor, s: int, algs: dict,
             val: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
    """`measure_layers` of a model's D per layer, with kappa(A_l) of its token states."""
    from eaglelab.extract.fidelity import layer_quantities

    d, n = model.d, model.n
    states = _model_layers(model, Z0)
    out = measure_layers(_d_of(states, d, n), _d_of(_model_layers(model, val[0]), d, n),
                         Z0, D, algs, val, d, n)
    out["kappa"] = layer_quantities(states, D, d, n, rank=s)["kappa"][1:]
    return out


def measure_layers(Dm: list[torch.Tensor], Dm_val: list[torch.Tensor], Z0: torch.Tensor,
                   D: torch.Tensor, algs: dict, val: tuple[torch.Tensor, torch.Tensor], d: int,
                   n: int) -> dict[str, Any]:
    """Per layer l = 1..L of D's after every layer (input first) on the test prompts Z0 (Dm)
    and the validation prompts (Dm_val): median MSE; the median distance
    ||D_l - D_alg,l||_F / ||D*||_F from each algorithm in `algs` and from EAGLE and GD with
    steps fitted to these D's on the validation prompts (selection there, measurement
    here); and, for the fitted ones, the share of the D's left unexplained,
    ||D_l - D_alg,l||_F / ||D_l||_F (median).  The closest algorithm is the one at the
    smallest last-layer distance; ties (fitted EAGLE with rel_A = 0 is fitted GD) are named
    together."""
    fitted = {}
    for name, a_update in (("EAGLE fitted", True), ("GD fitted", False)):
        rel_A, rel_C = fit_steps(Dm_val[1:], val[0], val[1], d, n, a_update)
        fitted[name] = {"rel_A": rel_A, "rel_C": rel_C}
        algs = {**algs, name: _eagle_d(Z0, d, n, rel_A, rel_C)}
    unexplained = {a: [] for a in fitted}
    ref = torch.linalg.matrix_norm(D)
    mse, dist = [], {a: [] for a in algs}
    for l, Dl in enumerate(Dm[1:], start=1):
        mse.append(float((Dl - D).square().flatten(1).mean(dim=1).median()))
        own = torch.linalg.matrix_norm(Dl).clamp_min(torch.finfo(Dl.dtype).tiny)
        for a, Ds in algs.items():
            gap = torch.linalg.matrix_norm(Dl - Ds[l])
            dist[a].append(float((gap / ref).median()))
            if a in fitted:
                unexplained[a].append(float((gap / own).median()))
    last = {a: v[-1] for a, v in dist.items()}
    best = min(last.values())
    closest = " = ".join(a for a, v in last.items() if v <= best * (1 + 1e-6) + 1e-12)
    return {"mse_median": mse, "distance": dist, "closest": closest,
            "closest_distance": best, "fitted_steps": fitted, "unexplained": unexplained}


def run(cfg: Config, ctx: Context) -> ExperimentResult:
    from eaglelab.extract.algorithm import eagle_layers
    from eaglelab.extract.fidelity import layer_quantities
    from eaglelab.extract.pipeline import held_out
    from eaglelab.models.sequence import SequenceModel
    from eaglelab.tasks.training import TrainingTaskConfig
    from eaglelab.train.sequence import SequenceRunConfig, train_sequence

    task = TrainingTaskConfig()
    Z0, D = held_out(task, cfg.test_size, cfg.test_seed)
    val = held_out(task, cfg.val_size, cfg.val_seed)
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
    models = {}
    for arch in ctx.track(cfg.archs, "train"):
        rc = SequenceRunConfig(arch=arch, layers=L, steps=cfg.steps, batch=cfg.batch,
                               lr=cfg.lr, seed=cfg.base_seed, task=task)
        folder = ctx.out_dir / "runs" / f"{arch}-L{L}-seed{cfg.base_seed}"
        models[arch] = train_sequence(rc, folder, progress=ctx.progress)
        seconds[arch] = _training_seconds(folder)
    linear_steps = None
    if "linear" in models:          # EAGLE as the linear model learned it, for every model
        linear_steps = fit_steps(_d_of(_model_layers(models["linear"], val[0]), task.d,
                                       task.n)[1:], val[0], val[1], task.d, task.n)
        algs[LINEAR_EAGLE] = _eagle_d(Z0, task.d, task.n, *linear_steps)
        alg_rows[LINEAR_EAGLE] = {"mse_median": [
            float((algs[LINEAR_EAGLE][l] - D).square().flatten(1).mean(dim=1).median())
            for l in range(1, L + 1)]}
    for arch in ctx.track(cfg.archs, "measure"):
        blank = SequenceModel(arch, task.d, task.n, task.d_prime, task.n_prime, layers=L,
                              seed=cfg.base_seed)
        rows[arch] = {"trained": _measure(models[arch], Z0, D, task.s, algs, val),
                      "untrained": _measure(blank, Z0, D, task.s, algs, val)}
    # controls with known answers: the exact D* after every layer (accurate, not EAGLE's
    # layers) and EAGLE itself with the proof's steps as the "model"
    Dv = val[1]
    controls = {"exact answer": measure_layers([D.to(torch.float64)] * (L + 1),
                                               [Dv.to(torch.float64)] * (L + 1), Z0, D,
                                               {k: algs[k] for k in ALGORITHMS}, val,
                                               task.d, task.n)}
    proof = ([1 / 3] * L, [1.0] * L)
    controls["EAGLE"] = measure_layers(
        list(algs["EAGLE"]), _eagle_d(val[0], task.d, task.n, *proof), Z0, D,
        {k: algs[k] for k in ALGORITHMS}, val, task.d, task.n)
    data = {"rows": rows, "algorithms": alg_rows, "zero_mse_median": zero,
            "linear_steps": linear_steps, "controls": controls,
            "training_seconds": seconds, "config": cfg.__dict__}
    _plot(ctx, cfg, data)
    return ExperimentResult(name="architectures", data=data, claims=_claims(data),
                            section=_section(cfg, data), captions=_captions())


def _training_seconds(folder) -> float:
    import json

    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    evals = [x["seconds"] for x in lines if x["kind"] == "eval"]
    return float(evals[-1]) if evals else 0.0


def _budget_factor(data: dict) -> float:
    c = data["config"]
    return PAPER_BUDGET["steps"] * PAPER_BUDGET["batch"] / (c["steps"] * c["batch"])


def _eagle_rule(m: dict, fitted: bool = False) -> bool:
    dist = m["distance"]
    e, g = ("EAGLE fitted", "GD fitted") if fitted else ("EAGLE", "GD")
    return dist[e][-1] < dist[g][-1] and dist[e][-1] <= CLOSE


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
        f"above the bound at this budget ({_budget_factor(data):.0f}x less work than the "
        "transformer's recipe): "
        + ", ".join(a for a, v in learned.items() if not v)))
    if "linear" in rows:
        t, u = rows["linear"]["trained"], rows["linear"]["untrained"]
        claims.append(cm.claim(
            "Causal linear attention learns EAGLE's rule: its last layer's D is closer to "
            f"EAGLE's than to GD's and within {CLOSE:g} of EAGLE's (rule ours)",
            "(no paper number: the paper's model is non-causal)",
            f"distance to EAGLE {t['distance']['EAGLE'][-1]:.3f}, to GD "
            f"{t['distance']['GD'][-1]:.3f}", _eagle_rule(t), "closer to EAGLE's D than "
            "to GD's (both with the proof's steps; see the exact-answer control below)",
            f"closest to {t['closest']}" if t["closest"] != "EAGLE" else "not within the "
            "distance"))
        claims.append(cm.claim(
            "Negative control: the untrained linear model fails the EAGLE rule",
            "(a control of ours)", f"distance to EAGLE {u['distance']['EAGLE'][-1]:.3f}, to "
            f"GD {u['distance']['GD'][-1]:.3f}", not _eagle_rule(u),
            "the rule rejects an untrained model", "the rule accepts an untrained model"))
        controls = data.get("controls", {})
        if "exact answer" in controls:
            c = controls["exact answer"]
            claims.append(cm.claim(
                "Boundary control: the exact answer D* (not EAGLE's layers) fails the "
                "proof's-steps EAGLE rule", "(a control of ours)",
                f"distance to EAGLE {c['distance']['EAGLE'][-1]:.3f}, to GD "
                f"{c['distance']['GD'][-1]:.3f}", not _eagle_rule(c),
                "the rule tells EAGLE from accuracy", "the rule accepts the exact answer: "
                "scored against ||D*|| at the last layer it measures accuracy (a model "
                "better than 4 GD steps is nearer EAGLE's more accurate D), not the algorithm"
                " - the fitted-steps claims below score the layers"))
        if "EAGLE fitted" in t.get("unexplained", {}):
            claims += _fitted_claims(t, u, controls)
    return claims


def _fitted_rule(m: dict) -> bool:
    e, g = m["unexplained"]["EAGLE fitted"], m["unexplained"]["GD fitted"]
    return max(e) <= CLOSE and float(np.mean(e)) <= (1 - A_GAIN) * float(np.mean(g))


def _fitted_claims(t: dict, u: dict, controls: dict) -> list:
    """EAGLE with steps fitted to the model against GD with fitted steps (nested: GD is
    EAGLE with rel_A = 0, so the A-update must earn a margin), scored on the share of the
    model's own D the fit leaves unexplained at every layer (a model that is accurate but
    does not compute EAGLE's layers - the exact answer at every layer - must fail)."""
    f = t["fitted_steps"]["EAGLE fitted"]

    def cell(m):
        e, g = m["unexplained"]["EAGLE fitted"], m["unexplained"]["GD fitted"]
        return ("unexplained share per layer: fitted EAGLE " + ", ".join(f"{v:.3f}" for v in e)
                + " (mean " + f"{np.mean(e):.3f}); fitted GD " + ", ".join(f"{v:.3f}" for v in g)
                + f" (mean {np.mean(g):.3f})")

    rule = (f"fitted EAGLE leaves at most {CLOSE:g} of the model's D unexplained at every layer "
            "(median ||D_model,l - D_alg,l||_F / ||D_model,l||_F over test prompts, steps "
            f"fitted on validation prompts) and, on the mean over layers, at most "
            f"{1 - A_GAIN:g} x fitted GD's share (rule ours; changed after the full run: the "
            "first version scored the last layer against ||D*|| with no margin, and its "
            "untrained control passed - an untrained model's D ~ 0 is fitted by zero steps)"
            + cm.AFTER_DATA)
    claims = [cm.claim(
        "Causal linear attention is EAGLE with steps of its own, the A-update included: "
        + rule, "(no paper number: the paper's model is non-causal; the paper's own learned "
        "steps are eta ~ 1, gamma ~ 1.9 relative to the batch-max ||A_l||^2)",
        cell(t) + "; EAGLE's fitted steps rel_A " + ", ".join(
            f"{v:.3g}" for v in f["rel_A"][:-1]) + " (the last reaches no D), rel_C "
        + ", ".join(f"{v:.3g}" for v in f["rel_C"]) + " (the proof's: 1/3, 1)",
        _fitted_rule(t), "EAGLE with fitted steps explains the model, and its A-update counts",
        "not within the share at some layer" if max(t["unexplained"]["EAGLE fitted"]) > CLOSE
        else "the A-update earns less than the margin: GD with fitted steps is about as close"),
        cm.claim("Negative control: the untrained linear model fails the fitted-steps rule",
                 "(a control of ours)", cell(u), not _fitted_rule(u),
                 "the rule rejects an untrained model", "the rule accepts an untrained model")]
    if "exact answer" in controls:
        c = controls["exact answer"]
        claims.append(cm.claim(
            "Boundary control: the exact answer D* at every layer (accurate, but not EAGLE's "
            "layers) fails the fitted-steps rule", "(a control of ours)", cell(c),
            not _fitted_rule(c), "the rule asks for EAGLE's layers, not for accuracy",
            "the rule accepts an answer that is not EAGLE's layers"))
    if "EAGLE" in controls:
        c = controls["EAGLE"]
        claims.append(cm.claim(
            "Positive control: EAGLE itself (the proof's steps) as the model passes the "
            "fitted-steps rule", "(a control of ours)", cell(c),
            _fitted_rule(c), "the rule accepts EAGLE", "the rule rejects EAGLE itself"))
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
             "closest algorithm (distance) | distance to EAGLE / GD per layer (proof's steps) | "
             "distance to EAGLE / GD per layer (steps fitted on validation prompts) | "
             "distance to EAGLE with the linear model's steps | share of the model's D "
             "unexplained by fitted EAGLE / GD, per layer | training s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arch, r in data["rows"].items():
        t, u = r["trained"], r["untrained"]
        lines.append(
            f"| {arch} | {t['mse_median'][-1]:.3g} ({u['mse_median'][-1]:.3g}) | "
            + ", ".join(f"{k:.3g}" for k in t["kappa"]) + f" | {t['closest']} "
            f"({t['closest_distance']:.3f}) | "
            + ", ".join(f"{e:.2f}/{g:.2f}" for e, g in zip(t["distance"]["EAGLE"],
                                                         t["distance"]["GD"], strict=True))
            + " | " + ", ".join(f"{e:.2f}/{g:.2f}" for e, g in zip(
                t["distance"]["EAGLE fitted"], t["distance"]["GD fitted"], strict=True))
            + " | " + ", ".join(f"{e:.2f}" for e in t["distance"].get(LINEAR_EAGLE, []))
            + " | " + ", ".join(f"{e:.2f}/{g:.2f}" for e, g in zip(
                t["unexplained"]["EAGLE fitted"], t["unexplained"]["GD fitted"], strict=True))
            + f" | {data['training_seconds'][arch]:.0f} |")
    lines += ["", "Fitted steps (x 1 / ||A_l||_2^2, per layer; the proof's EAGLE: rel_A 1/3, "
              "rel_C 1; GD: rel_A 0; the last layer's rel_A reaches no D and is left at 0):", ""]
    for arch, r in data["rows"].items():
        for name, f in r["trained"]["fitted_steps"].items():
            lines.append(f"- {arch}, {name}: rel_A " + ", ".join(f"{v:.3g}" for v in f["rel_A"])
                         + "; rel_C " + ", ".join(f"{v:.3g}" for v in f["rel_C"]))
    a = data["algorithms"]
    lines += ["", "Algorithms on the same prompts, median MSE per step: "
              + "; ".join(f"{k} " + ", ".join(f"{v:.3g}" for v in a[k]["mse_median"])
                          for k in ALGORITHMS)
              + "; EAGLE's kappa(A_l): " + ", ".join(f"{v:.3g}" for v in a["EAGLE"]["kappa"])
              + ("; " + LINEAR_EAGLE + " " + ", ".join(
                  f"{v:.3g}" for v in a[LINEAR_EAGLE]["mse_median"]) if LINEAR_EAGLE in a
                 else "")
              + "."]
    return "\n".join(lines)
