"""Noisy in-context regression (Vladymyrov, von Oswald, Sandler, Ge, NeurIPS 2024, arXiv
2402.14180): deeper linear transformers adapt to each prompt's noise level, GD++ does not.

Task (related brief section 3; `tasks.icl`): d = 10, N = 20, x, w ~ N(0, I), y = <w, x> +
sigma_tau eps with one noise level per prompt, sigma_tau ~ U(0, sigma_max) (sigma_max = 5
for Table 1) or categorical ({1, 3}).  Models (`model.support`, one head per layer): FULL
("full", every weight free), DIAG ("diag": W_QK = diag(q_x I, q_y), W_VP = diag(p_x I,
p_y), four scalars per head) and GD++ ("gdpp": DIAG with q_y = 0), 1..7 layers.  Metric:
the adjusted loss, the loss (1/2 squared error against the observed noisy y_q) minus that
of ridge regression with the prompt's true noise variance (`solvers.icl_baselines`).
Baselines on the same test prompts: ConstRR (one ridge strength, tuned on a validation
batch), AdaRR (lam = sigma_hat^2 from the OLS residuals / (N - d)), TunedRR (lam =
min(m sigma_hat^2, cap), (m, cap) tuned on the validation batch) and OLS.

Our recipe (a reduced CPU budget, not theirs): Adam lr 1e-3, batch 2,048 (theirs), a fresh
batch every step, STEPS steps, init std 0.02, clip 0.1, one seed per model (theirs: lr
1e-4, 200k steps, best of 5 seeds).  The adjusted loss of the 100,000-prompt test set carries
a sampling error (printed: the standard error of the paired per-prompt difference).

Rules, fixed before the first full run: a model's adjusted loss "matches" the paper's
number when it lies within a factor MODEL_FACTOR of it (ours: a reduced budget cannot be
held to more); a baseline's (a closed-form algorithm, no training) within BASELINE_TOL
relative.  "GD++ behaves like ConstRR" means GD++'s adjusted loss at every depth >= 3 lies
within CONST_TOL relative of ConstRR's.  "The models beat AdaRR from 5 layers" compares the
FULL and DIAG models at 5 and 7 layers with AdaRR on the same prompts.  Negative control:
the untrained FULL model of the deepest depth must fail the factor rule.  Boundary controls
(added after the first full run): the trained GD++ model and AdaRR, scored against FULL's
Table 1 number at the deepest depth, must fail it too - GD++ does, AdaRR may not (the
factor window is wide; the report says so, and "beats AdaRR" is the claim that tests
adaptation beyond AdaRR).  Beside every factor verdict the distance from the paper's number
is printed in standard errors of our estimate (the paper's own error is not published;
ours covers the test prompts' sampling only, not seeds or training, and the median
per-prompt adjusted loss is printed beside it because a few heavy-tailed prompts can carry
the mean).  Added after the first full run (so marked in the claims): the paper's orderings
- the deepest FULL and DIAG within BASELINE_TOL of TunedRR at sigma_max = 5, and FULL below
TunedRR on categorical {1, 3} - the claims that test adaptation beyond the plug-in
estimates, which the factor window cannot.
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

TITLE = "Noisy regression (Vladymyrov et al.): deeper linear transformers adapt to the noise"
PAPER_REF = "arXiv 2402.14180, Table 1 and Fig 3"

PARAMETRISATIONS = {"full": "FULL", "diag": "DIAG", "gdpp": "GD++"}
# Table 1, sigma_max = 5: adjusted loss at 3 / 5 / 7 layers, and the baselines
PAPER = {"full": {3: 0.117, 5: 0.048, 7: 0.047}, "diag": {3: 0.118, 5: 0.051, 7: 0.047},
         "gdpp": {3: 0.344, 5: 0.344, 7: 0.344}}
PAPER_BASELINES = {"ConstRR": 0.365, "AdaRR": 0.068, "TunedRR": 0.049}
# categorical {1, 3}, 7 layers
PAPER_CATEGORICAL = {"full": 0.010, "diag": 0.018, "TunedRR": 0.021}
MODEL_FACTOR = 2.0
BASELINE_TOL = 0.25
CONST_TOL = 0.25


@dataclass
class Config:
    layers: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7)
    parametrisations: tuple[str, ...] = ("full", "diag", "gdpp")
    seeds: int = 1
    steps: int = 3000
    batch: int = 2048
    lr: float = 1e-3
    init_std: float = 0.02
    tokens: int = 20
    features: int = 10
    sigma_max: float = 5.0
    categorical: tuple[float, ...] = (1.0, 3.0)   # () skips the categorical runs
    categorical_layers: int = 7
    sweep_sigma_max: tuple[float, ...] = (1.0, 3.0, 7.0)   # plus sigma_max; () skips
    sweep_layers: int = 5
    test_size: int = 100000
    val_size: int = 20000
    base_seed: int = 0


# the paper's budget (for a GPU): eaglelab reproduce vladymyrov --set KEY=VALUE for each
PAPER_BUDGET = {"lr": 1e-4, "steps": 200000, "seeds": 5}

QUICK = dict(layers=(1, 3), seeds=1, steps=400, batch=512, categorical_layers=3,
             sweep_sigma_max=(), test_size=4000, val_size=2000)


def make_config(quick: bool = False, seeds: int | None = None, **overrides: Any) -> Config:
    return cm.make_config(Config, QUICK, quick, seeds, overrides)


def _task(cfg: Config, sigma_max: float, levels: tuple = ()):
    from eaglelab.tasks.icl import ICLTaskConfig

    return ICLTaskConfig(family="vladymyrov", tokens=cfg.tokens, features=cfg.features,
                         sigma_max=sigma_max, levels=levels)


def _train(cfg: Config, task, support: str, layers: int, seed: int, folder: Path):
    over = {"task.family": "vladymyrov", "task.tokens": str(cfg.tokens),
            "task.features": str(cfg.features), "task.sigma_max": str(task.sigma_max),
            "task.levels": ",".join(f"{v:g}" for v in task.levels),
            "model.layers": str(layers), "model.support": support,
            "model.init_std": str(cfg.init_std), "train.batch": str(cfg.batch),
            "train.lr": str(cfg.lr), "train.seed": str(seed), "train.eval_size": "512",
            "train.eval_every": "1000", "train.threads": "1"}
    return trained_icl_run(over, cfg.steps, folder)


def _adjusted(pred: np.ndarray, test, oracle: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(adjusted loss, its standard error, per-prompt values): 1/2 ((pred - y)^2 -
    (oracle - y)^2) on the test prompts."""
    y = test.answer
    per = 0.5 * ((pred - y) ** 2 - (oracle - y) ** 2)
    return float(per.mean()), float(per.std(ddof=1) / np.sqrt(per.size)), per


