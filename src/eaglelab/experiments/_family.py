"""Shared by the family's experiments (`ahn`, `von_oswald`, `vladymyrov`): one trained
model on one of the family's tasks, kept in a run folder of the experiment and reused when
its resolved config is unchanged; and the bridge to EAGLE - eaglelab's extraction test of
EAGLE's weight structure (`extract.properties.eagle_structure`) on a family model."""

from __future__ import annotations

import shutil
from pathlib import Path


def trained_icl_run(overrides: dict[str, str], steps: int, folder: Path):
    """The finished run in `folder` when its config equals
    `resolve_config("unconstrained", 1, steps, overrides, task="icl")`; otherwise the folder
    is cleared and the model trained there.  Returns the `LoadedRun`."""
    from eaglelab.train import load_run, resolve_config, train

    config = resolve_config("unconstrained", 1, steps, overrides, task="icl")
    if (folder / "model.safetensors").exists():
        run = load_run(folder)
        if run.config == config:
            return run
    if folder.exists():
        shutil.rmtree(folder)
    return train(config, folder)


EAGLE_DEFECT = 0.1      # a head is EAGLE-shaped when both products are within this (ours)
A_SHARE = 0.1           # ... and applies EAGLE's A-update when a_share exceeds this (ours)
ACTS = 0.01             # a step acts when step x the context Gram's top eigenvalue >= this
FORCED_SHAPE = ("diag", "gdpp")   # supports whose products are EAGLE-shaped by construction


def gram_scale(X) -> float:
    """The median over prompts X (B, N + 1, d + 1) of the largest eigenvalue of the
    context's X^T X (d x d): the scale a layer's steps s_A, s_C act at."""
    import numpy as np

    Xc = np.asarray(X, dtype=np.float64)[:, :-1, :-1]
    return float(np.median(np.linalg.eigvalsh(np.swapaxes(Xc, 1, 2) @ Xc)[:, -1]))


def eagle_bridge(model, scale: float) -> dict:
    """Per layer of a one-seed, one-head family model: `eagle_structure` of its products and
    a reading - "EAGLE" (EAGLE-shaped, an A-update: GD++ is one EAGLE step), "GD"
    (EAGLE-shaped, no A-update: EAGLE's C/D update alone) or "other", with `why` it is
    not: not EAGLE-shaped (e.g. an anisotropic preconditioner), a step of the wrong sign
    (s_A < 0 grows A's large directions, s_C < 0 climbs the loss), or steps too small to act
    (step x `scale` < ACTS: an untrained model).  scale: `gram_scale` of the task's prompts.
    For DIAG / GD++ (`model.support` in FORCED_SHAPE) the shape holds by construction;
    `forced` says so and only the signs, the A-share and the sizes are evidence."""
    from eaglelab.extract.properties import eagle_structure

    p = model.products()
    n = model.config.n
    if p["W_QK"].shape[2] != 1:
        raise ValueError("eagle_bridge reads one head per layer")
    layers = []
    for l in range(model.config.layers):
        qk = p["W_QK"][0, l].double().sum(0).cpu().numpy()
        vp = p["W_VP"][0, l].double().sum(0).cpu().numpy()
        e = eagle_structure(qk, vp, n)
        a_update = e["a_share"] > A_SHARE
        steps = (e["s_A"], e["s_C"]) if a_update else (e["s_C"],)
        if max(e["defect_qk"], e["defect_vp"]) > EAGLE_DEFECT:
            e["reading"], e["why"] = "other", "not EAGLE-shaped"
        elif min(steps) < 0:
            e["reading"], e["why"] = "other", "a step of the wrong sign"
        elif min(steps) * scale < ACTS:
            e["reading"], e["why"] = "other", "steps too small to act"
        else:
            e["reading"], e["why"] = ("EAGLE" if a_update else "GD"), ""
        layers.append(e)
    return {"layers": layers, "readings": [e["reading"] for e in layers], "scale": scale,
            "forced": model.config.support in FORCED_SHAPE}


def bridge_text(label: str, bridge: dict) -> str:
    """One line for a report section."""
    cells = [f"{e['reading']}{' (' + e['why'] + ')' if e.get('why') else ''}: defects "
             f"{e['defect_qk']:.2f} / {e['defect_vp']:.2f}, A-share {e['a_share']:.2f}, "
             f"s_A {e['s_A']:.3g}, s_C {e['s_C']:.3g}" for e in bridge["layers"]]
    forced = " (shape by construction)" if bridge.get("forced") else ""
    return f"| {label}{forced} | " + "; ".join(cells) + " |"


BRIDGE_RULE = (f"EAGLE-shaped: both defects <= {EAGLE_DEFECT:g}; a reading also needs positive "
               f"steps that act, step x the prompts' top Gram eigenvalue >= {ACTS:g}")
BRIDGE_HEADER = ["| model | per layer: reading (why not), defect of W_QK / W_VP from EAGLE's "
                 "form, share of the A-update, steps s_A / s_C |", "|---|---|"]


def budget_line(seconds: float, ours: dict, paper: dict) -> str:
    """A report line: the measured training seconds of our budget and the paper's budget
    extrapolated from them at the measured rate (cost ~ steps x batch x seeds; a CPU
    estimate, a GPU is much faster).  ours / paper: {"steps", "batch", "seeds"}; run it with
    `--set` of the experiment's PAPER_BUDGET."""
    def work(b: dict) -> float:
        return float(b["steps"]) * float(b["batch"]) * float(b.get("seeds", 1))

    scale = work(paper) / work(ours)
    return (f"Training cost: {seconds:.0f} s measured here for all of this experiment's "
            f"training (main models: {ours['steps']} steps x batch {ours['batch']} x "
            f"{ours.get('seeds', 1)} seed(s) each); the paper's budget ({paper['steps']} steps "
            f"x batch {paper['batch']} x {paper.get('seeds', 1)} seed(s)) is {scale:.0f}x the "
            f"main models' work: about "
            f"{seconds * scale / 3600:.0f} h on this CPU at the measured rate (`--set` the "
            "experiment's PAPER_BUDGET on a GPU).")
