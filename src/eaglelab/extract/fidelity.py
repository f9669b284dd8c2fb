"""Side-by-side runs of a model and an algorithm (brief section 3, step 5).

Fidelity of layer l: ||Z_model,l - Z_alg,l||_F^2 / #entries of Z, averaged over the batch
(the paper's Table 1/3 metric).  Both runs use the model's convention: the D slot holds
minus the running prediction.
"""

from __future__ import annotations

import numpy as np
import torch

from eaglelab.tasks.blocks import nystrom_reference

__all__ = ["layer_fidelity", "layer_fidelity_median", "prediction_mse_median", "block_fidelity",
           "prediction_mse", "nystrom_mse", "layer_quantities"]


def layer_fidelity(Z_model: list[torch.Tensor], Z_alg: list[torch.Tensor]) -> list[float]:
    """Per layer l = 1..L: mean over prompts and entries of (Z_model,l - Z_alg,l)^2."""
    if len(Z_model) != len(Z_alg):
        raise ValueError(f"model has {len(Z_model) - 1} layers, algorithm {len(Z_alg) - 1}")
    return [float((a.to(torch.float64) - b.to(torch.float64)).square().mean())
            for a, b in zip(Z_model[1:], Z_alg[1:], strict=True)]


def layer_fidelity_median(Z_model: list[torch.Tensor], Z_alg: list[torch.Tensor]) -> list[float]:
    """The robust version: per layer, the median over prompts of the per-prompt mean squared
    difference.  A model with fixed learned steps can blow up on a rare task with an
    atypically large ||A|| (the heavy tail of the training law); such tasks dominate the
    mean but say nothing about the algorithm on typical inputs."""
    return [float(torch.median((a.to(torch.float64) - b.to(torch.float64)).square()
                               .flatten(1).mean(dim=1)))
            for a, b in zip(Z_model[1:], Z_alg[1:], strict=True)]


def prediction_mse_median(Z: torch.Tensor, D: torch.Tensor, d: int, n: int) -> float:
    """Median over prompts of the per-prompt MSE of the read-out."""
    err = (-Z[..., d:, n:].to(torch.float64) - D.to(torch.float64)).square()
    return float(torch.median(err.flatten(1).mean(dim=1)))


def block_fidelity(Z_model: list[torch.Tensor], Z_alg: list[torch.Tensor], d: int,
                   n: int) -> dict[str, list[float]]:
    """The fidelity split by block: per layer, the mean squared difference over the entries
    of A, B, C and D (the D slot is the prediction).  Their entry-weighted average is
    `layer_fidelity`."""
    out: dict[str, list[float]] = {"A": [], "B": [], "C": [], "D": []}
    for a, b in zip(Z_model[1:], Z_alg[1:], strict=True):
        diff = (a.to(torch.float64) - b.to(torch.float64)).square()
        for name, blk in (("A", diff[..., :d, :n]), ("B", diff[..., d:, :n]),
                          ("C", diff[..., :d, n:]), ("D", diff[..., d:, n:])):
            out[name].append(float(blk.mean()))
    return out


def prediction_mse(Z: torch.Tensor, D: torch.Tensor, d: int, n: int) -> float:
    """MSE of the read-out -Z[d:, n:] against the true D."""
    return float((-Z[..., d:, n:].to(torch.float64) - D.to(torch.float64)).square().mean())


def nystrom_mse(Z0: torch.Tensor, D: torch.Tensor, d: int, n: int) -> float:
    """MSE of the Nystrom answer B A^+ C against the true D (0 on noiseless tasks)."""
    A, B, C = Z0[..., :d, :n], Z0[..., d:, :n], Z0[..., :d, n:]
    Ds, _ = nystrom_reference(A, B, C)
    return float(np.mean((Ds - D.detach().cpu().double().numpy()) ** 2))


def layer_quantities(Zs: list[torch.Tensor], D: torch.Tensor, d: int, n: int,
                     rank: int | None = None) -> dict[str, list[float]]:
    """Per layer input l = 0..L: median condition number of A_l (over its top `rank`
    singular values, i.e. the nonzero spectrum of low-rank data) and the MSE of D_l."""
    kappa, err = [], []
    for Z in Zs:
        s = torch.linalg.svdvals(Z[..., :d, :n].to(torch.float64))
        k = rank or s.shape[-1]
        kappa.append(float(torch.median(s[..., 0] / s[..., k - 1])))
        err.append(prediction_mse(Z, D, d, n))
    return {"kappa": kappa, "mse": err}