def _baselines(test, val) -> dict[str, dict]:
    from eaglelab.solvers import icl_baselines as R

    oracle = R.oracle_ridge_predict(test)
    lam, _ = R.tune_const_ridge(val.X)
    mc, _ = R.tune_ada_ridge(val.X)
    preds = {"ConstRR": R.ridge_predict(test.X, lam), "AdaRR": R.ada_ridge_predict(test.X),
             "TunedRR": R.tuned_ridge_predict(test.X, *mc), "OLS": R.ridge_predict(test.X, 0.0)}
    out = {}
    for name, pred in preds.items():
        a, se, per = _adjusted(pred, test, oracle)
        out[name] = {"adjusted": a, "se": se, "median": float(np.median(per)),
                     "by_noise": _by_noise(per, test.noise)}
    out["ConstRR"]["lam"] = float(lam)
    out["TunedRR"]["multiplier"], out["TunedRR"]["cap"] = (float(v) for v in mc)
    return out


BINS = 8


def _by_noise(per: np.ndarray, noise: np.ndarray) -> list[float]:
    """Mean adjusted loss in BINS equal-width bins of the prompts' noise level (NaN where a
    bin is empty, e.g. categorical noise)."""
    edges = np.linspace(0.0, max(float(noise.max()), 1e-12), BINS + 1)
    idx = np.clip(np.searchsorted(edges, noise, side="right") - 1, 0, BINS - 1)
    return [float(per[idx == b].mean()) if np.any(idx == b) else float("nan")
            for b in range(BINS)]


