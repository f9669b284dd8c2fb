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


def eagle_bridge(model) -> dict:
    """Per layer of a one-seed, one-head family model: `eagle_structure` of its products and
    a reading - "EAGLE" (EAGLE-shaped, with an A-update: GD++ is one EAGLE step), "GD"
    (EAGLE-shaped, no A-update: EAGLE's C/D update alone) or "other" (not EAGLE-shaped, e.g.
    an anisotropic preconditioner)."""
    from eaglelab.extract.properties import eagle_structure

    p = model.products()
    n = model.config.n
    layers = []
    for l in range(model.config.layers):
        qk = p["W_QK"][0, l].double().sum(0).cpu().numpy()
        vp = p["W_VP"][0, l].double().sum(0).cpu().numpy()
        if p["W_QK"].shape[2] != 1:
            raise ValueError("eagle_bridge reads one head per layer")
        e = eagle_structure(qk, vp, n)
        shaped = max(e["defect_qk"], e["defect_vp"]) <= EAGLE_DEFECT
        e["reading"] = ("other" if not shaped else "EAGLE" if e["a_share"] > A_SHARE else "GD")
        layers.append(e)
    return {"layers": layers, "readings": [e["reading"] for e in layers]}


def bridge_text(label: str, bridge: dict) -> str:
    """One line for a report section."""
    cells = [f"{e['reading']} (defects {e['defect_qk']:.2f} / {e['defect_vp']:.2f}, A-share "
             f"{e['a_share']:.2f})" for e in bridge["layers"]]
    return f"| {label} | " + "; ".join(cells) + " |"


BRIDGE_HEADER = ["| model | per layer: reading (defect of W_QK / W_VP from EAGLE's form, share "
                 "of the A-update) |", "|---|---|"]


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
