"""Per-layer weight products of a trained model, and a forward pass that runs on them.

W_QK = Wq Wk^T and W_VP = Wv Wp^T (W x W, W = n + n') are what a linear-attention layer
actually computes with; extraction works on them.  `products_forward` is the layer written
in product form (float64, batched), so a *simplified* set of products (sparsified,
quantised, replaced by a canonical structure) can be evaluated exactly like the model:

    Z <- Z + sum_h ((Z W_QK_h + 1_g bias_h,g) Z_keys^T) Z_keys W_VP_h,

Z_keys = the first d rows (the mask), bias_h,g the estimation regime's query bias of token
group g (first d rows / last d' rows) mapped to key space (b Wk^T).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["LayerProducts", "model_products", "products_forward"]


@dataclass
class LayerProducts:
    """One seed's products: W_QK[l][h], W_VP[l][h] as (W x W) float64 arrays, optional
    bias_qk[l][h] (2 x W).  `heads` lists, per layer, the kept head indices."""

    W_QK: list[list[np.ndarray]]
    W_VP: list[list[np.ndarray]]
    bias_qk: list[list[np.ndarray]] | None = None

    @property
    def layers(self) -> int:
        return len(self.W_QK)

    def as_tensors(self) -> dict[str, torch.Tensor]:
        """Stacked float64 tensors (L, H, W, W) (+ bias (L, H, 2, W))."""
        out = {"W_QK": torch.tensor(np.array(self.W_QK)), "W_VP": torch.tensor(np.array(self.W_VP))}
        if self.bias_qk is not None:
            out["bias_qk"] = torch.tensor(np.array(self.bias_qk))
        return out


def model_products(model, k: int = 0) -> LayerProducts:
    """Seed position k's products, with masked (pruned) heads removed."""
    with torch.no_grad():
        prods = {name: v[k].detach().double().cpu().numpy() for name, v in model.products().items()}
        mask = model.head_mask[k].detach().cpu().numpy()
    L = prods["W_QK"].shape[0]
    keep = [np.flatnonzero(mask[l] != 0) for l in range(L)]
    qk = [[prods["W_QK"][l, h] for h in keep[l]] for l in range(L)]
    vp = [[prods["W_VP"][l, h] for h in keep[l]] for l in range(L)]
    bias = None
    if "bias_qk" in prods:
        bias = [[prods["bias_qk"][l, h] for h in keep[l]] for l in range(L)]
    return LayerProducts(qk, vp, bias)


def products_forward(Z0: torch.Tensor, prods: LayerProducts, d: int) -> list[torch.Tensor]:
    """[Z_0, ..., Z_L] (each (B, T, W), float64) of the product-form model on prompts Z0."""
    t = prods.as_tensors()
    Z = Z0.to(torch.float64)
    T = Z.shape[-2]
    out = [Z]
    for l in range(prods.layers):
        keys = Z[:, :d, :]
        upd = torch.zeros_like(Z)
        for h in range(t["W_QK"].shape[1]):
            q = Z @ t["W_QK"][l, h]                                   # (B, T, W)
            if "bias_qk" in t:
                b = t["bias_qk"][l, h]
                q = q + torch.cat([b[0].expand(d, -1), b[1].expand(T - d, -1)], dim=0)
            S = q @ keys.transpose(-1, -2)                           # (B, T, d)
            upd = upd + S @ (keys @ t["W_VP"][l, h])
        Z = Z + upd
        out.append(Z)
    return out