def _measure(model, test, oracle) -> dict[str, Any]:
    with torch.no_grad():
        pred = model.double()(torch.as_tensor(test.prompt))[0, :, 0, 0].numpy()
    a, se, per = _adjusted(pred, test, oracle)
    return {"adjusted": a, "se": se, "median": float(np.median(per)),
            "by_noise": _by_noise(per, test.noise)}


def _omegas(model) -> list[list[float]]:
    """DIAG / GD++: (omega_xx, omega_xy, omega_yx, omega_yy) = (p_x q_x, p_x q_y, p_y q_x,
    p_y q_y) per layer, in eaglelab's scaling (the family's 1/N folded into q)."""
    w = model.weights()
    q, p = w["q_diag"][:, 0], w["v_diag"][:, 0]
    if model.config.support == "gdpp":
        q = q * np.array([1.0, 0.0])
    return [[p[l, 0] * q[l, 0], p[l, 0] * q[l, 1], p[l, 1] * q[l, 0], p[l, 1] * q[l, 1]]
            for l in range(q.shape[0])]


def _setting(ctx: Context, cfg: Config, label: str, task, jobs, seeds) -> dict[str, Any]:
    """Train and measure the models `jobs` [(support, layers)] on `task`; the best seed per
    model by validation adjusted loss (the paper: best of 5), reported on the test set."""
    from eaglelab.experiments._family import eagle_bridge, gram_scale
    from eaglelab.models import LinearTransformer
    from eaglelab.solvers import icl_baselines as R
    from eaglelab.tasks.icl import icl_batch
    from eaglelab.train.runs import training_seconds

    test, val = icl_batch(task, cfg.test_size, 10_000), icl_batch(task, cfg.val_size, 20_000)
    oracle_test, oracle_val = R.oracle_ridge_predict(test), R.oracle_ridge_predict(val)
    models: dict[str, dict[str, dict]] = {}
    for support, L in ctx.track(jobs, f"{label}: train and measure"):
        best = None
        for s in seeds:
            folder = ctx.out_dir / "runs" / f"{label}-{support}-L{L}-seed{s}"
            run_ = _train(cfg, task, support, L, s, folder)
            ctx.trained_runs[str(folder)] = training_seconds(folder)
            v = _measure(run_.model, val, oracle_val)["adjusted"]
            if best is None or v < best[0]:
                best = (v, s, run_.model)
        row = {"seed": best[1], "val_adjusted": best[0],
               **_measure(best[2], test, oracle_test)}
        if support != "full":
            row["omegas"] = _omegas(best[2])
        row["bridge"] = eagle_bridge(best[2].double(), gram_scale(test.X))
        models.setdefault(support, {})[str(L)] = row
    out = {"task": task.to_dict(), "models": models, "baselines": _baselines(test, val),
           "noise_max": float(test.noise.max())}
    if jobs:
        support, L = max(jobs, key=lambda j: j[1])
        blank = LinearTransformer(_train_config(cfg, task, support, L).model, [0],
                                  dtype=torch.float64)
        out["control"] = {"support": support, "layers": L, **_measure(blank, test, oracle_test)}
    return out


def _train_config(cfg: Config, task, support: str, layers: int):
    from eaglelab.train import resolve_config

    return resolve_config("unconstrained", 1, cfg.steps, {
        "task.family": "vladymyrov", "task.tokens": str(cfg.tokens),
        "task.features": str(cfg.features), "model.layers": str(layers),
        "model.support": support, "model.init_std": str(cfg.init_std)}, task="icl")


