"""Markdown report and figures of an `Extraction` (the paper's Figs. 2-5, Tables 1/3)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eaglelab.extract.pipeline import Extraction  # noqa: E402
from eaglelab.extract.properties import random_projector  # noqa: E402

__all__ = ["write_report", "fidelity_table", "residue_table", "update_rule", "weights_figure",
           "sketch_figure"]


def update_rule(ex: Extraction) -> str:
    """The discovered update in words and numbers (fitted constants, mean over seeds)."""
    s = ex.summary()
    sk = ex.regime == "compute-limited"
    As, Bs, St = ("A S_l", "B S_l", " S_l^T") if sk else ("A", "B", "")
    lines = [
        f"rho_l = 1 / N_l,  N_l = largest ||{As}||_2^2 over a training batch at layer l",
        f"A <- A - eta rho_l ({As})({As})^T({As}){St}",
        f"B <- B - eta rho_l ({Bs})({As})^T({As}){St}",
        f"C <- C - gamma rho_l ({As})({As})^T C",
        f"D <- D + gamma rho_l ({Bs})({As})^T C",
        f"eta = {s.eta:.3f} +- {s.eta_std:.3f},  gamma = {s.gamma:.3f} +- "
        f"{s.gamma_std:.3f}  (over {s.seeds} seed(s))",
        f"without the last layer (whose C is never read again): gamma = "
        f"{s.gamma_inner:.3f} +- {s.gamma_inner_std:.3f}; eta is always fitted so",
    ]
    if sk:
        lines.insert(1, "S_l: the learned n x r sketch of layer l (the learned eigenvectors, "
                        "scaled so that S_l S_l^T keeps the learned eigenvalues)")
        align = s.value_alignment
        if align is not None:
            lines[2:4] = [
                f"A <- A - eta rho_l ({As})({As})^T A R_l",
                f"B <- B - eta rho_l ({Bs})({As})^T A R_l"]
            lines.insert(2, "R_l: the learned rank-r value map of layer l (the paper's form "
                            "has S_l S_l^T there); share of R_l inside span S_l per layer: "
                            + " ".join(f"{v:.2f}" for v in align))
    if ex.regime == "distributed":
        lines.insert(1, "every machine mu applies the update to its own (A^mu, B^mu) and the "
                        "shared (C, D); C and D are then averaged over the machines")
        cross = s.cross_write
        if cross is not None:
            lines.append("off-machine writes of W_VP, ||W_VP[:, J_nu != J_mu]||_F / "
                         "||W_VP[:, J_mu + N']||_F per layer: " + " ".join(f"{v:.2f}" for v in cross)
                         + "  (0 = only C and D are sent, as in the paper; the extracted "
                         "algorithm is the local update)")
    return "\n".join(lines)


def fidelity_table(ex: Extraction) -> str:
    s = ex.summary()
    L = len(s.fidelity)
    head = "| quantity | " + " | ".join(f"layer {l + 1}" for l in range(L)) + " |"
    sep = "|---|" + "---|" * L
    rows = [head, sep,
            "| fidelity, extracted (mean) | " + " | ".join(f"{v:.2e}" for v in s.fidelity) + " |",
            "| fidelity, extracted (std) | " + " | ".join(f"{v:.1e}" for v in s.fidelity_std) + " |",
            "| fidelity, D slot only (prediction) | "
            + " | ".join(f"{v:.2e}" for v in s.fidelity_prediction) + " |",
            "| fidelity, canonical EAGLE | " + " | ".join(f"{v:.2e}" for v in s.fidelity_canonical)
            + " |"]
    rows.append("| fidelity, median over tasks | "
                + " | ".join(f"{v:.2e}" for v in s.fidelity_median) + " |")
    if s.fidelity_paper is not None:
        rows.append(f"| fidelity, paper's form ({s.paper_form}) | "
                    + " | ".join(f"{v:.2e}" for v in s.fidelity_paper) + " |")
    rows.append(f"| fidelity, all {s.tasks} tasks | "
                + " | ".join(f"{v:.2e}" for v in s.fidelity_all_tasks) + " |")
    return "\n".join(rows)


RESIDUE_LABELS = {
    "structured": "structure only (= extracted algorithm)",
    "in_structure": "+ residue of the structured blocks (QK tl, VP tl, VP br)",
    **{f"{m}_{b}": f"+ residue of W_{m.upper()} {b}" for m in ("qk", "vp")
       for b in ("tl", "tr", "bl", "br")},
    "bias": "+ query biases",
}


def residue_table(ex: Extraction) -> str:
    s = ex.summary()
    res = s.residue
    L = len(res["structured"])
    rows = ["| reading | " + " | ".join(f"layer {l + 1}" for l in range(L)) + " |",
            "|---|" + "---|" * L]
    for key, vals in res.items():
        rows.append(f"| {RESIDUE_LABELS.get(key, key)} | "
                    + " | ".join(f"{v:.2e}" for v in vals) + " |")
    return "\n".join(rows)


def weights_figure(ex: Extraction):
    """Heat maps of W_QK and W_VP per layer (heads summed) of the first seed (Figs 2, 12,
    13), or None when the products were not kept."""
    seed = ex.seeds[0]
    prods = seed.products
    if prods is None:
        return None
    L = len(prods.W_QK)
    fig, axes = plt.subplots(2, L, figsize=(3 * L, 6), squeeze=False)
    for l in range(L):
        for row, (name, mats) in enumerate((("W_QK", prods.W_QK), ("W_VP", prods.W_VP))):
            W = sum(mats[l])
            v = float(np.abs(W).max()) or 1.0
            ax = axes[row, l]
            im = ax.imshow(W, cmap="RdBu_r", vmin=-v, vmax=v)
            ax.set_title(f"{name}, layer {l + 1}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"{ex.regime}: weight products (seed {seed.seed}, heads summed)")
    fig.tight_layout()
    return fig


def head_weights_figure(ex: Extraction, layer: int = 0):
    """Distributed regime: W_QK and W_VP of every head of one layer (first seed), with the
    machines' column blocks outlined - a head reads only its own block and the shared
    columns (its rows), and may write anywhere (its columns).  None elsewhere."""
    seed = ex.seeds[0]
    prods = seed.products
    if prods is None or ex.regime != "distributed":
        return None
    heads = len(prods.W_QK[layer])
    n = ex.config["model"]["n"]
    M = ex.config["model"]["machines"]
    fig, axes = plt.subplots(2, heads, figsize=(3 * heads, 6), squeeze=False)
    for h in range(heads):
        for row, (name, mats) in enumerate((("W_QK", prods.W_QK), ("W_VP", prods.W_VP))):
            W = mats[layer][h]
            v = float(np.abs(W).max()) or 1.0
            ax = axes[row, h]
            im = ax.imshow(W, cmap="RdBu_r", vmin=-v, vmax=v)
            for b in range(1, M + 1):                  # machine block edges, then N'
                e = b * n / M - 0.5
                ax.axhline(e, color="k", lw=0.5)
                ax.axvline(e, color="k", lw=0.5)
            ax.set_title(f"{name}, head {h} (machine {h * M // heads})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"distributed: per-head products, layer {layer + 1} (seed {seed.seed}; rows: "
                 "what a head reads, columns: what it writes)")
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> None:
    if fig is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)


def _layerwise(ex: Extraction, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for s in ex.seeds:
        x = np.arange(len(s.layers_model["kappa"]))
        axes[0].semilogy(x, s.layers_model["kappa"], "o-", color="C0", alpha=0.6)
        axes[0].semilogy(x, s.layers_algorithm["kappa"], "x--", color="C1", alpha=0.6)
        axes[1].semilogy(x, s.layers_model["mse"], "o-", color="C0", alpha=0.6)
        axes[1].semilogy(x, s.layers_algorithm["mse"], "x--", color="C1", alpha=0.6)
    axes[0].set_title("condition number of A_l (median over tasks)")
    axes[1].set_title("MSE of the D slot read-out")
    for ax in axes:
        ax.set_xlabel("layer l")
        ax.plot([], [], "o-", color="C0", label="transformer")
        ax.plot([], [], "x--", color="C1", label="extracted EAGLE")
        ax.legend()
    fig.suptitle(f"{ex.regime}: layer-wise quantities")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _scaling(ex: Extraction, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    s0 = ex.summary()
    for ax, key, const, name in ((axes[0], "steps_A", s0.eta, "eta"),
                                 (axes[1], "steps_C", s0.gamma, "gamma")):
        xs = []
        for s in ex.seeds:
            x = 1.0 / np.asarray(s.norms)
            ax.plot(x, getattr(s, key), "o", alpha=0.6)
            xs.append(x)
        grid = np.linspace(0, max(np.max(x) for x in xs) * 1.05, 50)
        ax.plot(grid, const * grid, "k--", label=f"{name} = {const:.2f}")
        ax.set_xlabel("1 / N_l  (N_l = batch-max ||A_l||^2)")
        ax.set_ylabel(f"learned step ({'-a1 a2' if key == 'steps_A' else '-a1 a3'})")
        ax.legend()
    fig.suptitle(f"{ex.regime}: scaling law of the learned steps (one colour per seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sketch_figure(ex: Extraction):
    """Compute-limited: eigenvalues and entries of the learned top-left W_QK block against a
    random S S^T (Fig 4), or None in other regimes."""
    seed = ex.seeds[0]
    if not seed.sketch:
        return None
    r = seed.sketch[0]["r"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for l, info in enumerate(seed.sketch):
        ev = np.asarray(info["eigenvalues"])
        axes[0].plot(np.arange(1, ev.size + 1), ev, "o-", label=f"layer {l + 1}", alpha=0.7)
    n = len(seed.sketch[0]["eigenvalues"])
    axes[0].plot(np.arange(1, n + 1), np.r_[np.ones(r), np.zeros(n - r)], "k--", label="S S^T")
    axes[0].set_title("eigenvalues (trace normalised to r)")
    axes[0].legend(fontsize=8)
    prods = seed.products
    if prods is not None:
        P = prods.W_QK[0][0][:n, :n]
        P = 0.5 * (P + P.T)
        P = P * r / np.trace(P)
        R = random_projector(n, r, np.random.default_rng(0))
        bins = np.linspace(min(P.min(), R.min()), max(P.max(), R.max()), 40)
        axes[1].hist(P.ravel(), bins=bins, alpha=0.6, density=True, label="learned, layer 1")
        axes[1].hist(R.ravel(), bins=bins, alpha=0.6, density=True, label="random S S^T")
        axes[1].set_title(f"entries (p = {seed.sketch[0]['p_entries']:.2f})")
        axes[1].legend()
    fig.suptitle("compute-limited: learned top-left W_QK block vs a random orthogonal sketch")
    fig.tight_layout()
    return fig


def write_report(ex: Extraction, out: Path, title: str = "") -> Path:
    """Write extraction_<regime>.json, REPORT-<regime>.md and PNG figures into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    tag = ex.regime
    figs = {"weights": out / f"weights_{tag}.png", "layers": out / f"layers_{tag}.png",
            "scaling": out / f"scaling_{tag}.png"}
    _save(weights_figure(ex), figs["weights"])
    _layerwise(ex, figs["layers"])
    _scaling(ex, figs["scaling"])
    if tag == "compute-limited":
        figs["sketch"] = out / f"sketch_{tag}.png"
        _save(sketch_figure(ex), figs["sketch"])
    # all-task numbers of a diverged task can be inf: to_jsonable writes them as null
    from eaglelab.records import to_jsonable

    (out / f"extraction_{tag}.json").write_text(json.dumps(to_jsonable(ex.to_dict()), indent=1))
    s = ex.summary()
    md = [f"# Extraction report: {tag}{' - ' + title if title else ''}", "",
          "## Discovered update rule", "", "```", update_rule(ex), "```", "",
          "## Fidelity (||Z_model - Z_alg||_F^2 / #entries, mean over seeds)", "",
          f"Over the {s.tasks} test tasks less those whose input norm ||A_0||_2^2 exceeds "
          "the calibration batch's largest (a rule fixed from the prompts alone): "
          f"{', '.join(map(str, s.out_of_range))} task(s) per seed.  The last row and the "
          "'all tasks' numbers below include them.", "",
          fidelity_table(ex), "",
          f"- model test MSE: {s.mse:.3e}; extracted algorithm: {s.mse_algorithm:.3e}; "
          f"canonical EAGLE: {s.mse_canonical:.3e}; sparsified + quantised model: "
          f"{s.mse_simplified:.3e}; Nystrom answer: {s.nystrom_mse:.3e}; model over all "
          f"tasks: {s.mse_all_tasks:.3e} (verdict there: "
          f"{'faithful' if s.faithful_all_tasks else 'NOT faithful'})",
          f"- full-Z verdict (the paper's criterion): {'faithful' if s.faithful else 'NOT faithful'}"
          f" (every layer's fidelity {'below' if s.faithful else 'not below'} the model's own "
          f"test MSE)",
          f"- on typical tasks (medians over tasks): model MSE {s.mse_median:.3e}, verdict "
          f"{'faithful' if s.faithful_median else 'NOT faithful'}",
          f"- prediction verdict: {'faithful' if s.prediction_faithful else 'NOT faithful'} "
          "(the D slot alone)", ""]
    if s.residue:
        md += ["## Where the model departs from the algorithm", "",
               "Fidelity per layer with one weight block's learned residue put back on top of "
               "the structure the algorithm reads (`eaglelab.extract.residue`); a block that "
               "brings it far down carries what the algorithm leaves out.", "",
               residue_table(ex), ""]
    if ex.prune:
        md += ["## Head pruning", "",
               f"- validation loss before: {np.mean(ex.prune['loss_before']):.3e}, after pruning "
               f"to one head per layer{' and machine' if tag == 'distributed' else ''}: "
               f"{np.mean(ex.prune['loss_after']):.3e}", ""]
    md += ["## Figures", ""] + [f"![{k}]({p.name})" for k, p in figs.items() if p.exists()]
    path = out / f"REPORT-{tag}.md"
    path.write_text("\n".join(md) + "\n")
    return path
