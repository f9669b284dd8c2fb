"""Sparsify and quantise weight products (brief section 3, step 2).

Sparsify: drop entries with |w| < tau, tau = factor * ||W||_1 / #entries (factor 1.5).
Quantise: the surviving entries are clustered into (levels - 1) values by 1-D k-means
(scikit-learn), zero being the remaining level; W_QK uses 2 levels ({0, a1}) and W_VP 3
({0, a2, a3}) in the paper.  `simplify_products` applies both to every head of every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans

from eaglelab.extract.products import LayerProducts

__all__ = ["sparsify", "quantise", "simplify_products", "SimplifyReport"]


def sparsify(W: np.ndarray, factor: float = 1.5) -> tuple[np.ndarray, float]:
    """(W with entries below tau zeroed, tau)."""
    if factor < 0 or not np.isfinite(factor):
        raise ValueError(f"sparsify factor must be finite and >= 0, got {factor}")
    tau = factor * float(np.abs(W).sum()) / W.size
    return np.where(np.abs(W) >= tau, W, 0.0), tau


def quantise(W: np.ndarray, levels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(W with its nonzero entries replaced by their k-means centre, the centres).

    levels counts zero as one level, so levels - 1 clusters are fitted to the nonzero entries
    (fewer when there are fewer distinct nonzero values)."""
    if levels < 2:
        raise ValueError(f"quantise needs levels >= 2 (zero plus at least one value), got {levels}")
    nz = W != 0
    vals = W[nz]
    k = min(levels - 1, np.unique(vals).size)
    if k == 0:
        return W.copy(), np.zeros(0)
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(vals.reshape(-1, 1))
    centres = km.cluster_centers_.ravel()
    out = np.zeros_like(W)
    out[nz] = centres[km.labels_]
    return out, np.sort(centres)


@dataclass
class SimplifyReport:
    """Per layer and head: the thresholds, the surviving fraction and the quantised levels."""

    tau_qk: list[list[float]]
    tau_vp: list[list[float]]
    density_qk: list[list[float]]
    density_vp: list[list[float]]
    levels_qk: list[list[list[float]]]
    levels_vp: list[list[list[float]]]

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def simplify_products(prods: LayerProducts, *, factor: float = 1.5, qk_levels: int = 2,
                      vp_levels: int = 3, quantize: bool = True,
                      seed: int = 0) -> tuple[LayerProducts, SimplifyReport]:
    """Sparsified (and, with quantize, quantised) copy of every product; biases unchanged."""
    rep = SimplifyReport([], [], [], [], [], [])
    qk_out, vp_out = [], []
    for l in range(prods.layers):
        row_qk, row_vp = [], []
        for tag, mats, levels, row in (("qk", prods.W_QK[l], qk_levels, row_qk),
                                       ("vp", prods.W_VP[l], vp_levels, row_vp)):
            taus, dens, lev = [], [], []
            for W in mats:
                Ws, tau = sparsify(W, factor)
                centres = np.zeros(0)
                if quantize:
                    Ws, centres = quantise(Ws, levels, seed)
                row.append(Ws)
                taus.append(tau)
                dens.append(float(np.count_nonzero(Ws)) / Ws.size)
                lev.append([float(c) for c in centres])
            getattr(rep, f"tau_{tag}").append(taus)
            getattr(rep, f"density_{tag}").append(dens)
            getattr(rep, f"levels_{tag}").append(lev)
        qk_out.append(row_qk)
        vp_out.append(row_vp)
    bias = None if prods.bias_qk is None else [[b.copy() for b in row] for row in prods.bias_qk]
    return LayerProducts(qk_out, vp_out, bias), rep