def run(cfg: Config, ctx: Context) -> ExperimentResult:
    seeds = [cfg.base_seed + k for k in range(cfg.seeds)]
    main_jobs = [(p, L) for p in cfg.parametrisations for L in cfg.layers]
    main = _setting(ctx, cfg, f"smax{cfg.sigma_max:g}", _task(cfg, cfg.sigma_max), main_jobs,
                    seeds)
    categorical = None
    if cfg.categorical:
        cat_jobs = [(p, cfg.categorical_layers) for p in cfg.parametrisations]
        name = "cat" + "-".join(f"{v:g}" for v in cfg.categorical)
        categorical = _setting(ctx, cfg, name, _task(cfg, 0.0, cfg.categorical), cat_jobs,
                               seeds)
    sweep: dict[str, dict] = {}
    if cfg.sweep_sigma_max:
        for smax in ctx.track(cfg.sweep_sigma_max, "sigma_max sweep"):
            jobs = [(p, cfg.sweep_layers) for p in cfg.parametrisations]
            sweep[f"{smax:g}"] = _setting(ctx, cfg, f"smax{smax:g}", _task(cfg, smax), jobs,
                                          seeds)
        if cfg.sweep_layers in cfg.layers:
            sweep[f"{cfg.sigma_max:g}"] = main
    from eaglelab.experiments._family import budget_line

    cost = budget_line(sum(ctx.trained_runs.values()),
                       {"steps": cfg.steps, "batch": cfg.batch, "seeds": cfg.seeds},
                       {"steps": PAPER_BUDGET["steps"], "batch": 2048,
                        "seeds": PAPER_BUDGET["seeds"]})
    data = {"main": main, "categorical": categorical, "sweep": sweep, "paper": PAPER,
            "cost": cost,
            "paper_baselines": PAPER_BASELINES, "paper_categorical": PAPER_CATEGORICAL,
            "config": cfg.__dict__}
    _plot(ctx, cfg, main, sweep)
    return ExperimentResult(name="vladymyrov", data=data,
                            claims=_claims(cfg, main, categorical),
                            section=_section(cfg, main, categorical, sweep) + "\n\n" + cost,
                            captions=_captions(cfg))


def _within(ours: float, paper: float) -> bool:
    return paper / MODEL_FACTOR <= ours <= paper * MODEL_FACTOR


