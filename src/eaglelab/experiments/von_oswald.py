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

Recurrent models (their Section 4, GD++): 2 layers sharing one set of weights
(`model.tied`), trained for N = 10, 25, 50, 100 context tokens.  The extracted gamma is the
least-squares fit of the first layer's x-update of every token to GD++'s input transform,
Delta x_i = -gamma x_i X^T X (X the N x d context; gamma un-normalised, the paper's
convention, `models.family`'s gamma_family / N; the report prints the tuned 2-step GD++'s
gamma beside the paper's), with R^2 the share of the x-update it explains.  Reference:
2 GD++ steps with (gamma, eta) tuned on the validation batch
(`solvers.icl_baselines.tune_gd_plus_plus`).  Rules (ours, fixed before the first full
run): "aligns with GD++" means R^2 >= ALIGN_R2 and the loss within GDPP_TOL of the tuned
GD++'s, every N and seed; the gamma claims need the median over seeds within GAMMA_TOL
relative of the paper's at every N, and falling with N - changed after the first full run
to the median over the ALIGNED seeds (a model whose fit explains < ALIGN_R2 of its x-update
has no GD++ gamma; the seeds left out are named in the claim).  Controls: the untrained
tied model and, at the boundary, 2 plain GD steps with the tuned step (gamma = 0: the GD++
family's nearest member without the input transform) must fail "aligns" - a control that
cannot fail (R^2 = 0 by construction), so since the audit of 2026-12-04 the boundary
controls are 2 GD++ steps at OFF_GAMMA x the tuned gamma (eta tuned), which the loss rule
must reject; plain GD stays a control of the bridge.  The bridge's "steps too small to
act" rule is exercised at its boundary by `acts_controls`.  Recipe (ours):
init std 0.02, batch 1,024, 5,000 steps; their init std 0.002 /
layers = 0.001 stayed at the saddle of the small initialisation for 6,000 steps at N = 25
in a trial before the first full run (MSE 0.69 against predicting zero's 0.81; 0.02
reached GD++'s loss in 3,000), so it is the paper-budget option (`PAPER_BUDGET`).

Bridge to EAGLE (`experiments._family.eagle_bridge`, a test of ours): eaglelab's
weight-structure test on every trained model - GD is EAGLE's C/D update without the
A-update, GD++ is a full EAGLE step (its input transform is EAGLE's A <- A - s_A A A^T A);
a reading needs positive steps that act at the prompts' scale, so an untrained model reads
"other".

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
PAPER_GAMMA = {10: 0.179, 25: 0.099, 50: 0.056, 100: 0.029}
ALIGN_R2 = 0.9
GDPP_TOL = 0.10
GAMMA_TOL = 0.30
OFF_GAMMA = (0.5, 1.5)      # boundary controls: GD++ at these multiples of the tuned gamma
LOSS_WINDOW = (0.16, 0.24)
WIDE_WINDOW = (0.75, 0.92)
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
    recurrent_tokens: tuple[int, ...] = (10, 25, 50, 100)   # () skips the recurrent models
    recurrent_layers: int = 2
    recurrent_seeds: int = 2
    recurrent_steps: int = 5000
    recurrent_batch: int = 1024
    recurrent_init_std: float = 0.02       # ours; theirs 0.002 / layers (see the docstring)


# the papers' budgets, for a machine with a GPU: eaglelab reproduce von_oswald --set KEY=VALUE
PAPER_BUDGET = {"batch": 2048, "steps": 30000, "recurrent_batch": 2048,
                "recurrent_steps": 30000, "recurrent_init_std": 0.001}

QUICK = dict(seeds=1, steps=3000, batch=512, test_size=4000, val_size=2000,
             recurrent_tokens=(10, 50), recurrent_seeds=1, recurrent_steps=2000,
             recurrent_batch=512)


def make_config(quick: bool = False, seeds: int | None = None, **overrides: Any) -> Config:
    return cm.make_config(Config, QUICK, quick, seeds, overrides)


def _train(cfg: Config, x_range: float, seed: int, folder: Path):
    over = {"task.family": "von-oswald", "task.tokens": str(cfg.tokens),
            "task.features": str(cfg.features), "task.x_range": str(x_range),
            "model.layers": "1", "model.init_std": str(cfg.init_std),
            "train.batch": str(cfg.batch), "train.lr": str(cfg.lr), "train.seed": str(seed),
            "train.eval_size": "512", "train.eval_every": "1000", "train.threads": "1"}
    return trained_icl_run(over, cfg.steps, folder)


def _train_recurrent(cfg: Config, N: int, seed: int, folder: Path):
    over = {"task.family": "von-oswald", "task.tokens": str(N),
            "task.features": str(cfg.features), "task.x_range": "0.5",
            "model.layers": str(cfg.recurrent_layers), "model.tied": "true",
            "model.init_std": str(cfg.recurrent_init_std),
            "train.batch": str(cfg.recurrent_batch), "train.lr": str(cfg.lr),
            "train.seed": str(seed), "train.eval_size": "512", "train.eval_every": "1000",
            "train.threads": "1"}
    return trained_icl_run(over, cfg.recurrent_steps, folder)


def gdpp_fit(model, prompts: np.ndarray) -> tuple[float, float]:
    """(gamma, R^2): the first layer's x-update of every token fitted to GD++'s
    -gamma x_i X^T X by least squares over all prompts and tokens (float64; gamma is the
    paper's un-normalised one).  A model that moves no x (plain GD) explains nothing of
    GD++'s x-update: (0, 0)."""
    Z0 = torch.as_tensor(prompts)
    with torch.no_grad():
        Z1 = model.double().layer_outputs(Z0)[1][0].numpy()
    X0 = np.asarray(prompts, dtype=np.float64)
    x = X0[:, :, :-1]
    dx = Z1[:, :, :-1] - x
    g = x @ (np.swapaxes(x[:, :-1], 1, 2) @ x[:, :-1])
    if not np.any(dx):
        return 0.0, 0.0
    gamma = -float(np.sum(dx * g) / np.sum(g * g))
    r2 = 1.0 - float(np.sum((dx + gamma * g) ** 2) / np.sum(dx * dx))
    return gamma, r2


def _measure_recurrent(model, test, val, cfg: Config, tuned) -> dict[str, Any]:
    from eaglelab.experiments._family import eagle_bridge, gram_scale
    from eaglelab.solvers import icl_baselines as R

    model = model.double()
    with torch.no_grad():
        pred = model(torch.as_tensor(test.prompt))[0, :, 0, 0].numpy()
    gamma, r2 = gdpp_fit(model, test.prompt)
    _, r2_val = gdpp_fit(model, val.prompt)      # the seed selection's R^2 (validation)
    L = cfg.recurrent_layers
    (g_star, e_star), eta_gd = tuned
    return {"loss": 0.5 * R.mse(pred, test.X), "gamma": gamma, "r2": r2, "r2_val": r2_val,
            "loss_gdpp": 0.5 * R.mse(R.gd_plus_plus_predict(test.X, g_star, e_star, L), test.X),
            "loss_gd": 0.5 * R.mse(R.gd_predict(test.X, eta_gd, L), test.X),
            "gamma_gdpp": g_star, "eta_gdpp": e_star,
            "loss_zero": 0.5 * float(np.mean(test.answer ** 2)),
            "bridge": eagle_bridge(model, gram_scale(test.X))}


def _recurrent(cfg: Config, ctx: Context) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    from eaglelab.models import LinearTransformer
    from eaglelab.models.family import family_model, gd_plus_plus, preconditioned_gd
    from eaglelab.solvers import icl_baselines as R
    from eaglelab.tasks.icl import ICLTaskConfig, icl_batch
    from eaglelab.train.runs import training_seconds

    rows: dict[str, list[dict]] = {}
    controls: dict[str, dict] = {}
    seeds = [cfg.base_seed + k for k in range(cfg.recurrent_seeds)]
    for N in ctx.track(cfg.recurrent_tokens, "recurrent models"):
        task = ICLTaskConfig(family="von-oswald", tokens=N, features=cfg.features,
                             x_range=0.5)
        test, val = icl_batch(task, cfg.test_size, 30_000 + N), icl_batch(task, cfg.val_size,
                                                                        40_000 + N)
        L = cfg.recurrent_layers
        tuned = (R.tune_gd_plus_plus(val.X, L)[0], R.tune_gd_step(val.X, steps=L)[0])
        for s in seeds:
            folder = ctx.out_dir / "runs" / f"recurrent-N{N}-seed{s}"
            run_ = _train_recurrent(cfg, N, s, folder)
            ctx.trained_runs[str(folder)] = training_seconds(folder)
            rows.setdefault(str(N), []).append(
                {"seed": s, **_measure_recurrent(run_.model, test, val, cfg, tuned)})
        blank = LinearTransformer(run_.model.config, [seeds[0]], dtype=torch.float64)
        controls[str(N)] = _measure_recurrent(blank, test, val, cfg, tuned)
        gd = family_model(*preconditioned_gd([tuned[1] * np.eye(cfg.features)] * L), N)
        controls[f"{N}-gd"] = _measure_recurrent(gd, test, val, cfg, tuned)
        (g_star, e_star), _ = tuned
        for f in OFF_GAMMA:
            Ps, Qs = gd_plus_plus(f * g_star * N, e_star, cfg.features)
            off = family_model(Ps * L, Qs * L, N)
            controls[f"{N}-gdpp{f:g}"] = _measure_recurrent(off, test, val, cfg, tuned)
    return rows, controls


def acts_controls(N: int, features: int, prompts: np.ndarray) -> dict[str, dict]:
    """The bridge's "steps too small to act" rule at its boundary: one GD++ layer whose
    steps give step x the prompts' `gram_scale` = ACTS / 2 (must not read EAGLE) and
    2 ACTS (must), both steps alike.  Keys: the products' step x scale."""
    from eaglelab.experiments._family import ACTS, eagle_bridge, gram_scale
    from eaglelab.models.family import family_model, gd_plus_plus

    scale = gram_scale(prompts)
    unit = eagle_bridge(family_model(*gd_plus_plus(1.0, 1.0, features), N), scale)
    s_a, s_c = unit["layers"][0]["s_A"], unit["layers"][0]["s_C"]
    out = {}
    for target in (ACTS / 2, 2 * ACTS):
        model = family_model(*gd_plus_plus(target / (s_a * scale), target / (s_c * scale),
                                           features), N)
        out[f"{target:g}"] = {"bridge": eagle_bridge(model, scale), "target": target}
    return out


def _aligns(m: dict) -> bool:
    return m["r2"] >= ALIGN_R2 and abs(m["loss"] - m["loss_gdpp"]) <= GDPP_TOL * m["loss_gdpp"]


def _recurrent_claims(rows: dict[str, list[dict]], controls: dict[str, dict]) -> list:
    claims = []
    every = [(N, m) for N, ms in rows.items() for m in ms]
    claims.append(cm.claim(
        f"Recurrent 2-layer models align with GD++: the GD++ fit explains >= {ALIGN_R2:.0%} "
        f"of the x-update and the loss is within {GDPP_TOL:.0%} of tuned 2-step GD++'s, every "
        "N and seed (rule ours)", "trained recurrent models align with GD++ (Section 4)",
        "; ".join(f"N={N} seed {m['seed']}: R^2 {m['r2']:.3f}, loss {m['loss']:.4f} vs GD++ "
                  f"{m['loss_gdpp']:.4f}" for N, m in every),
        all(_aligns(m) for _, m in every), "every model is GD++",
        "not every model: " + ", ".join(f"N={N} seed {m['seed']}" for N, m in every
                                        if not _aligns(m))))
    Ns = sorted((int(N) for N in rows), key=int)
    aligned = {N: [m for m in rows[str(N)] if m["r2_val"] >= ALIGN_R2] for N in Ns}
    left_out = ", ".join(f"N={N} seed {m['seed']} (validation R^2 {m['r2_val']:.2f}, gamma "
                         f"{m['gamma']:.3f})" for N in Ns for m in rows[str(N)]
                         if m["r2_val"] < ALIGN_R2)
    med = {N: cm.median([m["gamma"] for m in aligned[N]]) if aligned[N] else float("nan")
           for N in Ns}
    med_all = {N: cm.median([m["gamma"] for m in rows[str(N)]]) for N in Ns}
    counted = ", ".join(f"N={N}: {med[N]:.3f} ({len(aligned[N])} of {len(rows[str(N)])} "
                        "seeds)" for N in Ns)
    note = ("; left out: " + left_out) if left_out else "; no seed left out"
    paper = [N for N in Ns if N in PAPER_GAMMA]
    every_n = all(aligned[N] for N in Ns)
    falls = every_n and all(med[b] < med[a] for a, b in zip(Ns, Ns[1:], strict=False))
    falls_all = all(med_all[b] < med_all[a] for a, b in zip(Ns, Ns[1:], strict=False))
    rule = (f"median over the seeds whose GD++ fit explains >= {ALIGN_R2:.0%} of the "
            "x-update on validation prompts (else gamma is not GD++'s); changed from the "
            "median over all seeds after the first full run" + cm.AFTER_DATA)
    claims.append(cm.claim(
        f"The extracted gamma falls with N ({rule})",
        "0.179, 0.099, 0.056, 0.029 for N = 10, 25, 50, 100", counted + note
        + "; the rule fixed before the run (all seeds): " + ", ".join(
            f"{med_all[N]:.3f}" for N in Ns) + (" falls" if falls_all else " does not fall"),
        len(Ns) > 1 and falls and med[Ns[-1]] > 0, "falls at every step",
        "no aligned seed at some N" if not every_n else "does not fall at every step"))
    if paper:
        def within(g: dict) -> list[int]:
            return [N for N in paper if abs(g[N] - PAPER_GAMMA[N]) > GAMMA_TOL * PAPER_GAMMA[N]]

        old = within(med_all)
        claims.append(cm.claim(
            f"The extracted gamma matches the paper's within {GAMMA_TOL:.0%} at every N "
            f"({rule}; tolerance ours)",
            ", ".join(f"{PAPER_GAMMA[N]:.3f}" for N in paper),
            ", ".join(f"{med[N]:.3f}" for N in paper)
            + " (tuned 2-step GD++: " + ", ".join(
                f"{rows[str(N)][0]['gamma_gdpp']:.3f}" for N in paper) + ")" + note
            + "; the rule fixed before the run (all seeds): " + ", ".join(
                f"{med_all[N]:.3f} ({med_all[N] / PAPER_GAMMA[N] - 1:+.0%})" for N in paper)
            + (", also within" if not old else ", outside at N = "
               + ", ".join(map(str, old))),
            every_n and not within(med),
            "every N within the tolerance", "no aligned seed at some N" if not every_n
            else "outside the tolerance at some N"))
    claims += _recurrent_controls(controls)
    labels = {"": "untrained", "-gd": "GD"}      # GD++ at an off gamma is still GD++
    ctl = [(f"N={N.split('-')[0]} " + labels[N[len(N.split('-')[0]):]], c)
           for N, c in controls.items() if N[len(N.split('-')[0]):] in labels]
    tied = [(f"N={N} seed {m['seed']}", _one_reading(m)) for N, m in every]
    claims.append(_bridge_claim(
        "The recurrent models read as EAGLE steps (GD++'s input transform is EAGLE's "
        "A-update), every N and seed, one reading per model (the 2 layers are tied)",
        "EAGLE", tied, [(k, _one_reading(c)) for k, c in ctl]))
    return claims


def _one_reading(m: dict) -> dict:
    """m with its bridge cut to the first layer: a tied model's layers share weights, so
    they are one reading (counted once)."""
    b = m["bridge"]
    return {**m, "bridge": {**b, "layers": b["layers"][:1], "readings": b["readings"][:1]}}


def _recurrent_controls(controls: dict[str, dict]) -> list:
    claims = []
    kinds = [("", "the untrained recurrent models", "untrained weights")]
    kinds += [(f"-gdpp{f:g}", f"2 GD++ steps at {f:g}x the tuned gamma (eta at the tuned "
               "GD++'s value; a control)", f"GD++ at {f:g}x gamma") for f in OFF_GAMMA]
    for kind, what, label in kinds:
        ctl = {N.split("-")[0]: c for N, c in controls.items()
               if N[len(N.split("-")[0]):] == kind}
        if not ctl:
            continue
        bad = [N for N, c in ctl.items() if _aligns(c)]
        claims.append(cm.claim(
            f"Negative control: {what} do not align with GD++", "(a control of ours)",
            "; ".join(f"N={N}: R^2 {c['r2']:.2f}, loss {c['loss']:.4g} vs GD++ "
                      f"{c['loss_gdpp']:.4g}" for N, c in ctl.items()),
            not bad, f"the rule rejects {label}",
            f"the rule accepts {label} at N = " + ", ".join(bad)))
    return claims


def _acts_claim(acts: dict[str, dict]):
    """The bridge's "steps too small to act" rule at its boundary (a control of ours)."""
    from eaglelab.experiments._family import ACTS

    below = [k for k, v in acts.items() if v["target"] < ACTS]
    above = [k for k, v in acts.items() if v["target"] >= ACTS]
    ok = (all(acts[k]["bridge"]["readings"] == ["other"] for k in below)
          and all(acts[k]["bridge"]["readings"] == ["EAGLE"] for k in above))
    return cm.claim(
        f"Boundary control of the bridge: a GD++ layer whose steps are {ACTS / 2:g} at the "
        f"prompts' scale does not read EAGLE (too small to act), one at {2 * ACTS:g} does",
        "(a control of ours)", "; ".join(
            f"step x scale {k}: " + "/".join(v["bridge"]["readings"])
            + (f" ({v['bridge']['layers'][0]['why']})" if v["bridge"]["layers"][0]["why"]
               else "") for k, v in acts.items()),
        ok, "the size rule sits where it is stated", "the size rule is not where it is stated")


def _bridge_claim(text: str, want: str, models: list, controls: list):
    """Every model reads `want` at every layer and no control reads `want` anywhere (a
    test of ours: the bridge from the family to EAGLE, `experiments._family.eagle_bridge`)."""
    def reads(m):
        return "/".join(m["bridge"]["readings"])

    good = [k for k, m in models if set(m["bridge"]["readings"]) == {want}]
    ok = bool(models) and len(good) == len(models)
    leak = [k for k, c in controls if want in c["bridge"]["readings"]]
    why = sorted({e["why"] for k, m in models if k not in good for e in m["bridge"]["layers"]
                  if e["why"]})
    return cm.claim(
        text + f"; controls ({', '.join(k for k, _ in controls)}) must not read {want}",
        "(a test of ours)", ("; ".join(f"{k}: {reads(m)}" for k, m in models) or "no model")
        + " | controls: " + "; ".join(f"{k}: {reads(c)}" for k, c in controls),
        ok and not leak, f"every model reads {want}, no control does",
        ("a control reads " + want + ": " + ", ".join(leak)) if leak
        else f"{len(good)} of {len(models)} models read {want}; the rest read other ("
        + ", ".join(why) + ")")


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
    from eaglelab.experiments._family import eagle_bridge, gram_scale

    half = lambda p: 0.5 * R.mse(p, test.X)  # noqa: E731
    return {"bridge": eagle_bridge(model, gram_scale(test.X)), "loss": half(pred),
            "loss_gd": half(pred_gd),
            "loss_mid": half(pred_mid),
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
    recurrent, rec_controls = _recurrent(cfg, ctx) if cfg.recurrent_tokens else ({}, {})
    N0 = cfg.recurrent_tokens[0] if cfg.recurrent_tokens else cfg.tokens
    acts = acts_controls(N0, cfg.features, icl_batch(ICLTaskConfig(
        family="von-oswald", tokens=N0, features=cfg.features, x_range=0.5),
        cfg.val_size, 50_000 + N0).X)
    from eaglelab.experiments._family import budget_line

    cost = budget_line(sum(ctx.trained_runs.values()),
                       {"steps": cfg.steps, "batch": cfg.batch, "seeds": cfg.seeds},
                       {"steps": PAPER_BUDGET["steps"], "batch": PAPER_BUDGET["batch"],
                        "seeds": cfg.seeds})
    data = {"rows": rows, "controls": controls, "paper_loss": PAPER_LOSS, "cost": cost,
            "recurrent": recurrent, "recurrent_controls": rec_controls,
            "paper_gamma": {str(k): v for k, v in PAPER_GAMMA.items()}, "acts_controls": acts,
            "config": cfg.__dict__}
    _plot(ctx, rows, recurrent)
    claims = _claims(rows, controls) + (_recurrent_claims(recurrent, rec_controls)
                                        if recurrent else []) + [_acts_claim(acts)]
    return ExperimentResult(name="von_oswald", data=data, claims=claims,
                            section=_section(cfg, rows, controls, recurrent, rec_controls)
                            + "\n\n" + cost,
                            captions=_captions())


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
        inside = [m for m in main if LOSS_WINDOW[0] <= m["loss"] <= LOSS_WINDOW[1]]
        claims.append(cm.claim(
            "The trained layer's loss (1/2 squared error) is about 0.2 for x ~ U(-0.5, 0.5) "
            f"(window {LOSS_WINDOW[0]:g}-{LOSS_WINDOW[1]:g}, ours), every seed; the budget "
            "was raised from 5,000 to 10,000 steps after a seed stayed at the saddle"
            + (" (it still does)" if any(m["loss"] > 0.9 * m["loss_zero"] for m in main)
               else "") + cm.AFTER_DATA, "about 0.2 (Fig 2)",
            ", ".join(f"seed {m['seed']}: {m['loss']:.3f}" for m in main),
            len(inside) == len(main), "inside the window",
            f"{len(inside)} of {len(main)} seeds inside the window"))
        claims.append(cm.claim(
            "The weight interpolation (midpoint of the trained and the GD products) has the "
            f"same loss: within {MATCH_TOL:.0%} of the trained layer's, every seed",
            "same loss at (theta + theta_GD) / 2",
            "; ".join(f"{m['loss_mid']:.3f} vs {m['loss']:.3f}" for m in main),
            all(abs(m["loss_mid"] - m["loss"]) <= MATCH_TOL * m["loss"] for m in main),
            "the midpoint loses nothing", "the midpoint is worse at seed " + ", ".join(
                str(m["seed"]) for m in main
                if abs(m["loss_mid"] - m["loss"]) > MATCH_TOL * m["loss"])
            + "; within the tolerance at the others"))
        if "0.5" in controls:
            c = controls["0.5"]
            claims.append(cm.claim(
                "Negative control: the untrained layer does not match one GD step",
                "(a control of ours)", f"loss {c['loss']:.3f} vs GD {c['loss_gd']:.3f}, "
                f"cosine {c['cosine']:.3f}", not _matches(c),
                "the rule rejects a layer that learned nothing",
                "the rule accepts an untrained layer"))
        claims.append(_bridge_claim(
            "x ~ U(-0.5, 0.5): the trained layers read as EAGLE's C/D update without the "
            "A-update (GD), every seed", "GD",
            [(f"seed {m['seed']}", m) for m in main],
            [(f"untrained U(-{k}, {k})", c) for k, c in controls.items()]))
    wide = rows.get("1", [])
    if wide:
        med = cm.median([m["loss_gd"] for m in wide])
        claims.append(cm.claim(
            "With the text's x ~ U(-1, 1) one GD step's loss is the brief's ~0.83 (window "
            f"{WIDE_WINDOW[0]:g}-{WIDE_WINDOW[1]:g}, ours), not the published 0.2: the published "
            "loss is the code's U(-0.5, 0.5)", "text: x ~ U(-1, 1); reported loss ~0.2; "
            "U(-1, 1) gives ~0.83 (brief)", f"one GD step: {med:.3f}",
            WIDE_WINDOW[0] <= med <= WIDE_WINDOW[1],
            "U(-1, 1) gives ~0.83: the published number is U(-0.5, 0.5)'s",
            "U(-1, 1) gives neither 0.2 nor ~0.83"))
    return claims


def _plot(ctx: Context, rows: dict[str, list[dict]], recurrent: dict[str, list[dict]]
          ) -> None:
    fig, axes = cm.figure(2 if recurrent else 1, 1, width=5.2, height=3.8)
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
    if recurrent:
        ax = axes[0, 1]
        Ns = sorted(int(N) for N in recurrent)
        for fit, style, label in ((True, "o", "trained recurrent model"),
                                  (False, "o", f"trained, GD++ fit R^2 < {ALIGN_R2:g}")):
            pts = [(N, m["gamma"]) for N in Ns for m in recurrent[str(N)]
                   if (m["r2_val"] >= ALIGN_R2) == fit]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, color="tab:blue", alpha=0.7,
                        mfc="tab:blue" if fit else "none", label=label)
        ax.plot(Ns, [recurrent[str(N)][0]["gamma_gdpp"] for N in Ns], "s--", color="tab:green",
                label="tuned 2-step GD++")
        pN = sorted(PAPER_GAMMA)
        ax.plot(pN, [PAPER_GAMMA[N] for N in pN], "kx", ms=8, label="paper")
        ax.set(xscale="log", yscale="log", xlabel="context tokens N",
               ylabel="GD++ gamma", title="GD++ gamma against N")
        ax.legend(fontsize=8)
    ctx.save_figure(fig, "von_oswald")


def _captions() -> dict[str, str]:
    return {"von_oswald.png": "Left: median test loss over seeds of the trained single layer, "
            "one GD step with the tuned step and the product-space midpoint (balanced gauge), "
            "for both input ranges; dotted: the paper's ~0.2. Right (when run): the GD++ gamma "
            "fitted to the recurrent 2-layer models' x-update (every seed; hollow: a fit that explains "
            f"< {ALIGN_R2:.0%} of the update, left out of the median), the tuned 2-step "
            "GD++'s gamma and the paper's, against N (log-log)."}


def _section(cfg: Config, rows: dict[str, list[dict]], controls: dict[str, dict],
             recurrent: dict[str, list[dict]], rec_controls: dict[str, dict]) -> str:
    from eaglelab.experiments._family import BRIDGE_HEADER, BRIDGE_RULE, bridge_text

    lines = _single_section(cfg, rows, controls)
    if recurrent:
        lines += ["", f"Recurrent models: {cfg.recurrent_layers} tied layers, "
                  f"{cfg.recurrent_seeds} seed(s), {cfg.recurrent_steps} steps at batch "
                  f"{cfg.recurrent_batch}, init std {cfg.recurrent_init_std:g}, x ~ U(-0.5, 0.5).",
                  "", "| N | seed | gamma (fit) | R^2 | loss | loss / GD++'s | 2-step GD++ "
                  "(gamma, eta) | 2 GD steps | paper gamma |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for N in sorted(recurrent, key=int):
            for m in recurrent[N]:
                lines.append(f"| {N} | {m['seed']} | {m['gamma']:.4f} | {m['r2']:.3f} | "
                             f"{m['loss']:.4g} | {m['loss'] / m['loss_gdpp']:.3f} | "
                             f"{m['loss_gdpp']:.4g} ({m['gamma_gdpp']:.4f}, "
                             f"{m['eta_gdpp']:.2f}) | {m['loss_gd']:.4g} | "
                             f"{PAPER_GAMMA.get(int(N), float('nan')):.3f} |")
        for N, c in rec_controls.items():
            base, kind = N.split("-")[0], N[len(N.split("-")[0]):]
            who = {"": "untrained", "-gd": "2 GD steps (control)"}.get(
                kind, f"GD++ at {kind.removeprefix('-gdpp')}x gamma (control)")
            lines.append(f"| {base} | {who} | {c['gamma']:.2e} | "
                         f"{c['r2']:.3f} | {c['loss']:.4g} | {c['loss'] / c['loss_gdpp']:.3f} "
                         "| | | |")
    lines += ["", "Bridge to EAGLE (eaglelab's weight-structure test, "
              f"`extract.properties.eagle_structure`; {BRIDGE_RULE}):", "",
              *BRIDGE_HEADER]
    for k in sorted(rows, key=float):
        for m in rows[k]:
            lines.append(bridge_text(f"one layer, U(-{k}, {k}), seed {m['seed']}", m["bridge"]))
    for N in sorted(recurrent, key=int):
        for m in recurrent[N]:
            lines.append(bridge_text(f"recurrent, N = {N}, seed {m['seed']}", m["bridge"]))
    return "\n".join(lines)


def _single_section(cfg: Config, rows: dict[str, list[dict]], controls: dict[str, dict]
                    ) -> list[str]:
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
    return lines
