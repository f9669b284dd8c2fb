"""Side-by-side runs of a model and an algorithm (brief section 3, step 5).

Fidelity of layer l: ||Z_model,l - Z_alg,l||_F^2 / #entries of Z, averaged over the batch
(the paper's Table 1/3 metric).  Both runs use the model's convention: the D slot holds
minus the running prediction.

Every measure takes an optional boolean mask over the prompts; the extraction passes the
test tasks whose input norm lies within the calibration batch's
(`extract.scaling.inputs_in_range`).
"""

from __future__ import annotations

import numpy as np
import torch

from eaglelab.tasks.blocks import nystrom_reference

__all__ = ["layer_fidelity", "layer_fidelity_median", "prediction_mse_median", "block_fidelity",
           "prediction_mse", "nystrom_mse", "layer_quantities"]


def layer_fidelity(Z_model: list[torch.Tensor], Z_alg: list[torch.Tensor],
                   tasks: np.ndarray | None = None) -> list[float]:
    """Per layer l = 1..L: mean over prompts and entries of (Z_model,l - Z_alg,l)^2 (over
    the prompts selected by the boolean mask `tasks`, when given)."""
    if len(Z_model) != len(Z_alg):
        raise ValueError(f"model has {len(Z_model) - 1} layers, algorithm {len(Z_alg) - 1}")
    keep = _mask(tasks, Z_model[0])
    return [float((a[keep].to(torch.float64) - b[keep].to(torch.float64)).square().mean())
            for a, b in zip(Z_model[1:], Z_alg[1:], strict=True)]


def _mask(tasks: np.ndarray | None, Z: torch.Tensor) -> torch.Tensor | slice:
    """The prompts a measure averages over: all, or a boolean selection (an empty one
    gives NaN measures: nothing to average)."""
    if tasks is None:
        return slice(None)
    mask = np.asarray(tasks)
    if mask.dtype != bool:
        raise ValueError(f"tasks must be a boolean mask over the prompts, got dtype {mask.dtype}")
    keep = torch.as_tensor(mask)
    if keep.shape != Z.shape[:1]:
        raise ValueError(f"task mask of shape {tuple(keep.shape)} for a batch of "
                         f"{Z.shape[0]} prompts")
    return keep


def layer_fidelity_median(Z_model: list[torch.Tensor], Z_alg: list[torch.Tensor],
                          tasks: np.ndarray | None = None) -> list[float]:
    """The robust version: per layer, the median over prompts of the per-prompt mean squared
    difference.  A model with fixed learned steps can blow up on a rare task with an
    atypically large ||A|| (the heavy tail of the training law); such tasks dominate the
    mean but say nothing about the algorithm on typical inputs."""
    keep = _mask(tasks, Z_model[0])
    return [float(torch.median((a[keep].to(torch.float64) - b[keep].to(torch.float64)).square()
                               .flatten(1).mean(dim=1)))
            for a, b in zip(Z_model[1:], Z_alg[1:], strict=True)]


def prediction_mse_median(Z: torch.Tensor, D: torch.Tensor, d: int, n: int,
                          tasks: np.ndarray | None = None) -> float:
    """Median over prompts of the per-prompt MSE of the read-out."""
    keep = _mask(tasks, Z)
    err = (-Z[keep][..., d:, n:].to(torch.float64) - D[keep].to(torch.float64)).square()
    return float(torch.median(err.flatten(1).mean(dim=1)))


def block_fidelity(Z_model: list[torch.Tensor], Z_alg: list[torch.Tensor], d: int,
                   n: int, tasks: np.ndarray | None = None) -> dict[str, list[float]]:
    """The fidelity split by block: per layer, the mean squared difference over the entries
    of A, B, C and D (the D slot is the prediction).  Their entry-weighted average is
    `layer_fidelity` (over the same mask `tasks`)."""
    out: dict[str, list[float]] = {"A": [], "B": [], "C": [], "D": []}
    keep = _mask(tasks, Z_model[0])
    for a, b in zip(Z_model[1:], Z_alg[1:], strict=True):
        diff = (a[keep].to(torch.float64) - b[keep].to(torch.float64)).square()
        for name, blk in (("A", diff[..., :d, :n]), ("B", diff[..., d:, :n]),
                          ("C", diff[..., :d, n:]), ("D", diff[..., d:, n:])):
            out[name].append(float(blk.mean()))
    return out


def prediction_mse(Z: torch.Tensor, D: torch.Tensor, d: int, n: int,
                   tasks: np.ndarray | None = None) -> float:
    """MSE of the read-out -Z[d:, n:] against the true D (over the masked prompts)."""
    keep = _mask(tasks, Z)
    return float((-Z[keep][..., d:, n:].to(torch.float64) - D[keep].to(torch.float64))
                 .square().mean())


def nystrom_mse(Z0: torch.Tensor, D: torch.Tensor, d: int, n: int) -> float:
    """MSE of the Nystrom answer B A^+ C against the true D (0 on noiseless tasks)."""
    A, B, C = Z0[..., :d, :n], Z0[..., d:, :n], Z0[..., :d, n:]
    Ds, _ = nystrom_reference(A, B, C)
    return float(np.mean((Ds - D.detach().cpu().double().numpy()) ** 2))


def layer_quantities(Zs: list[torch.Tensor], D: torch.Tensor, d: int, n: int,
                     rank: int | None = None, tasks: np.ndarray | None = None
                     ) -> dict[str, list[float]]:
    """Per layer input l = 0..L: median condition number of A_l (over its top `rank`
    singular values, i.e. the nonzero spectrum of low-rank data) and the MSE of D_l (over
    the prompts of the mask `tasks`, when given)."""
    kappa, err = [], []
    keep = _mask(tasks, Zs[0])
    for Z in Zs:
        s = torch.linalg.svdvals(Z[keep][..., :d, :n].to(torch.float64))
        k = rank or s.shape[-1]
        kappa.append(float(torch.median(s[..., 0] / s[..., k - 1])))
        err.append(prediction_mse(Z, D, d, n, tasks))
    return {"kappa": kappa, "mse": err}