def _claims(cfg: Config, main: dict, categorical: dict | None):
    claims = []
    models, base = main["models"], main["baselines"]
    for p, label in PARAMETRISATIONS.items():
        have = [(L, v) for L, v in PAPER[p].items() if str(L) in models.get(p, {})]
        if not have:
            continue
        ours = [models[p][str(L)]["adjusted"] for L, _ in have]
        claims.append(cm.claim(
            f"sigma_max = {cfg.sigma_max:g}: {label}'s adjusted loss at "
            + " / ".join(str(L) for L, _ in have) + f" layers matches Table 1 within a factor "
            f"{MODEL_FACTOR:g} (rule ours; a reduced budget)",
            " / ".join(f"{v:.3f}" for _, v in have),
            " / ".join(_with_se(models[p][str(L)], v) for L, v in have),
            all(_within(o, v) for o, (_, v) in zip(ours, have, strict=True)),
            "every depth within the factor", "outside the factor at some depth (one seed, "
            f"{cfg.steps} steps against the paper's best of 5 after 200k)"))
    for name, v in PAPER_BASELINES.items():
        o = base[name]["adjusted"]
        claims.append(cm.claim(
            f"{name}'s adjusted loss matches Table 1 within {BASELINE_TOL:.0%} (a closed-form "
            "baseline; " + {"ConstRR": "its ridge strength tuned on a validation batch",
                            "AdaRR": "a plug-in noise estimate, no constant",
                            "TunedRR": "its (multiplier, cap) tuned on a validation batch"
                            }.get(name, "closed form") + ")", f"{v:.3f}",
            f"{o:.3f} +- {base[name]['se']:.3f}", abs(o - v) <= BASELINE_TOL * v,
            "within the tolerance", "outside the tolerance: " + (
                "our (multiplier, cap) grid gains little over AdaRR; the paper's tuning is "
                "not fully specified" if name == "TunedRR" else "a different definition or "
                "sampling")))
    gdpp = models.get("gdpp", {})
    deep = [L for L in cfg.layers if L >= 3 and str(L) in gdpp]
    if deep:
        const = base["ConstRR"]["adjusted"]
        vals = [gdpp[str(L)]["adjusted"] for L in deep]
        claims.append(cm.claim(
            f"GD++ behaves like ConstRR (one noise level for all prompts): its adjusted loss "
            f"within {CONST_TOL:.0%} of ConstRR's at every depth >= 3",
            "GD++ 0.344 at every depth; ConstRR 0.365",
            ", ".join(f"L={L}: {v:.3f}" for L, v in zip(deep, vals, strict=True))
            + f"; ConstRR {const:.3f}",
            all(abs(v - const) <= CONST_TOL * const for v in vals),
            "GD++ does not adapt to the noise level", "GD++ departs from ConstRR"))
    pairs = [(p, L) for p in ("full", "diag") for L in (5, 7) if str(L) in models.get(p, {})]
    if pairs:
        ada = base["AdaRR"]["adjusted"]
        claims.append(cm.claim(
            "From 5 layers the FULL and DIAG models beat AdaRR (lower adjusted loss on the "
            "same prompts)", "from 4-5 layers the models beat AdaRR (0.048-0.051 vs 0.068)",
            ", ".join(f"{PARAMETRISATIONS[p]} L={L}: {models[p][str(L)]['adjusted']:.3f}"
                      for p, L in pairs) + f"; AdaRR {ada:.3f}",
            all(models[p][str(L)]["adjusted"] < ada for p, L in pairs),
            "the deep models adapt to the noise better than the plug-in estimate",
            "not every deep model beats AdaRR"))
    if "control" in main:
        c = main["control"]
        L, paper = _paper_at(c["support"], c["layers"])
        claims.append(cm.claim(
            f"Negative control: the untrained {PARAMETRISATIONS[c['support']]} model "
            f"({c['layers']} layers) fails the factor rule against Table 1's {L}-layer "
            f"{paper:.3f}", "(a control of ours)", f"adjusted loss {c['adjusted']:.3g}",
            not _within(c["adjusted"], paper),
            "the rule rejects a model that learned nothing", "the rule accepts an untrained "
            "model"))
    claims += _boundary_claims(main)
    if categorical:
        cm_, cb = categorical["models"], categorical["baselines"]
        L = str(cfg.categorical_layers)
        keys = [p for p in ("full", "diag") if L in cm_.get(p, {})]
        levels = ", ".join(f"{v:g}" for v in cfg.categorical)
        paper_setting = cfg.categorical == (1.0, 3.0) and L == "7"
        if keys:
            claims.append(cm.claim(
                f"Categorical noise {{{levels}}}, {L} layers: "
                + " / ".join(PARAMETRISATIONS[k] for k in keys) + " adjusted losses match "
                f"the paper within a factor {MODEL_FACTOR:g} (rule ours)",
                " / ".join(f"{PAPER_CATEGORICAL[k]:.3f}" for k in keys),
                " / ".join(_with_se(cm_[k][L], PAPER_CATEGORICAL[k]) for k in keys),
                paper_setting and all(_within(cm_[k][L]["adjusted"], PAPER_CATEGORICAL[k])
                                      for k in keys),
                "every entry within the factor", "outside the factor" if paper_setting else
                "not the paper's setting ({1, 3} at 7 layers)"))
        t, v = cb["TunedRR"], PAPER_CATEGORICAL["TunedRR"]
        claims.append(cm.claim(
            f"Categorical noise {{{levels}}}: TunedRR's adjusted loss matches the paper within "
            f"{BASELINE_TOL:.0%} (a closed-form baseline)", f"{v:.3f}",
            f"{t['adjusted']:.3f} +- {t['se']:.3f}",
            cfg.categorical == (1.0, 3.0) and abs(t["adjusted"] - v) <= BASELINE_TOL * v,
            "within the tolerance", "outside the tolerance" if cfg.categorical == (1.0, 3.0)
            else "not the paper's {1, 3}"))
        if "full" in keys and paper_setting:
            f = cm_["full"][L]["adjusted"]
            claims.append(cm.claim(
                f"Categorical noise {{{levels}}}, {L} layers: FULL beats TunedRR (the paper's "
                "ordering)" + cm.AFTER_DATA, f"FULL {PAPER_CATEGORICAL['full']:.3f} < "
                f"TunedRR {PAPER_CATEGORICAL['TunedRR']:.3f}",
                f"FULL {f:.3f} vs TunedRR {t['adjusted']:.3f}", f < t["adjusted"],
                "the trained model adapts beyond the tuned plug-in estimate",
                "the trained model does not beat the tuned estimate at our budget"))
    claims += _tuned_claims(cfg, main)
    return claims


