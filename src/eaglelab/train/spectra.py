"""Spectral measures of a model's weight products over training (Mainali & Teixeira's
measures for larger models, related brief section 6; normalisations ours):

* effective rank of a product M (W_QK or W_VP of one layer, summed over its heads):
  exp(-sum_i p_i log p_i) with p_i = sigma_i / sum_j sigma_j, the singular values
  normalised to a distribution (1 for rank one, W for a multiple of the identity); the
  "tail" variant drops the top singular value first (how spread the rest is);
* subspace distance between the top-r left singular subspaces of two products:
  ||sin Theta||_F / sqrt(r) in [0, 1] (0: the same subspace), from the singular values of
  U_a^T U_b (cos Theta);
* snapshots: the products at each evaluation (`train.snapshots`), one safetensors file per
  step under <run>/snapshots/, read back by `load_snapshots`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["effective_rank", "effective_ranks", "subspace_distance", "save_snapshot",
           "load_snapshots"]


def effective_rank(M, drop_top: int = 0) -> float:
    """exp(entropy) of M's normalised singular values (after dropping the top `drop_top`)."""
    s = np.linalg.svd(np.asarray(M, dtype=np.float64), compute_uv=False)[drop_top:]
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def effective_ranks(prods: dict[str, torch.Tensor]) -> dict[str, list]:
    """{"erank_qk", "erank_vp"} (K, L) lists: each layer's head-summed product's effective
    rank, per seed (for the eval record of metrics.jsonl)."""
    out = {}
    for key, name in (("W_QK", "erank_qk"), ("W_VP", "erank_vp")):
        M = prods[key].detach().double().sum(dim=2).cpu().numpy()       # (K, L, W, W)
        out[name] = [[effective_rank(M[k, l]) for l in range(M.shape[1])]
                     for k in range(M.shape[0])]
    return out


def subspace_distance(A, B, r: int) -> float:
    """||sin Theta||_F / sqrt(r) between the top-r left singular subspaces of A and B."""
    Ua = np.linalg.svd(np.asarray(A, dtype=np.float64))[0][:, :r]
    Ub = np.linalg.svd(np.asarray(B, dtype=np.float64))[0][:, :r]
    cos = np.clip(np.linalg.svd(Ua.T @ Ub, compute_uv=False), 0.0, 1.0)
    return float(np.sqrt(np.sum(1.0 - cos ** 2) / r))


def save_snapshot(run_dir: Path, step: int, prods: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    folder = Path(run_dir) / "snapshots"
    folder.mkdir(exist_ok=True)
    path = folder / f"step-{step:07d}.safetensors"
    save_file({k: prods[k].detach().float().cpu().contiguous() for k in ("W_QK", "W_VP")},
              str(path))
    return path


def load_snapshots(run_dir: Path) -> list[tuple[int, dict[str, np.ndarray]]]:
    """[(step, {"W_QK", "W_VP"} float64 arrays (K, L, H, W, W))] in step order."""
    from safetensors.numpy import load_file

    out = []
    for path in sorted((Path(run_dir) / "snapshots").glob("step-*.safetensors")):
        arrays = load_file(str(path))
        out.append((int(path.stem.split("-")[1]),
                    {k: v.astype(np.float64) for k, v in arrays.items()}))
    return out
