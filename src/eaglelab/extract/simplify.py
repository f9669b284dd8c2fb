"""Sparsify and quantise weight products (brief section 3, step 2).

Sparsify: drop entries with |w| < tau, tau = factor * ||W||_1 / #entries (factor 1.5).
Quantise: the surviving entries are clustered into `levels` values by 1-D k-means
(scikit-learn), one of which is zero: W_QK uses 2 levels ({0, a1}) and W_VP 3 ({0, a2, a3})
in the paper.  Zero is a level like the others - a survivor nearer zero than to every
fitted value becomes zero - so a learned off-structure entry just above tau is not forced
onto the structured level.  (Fitting levels - 1 values to the survivors alone does force
it, and on trained models that simplification diverges on some tasks: measured in
docs/demo.md.)  `simplify_products` applies both to every head of every layer.
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
    """(W with its nonzero entries replaced by the nearest of `levels` values, one of them
    zero; the nonzero values used, sorted).

    1-D k-means on the nonzero entries plus one zero sample whose weight outweighs them all
    (1e6 times their count), which pins one centre at zero; that centre is then set to
    exactly 0.  Fewer values are fitted when there are fewer distinct entries."""
    if levels < 2:
        raise ValueError(f"quantise needs levels >= 2 (zero plus at least one value), got {levels}")
    nz = W != 0
    vals = W[nz]
    if vals.size == 0:
        return W.copy(), np.zeros(0)
    x = np.r_[vals, 0.0].reshape(-1, 1)
    weight = np.r_[np.ones(vals.size), 1e6 * vals.size]
    k = min(levels, np.unique(x).size)
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x, sample_weight=weight)
    centres = km.cluster_centers_.ravel().copy()
    centres[km.labels_[-1]] = 0.0                  # the zero sample's cluster is the zero level
    labels = km.labels_[:-1]
    out = np.zeros_like(W)
    out[nz] = centres[labels]
    used = np.unique(labels[centres[labels] != 0])
    return out, np.sort(centres[used])


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