def _tuned_claims(cfg: Config, main: dict) -> list:
    """The paper's ordering at sigma_max = 5: the deepest FULL and DIAG models are about
    TunedRR (0.047 against 0.049): within BASELINE_TOL of TunedRR's adjusted loss."""
    models, t = main["models"], main["baselines"]["TunedRR"]["adjusted"]
    deep = [(p, str(max(int(k) for k in models[p]))) for p in ("full", "diag")
            if models.get(p)]
    if not deep:
        return []
    vals = {p: models[p][L]["adjusted"] for p, L in deep}
    return [cm.claim(
        f"sigma_max = {cfg.sigma_max:g}: the deepest FULL and DIAG models are within "
        f"{BASELINE_TOL:.0%} of TunedRR (the paper's ordering: as good as the tuned "
        "estimate)" + cm.AFTER_DATA,
        f"FULL / DIAG 0.047 / 0.047 (7 layers) vs TunedRR {PAPER_BASELINES['TunedRR']:.3f}",
        " / ".join(f"{PARAMETRISATIONS[p]} L={L}: {vals[p]:.3f}" for p, L in deep)
        + f" vs TunedRR {t:.3f}",
        all(abs(v - t) <= BASELINE_TOL * t for v in vals.values()),
        "the deep models reach the tuned estimate",
        "the deep models stay above the tuned estimate at our budget (one seed, "
        f"{cfg.steps} steps against the paper's best of 5 after 200k)")]


def _paper_at(support: str, layers: int) -> tuple[int, float]:
    """(depth, number) of Table 1 for `support` at `layers`, else at the nearest depth it
    lists."""
    table = PAPER[support]
    L = layers if layers in table else min(table, key=lambda k: (abs(k - layers), k))
    return L, table[L]


def _with_se(row: dict, paper: float) -> str:
    """'ours +- se (z se from the paper; median m)': the distance in our standard errors -
    the test prompts' sampling error only, not the seed's or the training's - and the
    median per-prompt adjusted loss, which shows when a heavy tail of a few prompts makes
    the mean (and its se) large."""
    z = (row["adjusted"] - paper) / row["se"] if row["se"] > 0 else float("inf")
    med = f"; median {row['median']:.3f}" if "median" in row else ""
    return f"{row['adjusted']:.3f} +- {row['se']:.3f} ({z:+.1f} prompt-sampling se{med})"


def _boundary_claims(main: dict) -> list:
    """The factor rule against FULL's Table 1 number at the deepest trained depth, applied
    to models that cannot adapt to the noise as FULL does: the trained GD++ (one noise
    level for all prompts) and AdaRR (a plug-in noise estimate)."""
    full, gdpp = main["models"].get("full", {}), main["models"].get("gdpp", {})
    if not full:
        return []
    L, paper = _paper_at("full", max(int(k) for k in full))
    lo, hi = paper / MODEL_FACTOR, paper * MODEL_FACTOR
    window = f"FULL's Table 1 {L}-layer {paper:.3f}, window {lo:.3f}-{hi:.3f}"
    out = []
    deep = str(max(int(k) for k in gdpp)) if gdpp else None
    if deep:
        g = gdpp[deep]["adjusted"]
        out.append(cm.claim(
            f"Boundary control: the trained GD++ model ({deep} layers) fails FULL's factor "
            f"rule ({window}; a control of ours, added after the first full run)",
            "(a control of ours)", f"adjusted loss {g:.3f}", not _within(g, paper),
            "the rule rejects a model that does not adapt to the noise",
            "the rule accepts GD++"))
    a = main["baselines"]["AdaRR"]["adjusted"]
    out.append(cm.claim(
        f"Boundary control: AdaRR fails FULL's factor rule ({window}; a control of ours, "
        "added after the first full run)", "(a control of ours)", f"adjusted loss {a:.3f}",
        not _within(a, paper), "the factor rule separates FULL's number from AdaRR's",
        "the factor window contains AdaRR: the factor-2 rule cannot separate a model that "
        "adapts to each prompt's noise from the plug-in AdaRR, so the factor verdicts alone "
        "show no adaptation ('beat AdaRR' and 'within 25% of TunedRR' are the claims that "
        f"test it; a factor 1.4 would exclude AdaRR ({paper / 1.4:.3f}-{paper * 1.4:.3f}), "
        "but was not adopted: it would be a rule changed after seeing data)"))
    return out


