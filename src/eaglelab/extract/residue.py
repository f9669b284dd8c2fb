"""Where a model departs from its extracted algorithm: the residue of each weight block.

Every head's products split into the structure the extracted algorithm reads and a residue.
The structure: W_QK's top-left block -> a1 I (compute-limited: a1 S S^T; distributed: a1 I
on the head's own columns J_mu), W_VP's top-left block -> a2 I (compute-limited: the rank-r
value map a2 R; distributed: a2 I on the head's own columns), W_VP's bottom-right block ->
c I, every other block (a distributed head's writes on other machines' columns among them)
and the query biases -> 0.  The extraction gives a layer one A step and one C step
(distributed: the means over the machines' heads), so the heads' a2 and c are set to match.
Run in product form, the structure IS the extracted algorithm (the tests check this against
`eagle_layers`).

`residue_attribution` puts one block's residue back at a time (all heads, all layers) and
reports the per-layer fidelity to the model.  A block whose residue closes most of the gap
is where the model computes something the algorithm does not describe; if no single block
does, the gap is spread (co-adapted residue in several blocks).
"""

from __future__ import annotations

import numpy as np
import torch

from eaglelab.extract.fidelity import layer_fidelity
from eaglelab.extract.products import LayerProducts, products_forward
from eaglelab.extract.scaling import head_scales

__all__ = ["BLOCKS", "structured_head", "structured_products", "residue_attribution"]

BLOCKS = ("qk_tl", "qk_tr", "qk_bl", "qk_br", "vp_tl", "vp_tr", "vp_bl", "vp_br")


def _block(name: str, n: int) -> tuple[slice, slice]:
    """Row and column slices of block `name` ("qk_tl", ..., "vp_br") of a W x W product."""
    top, left = name[3] == "t", name[4] == "l"
    return (slice(None, n) if top else slice(n, None)), (slice(None, n) if left else slice(n, None))


def structured_head(W_QK: np.ndarray, W_VP: np.ndarray, n: int, *, rank: int | None = None,
                    columns=None) -> tuple[np.ndarray, np.ndarray]:
    """The structured part (P, Q) of one head's products (see the module docstring).
    rank: compute-limited sketch rank; columns: a distributed head's machine block J_mu."""
    P, Q = np.zeros_like(W_QK), np.zeros_like(W_VP)
    h = head_scales(W_QK, W_VP, n, columns, rank)
    if rank is not None:
        P[:n, :n] = h["a1"] * (h["S"] @ h["S"].T)
        Q[:n, :n] = h["a2"] * h["R"]
    elif columns is not None:
        J = np.asarray(columns)
        P[J, J] = h["a1"]
        Q[J, J] = h["a2"]
    else:
        P[np.arange(n), np.arange(n)] = h["a1"]
        Q[np.arange(n), np.arange(n)] = h["a2"]
    k = np.arange(n, W_VP.shape[0])
    Q[k, k] = h["c"]
    return P, Q


def structured_products(prods: LayerProducts, regime: str, n: int, *, r: int | None = None,
                        partition=None) -> LayerProducts:
    """Every head replaced by its structured part (heads of the distributed regime are
    machine-major, one group of heads per machine); no biases."""
    qk, vp = [], []
    for l in range(prods.layers):
        H = len(prods.W_QK[l])
        row_qk, row_vp = [], []
        for h, (Wqk, Wvp) in enumerate(zip(prods.W_QK[l], prods.W_VP[l], strict=True)):
            kw: dict = {}
            if regime == "compute-limited":
                kw["rank"] = r
            elif regime == "distributed":
                kw = {"columns": partition[h * len(partition) // H]}
            P, Q = structured_head(Wqk, Wvp, n, **kw)
            row_qk.append(P)
            row_vp.append(Q)
        if regime == "distributed":   # one A and one C step per layer, averaged over heads
            cols = [np.asarray(partition[h * len(partition) // H]) for h in range(H)]
            a1 = [float(np.trace(P[np.ix_(J, J)])) / len(J) for P, J in
                  zip(row_qk, cols, strict=True)]
            step_A = np.mean([a * Q[J[0], J[0]] for a, Q, J in zip(a1, row_vp, cols, strict=True)])
            step_C = np.mean([a * Q[n, n] for a, Q in zip(a1, row_vp, strict=True)])
            k = np.arange(n, row_vp[0].shape[0])
            for a, Q, J in zip(a1, row_vp, cols, strict=True):
                Q[J, J] = step_A / a if a != 0 else 0.0
                Q[k, k] = step_C / a if a != 0 else 0.0
        qk.append(row_qk)
        vp.append(row_vp)
    return LayerProducts(qk, vp, None)


def _with_residue(structured: LayerProducts, prods: LayerProducts, blocks, n: int,
                  bias: bool) -> LayerProducts:
    qk = [[P.copy() for P in row] for row in structured.W_QK]
    vp = [[Q.copy() for Q in row] for row in structured.W_VP]
    for name in blocks:
        dst, src = (qk, prods.W_QK) if name.startswith("qk") else (vp, prods.W_VP)
        rows, cols = _block(name, n)
        for l, row in enumerate(dst):
            for h, W in enumerate(row):
                W[rows, cols] = src[l][h][rows, cols]
    return LayerProducts(qk, vp, prods.bias_qk if bias else None)


@torch.no_grad()
def residue_attribution(prods: LayerProducts, Z0: torch.Tensor, Z_model: list[torch.Tensor],
                        regime: str, d: int, n: int, *, r: int | None = None,
                        partition=None, tasks=None) -> dict[str, list[float]]:
    """Per-layer fidelity to the model (activations Z_model on prompts Z0, averaged over the
    prompts of the boolean mask `tasks` when given) of: the structure
    alone ("structured", = the extracted algorithm), the structure with one block's learned
    residue restored (one entry per name in BLOCKS), with the query biases restored
    ("bias", estimation only), and with the residue of the structured blocks (W_QK
    top-left, W_VP top-left and bottom-right) restored together ("in_structure")."""
    base = structured_products(prods, regime, n, r=r, partition=partition)
    out = {"structured": layer_fidelity(Z_model, products_forward(Z0, base, d), tasks)}
    variants: dict[str, tuple[tuple[str, ...], bool]] = {b: ((b,), False) for b in BLOCKS}
    variants["in_structure"] = (("qk_tl", "vp_tl", "vp_br"), False)
    if prods.bias_qk is not None:
        variants["bias"] = ((), True)
    for name, (blocks, bias) in variants.items():
        Zs = products_forward(Z0, _with_residue(base, prods, blocks, n, bias), d)
        out[name] = layer_fidelity(Z_model, Zs, tasks)
    return out