def _plot(ctx: Context, cfg: Config, main: dict, sweep: dict) -> None:
    fig, axes = cm.figure(3 if sweep else 2, 1, width=4.6, height=3.6)
    colours = {"full": "tab:blue", "diag": "tab:orange", "gdpp": "tab:green"}
    base_style = {"ConstRR": "k--", "AdaRR": "k-.", "TunedRR": "k:"}
    ax = axes[0, 0]
    for p, rows in main["models"].items():
        Ls = sorted(int(L) for L in rows)
        ax.plot(Ls, [rows[str(L)]["adjusted"] for L in Ls], "o-", color=colours[p],
                label=PARAMETRISATIONS[p])
        ax.plot(list(PAPER[p]), list(PAPER[p].values()), "x", color=colours[p], ms=8)
    for name, style in base_style.items():
        ax.axhline(main["baselines"][name]["adjusted"], ls=style[1:], color="k", lw=1,
                   label=name)
    ax.plot([], [], "kx", label="paper (Table 1)")
    ax.set(yscale="log", xlabel="layers", ylabel="adjusted loss",
           title=f"sigma_max = {cfg.sigma_max:g}", xticks=sorted(set(cfg.layers) | {3, 5, 7}))
    ax.legend(fontsize=7, ncol=2)
    ax = axes[0, 1]
    top = main["noise_max"]
    centres = (np.arange(BINS) + 0.5) * top / BINS
    Lmax = str(max(cfg.layers))
    for p, rows in main["models"].items():
        if Lmax in rows:
            ax.plot(centres, rows[Lmax]["by_noise"], "o-", color=colours[p],
                    label=f"{PARAMETRISATIONS[p]} L={Lmax}")
    for name, style in base_style.items():
        ax.plot(centres, main["baselines"][name]["by_noise"], style, lw=1, label=name)
    ax.set(yscale="symlog", xlabel="prompt noise level sigma_tau",
           ylabel="adjusted loss in the bin", title="which prompts cost what")
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.legend(fontsize=7)
    if sweep:
        ax = axes[0, 2]
        xs = sorted(sweep, key=float)
        L = str(cfg.sweep_layers)
        for p in cfg.parametrisations:
            ys = [sweep[x]["models"].get(p, {}).get(L, {}).get("adjusted", np.nan) for x in xs]
            ax.plot([float(x) for x in xs], ys, "o-", color=colours[p],
                    label=f"{PARAMETRISATIONS[p]} L={L}")
        for name, style in base_style.items():
            ax.plot([float(x) for x in xs], [sweep[x]["baselines"][name]["adjusted"]
                                             for x in xs], style, lw=1, label=name)
        ax.set(yscale="log", xlabel="sigma_max (trained and tested)", ylabel="adjusted loss",
               title="against the noise range")
        ax.legend(fontsize=7)
    ctx.save_figure(fig, "vladymyrov")


def _captions(cfg: Config) -> dict[str, str]:
    return {"vladymyrov.png": "Left: adjusted loss (1/2 squared error minus the oracle "
            "ridge's) against depth for FULL, DIAG and GD++ (crosses: the paper's Table 1) "
            "with the ridge baselines. Middle: the deepest models' adjusted loss by the "
            "prompt's noise level. Right (when run): adjusted loss against sigma_max at "
            f"{cfg.sweep_layers} layers, every model trained and tested at that sigma_max."}


def _section(cfg: Config, main: dict, categorical: dict | None, sweep: dict) -> str:
    lines = [f"One seed per model ({cfg.seeds} trained, the best by validation adjusted "
             f"loss), {cfg.steps} Adam steps at batch {cfg.batch}, lr {cfg.lr:g} (ours; the "
             "paper: lr 1e-4, 200k steps, best of 5).  Adjusted loss on "
             f"{cfg.test_size} test prompts (+- one standard error).", "",
             "| sigma_max = " + f"{cfg.sigma_max:g} | " + " | ".join(
                 f"L={L}" for L in cfg.layers) + " |", "|---|" + "---|" * len(cfg.layers)]
    for p, rows in main["models"].items():
        cells = []
        for L in cfg.layers:
            r = rows.get(str(L))
            paper = PAPER[p].get(L)
            cells.append("" if r is None else f"{r['adjusted']:.3f} +- {r['se']:.3f}"
                         + (f" (paper {paper:.3f})" if paper else ""))
        lines.append(f"| {PARAMETRISATIONS[p]} | " + " | ".join(cells) + " |")
    lines += ["", "| baseline | adjusted loss | paper | tuned constants |", "|---|---|---|---|"]
    for name, b in main["baselines"].items():
        extra = (f"lam {b['lam']:.3g}" if name == "ConstRR" else
                 f"multiplier {b['multiplier']:.3g}, cap {b['cap']:.3g}" if name == "TunedRR"
                 else "")
        paper = PAPER_BASELINES.get(name)
        lines.append(f"| {name} | {b['adjusted']:.3f} +- {b['se']:.3f} | "
                     f"{'' if paper is None else f'{paper:.3f}'} | {extra} |")
    if "control" in main:
        c = main["control"]
        lines += ["", f"Untrained {PARAMETRISATIONS[c['support']]} control ({c['layers']} "
                  f"layers): adjusted loss {c['adjusted']:.3g}."]
    for p in ("diag", "gdpp"):
        rows = main["models"].get(p, {})
        if rows:
            L = max(rows, key=int)
            om = rows[L]["omegas"]
            lines += ["", f"{PARAMETRISATIONS[p]}, {L} layers: (omega_xx, omega_xy, omega_yx, "
                      "omega_yy) per layer = " + "; ".join(
                          "(" + ", ".join(f"{v:.3g}" for v in o) + ")" for o in om)]
    from eaglelab.experiments._family import BRIDGE_HEADER, BRIDGE_RULE, bridge_text

    lines += ["", "Bridge to EAGLE (eaglelab's weight-structure test, "
              f"`extract.properties.eagle_structure`; {BRIDGE_RULE}), the "
              "deepest model of each parametrisation:", "", *BRIDGE_HEADER]
    for p, rows in main["models"].items():
        L = max(rows, key=int)
        lines.append(bridge_text(f"{PARAMETRISATIONS[p]}, {L} layers", rows[L]["bridge"]))
    if categorical:
        L = str(cfg.categorical_layers)
        levels = ", ".join(f"{v:g}" for v in cfg.categorical)
        cells = [f"{PARAMETRISATIONS[p]} {r[L]['adjusted']:.3f}"
                 for p, r in categorical["models"].items() if L in r]
        cells += [f"{n} {b['adjusted']:.3f}" for n, b in categorical["baselines"].items()]
        lines += ["", f"Categorical noise {{{levels}}}, {L} layers: " + ", ".join(cells)
                  + " (paper, {1, 3}: FULL 0.010, DIAG 0.018, TunedRR 0.021)."]
    if sweep:
        L = str(cfg.sweep_layers)
        lines += ["", f"sigma_max sweep, {L} layers: " + "; ".join(
            f"sigma_max {x}: " + ", ".join(
                f"{PARAMETRISATIONS[p]} {v['models'][p][L]['adjusted']:.3f}"
                for p in cfg.parametrisations if L in v["models"].get(p, {}))
            + f", AdaRR {v['baselines']['AdaRR']['adjusted']:.3f}"
            for x, v in sorted(sweep.items(), key=lambda kv: float(kv[0])))]
    return "\n".join(lines)
