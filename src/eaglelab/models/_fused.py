"""Fused forward and hand-written backward of the training loss ("Gram" form).

The loss of K stacked models on their own prompts, L layers, H heads.  Because the mask
lets every row read only the d key rows zk (per prompt d x W), one layer is

    Z <- Z + sum_h Z W_QK_h (zk^T zk) W_VP_h = Z + (Z G) M V,   M = zk^T zk (W x W),

with G = [W_QK_1 ... W_QK_H] (W x HW), V = [W_VP_1; ...; W_VP_H] (HW x W) and the heads
stacked along the row axis of Q = Z G.  Contracting over the keys through the per-prompt
Gram matrix M costs d W^2 once per layer instead of 2 T H d W for scores and values.
M is formed as Zm^T Zm with Zm = Z with its query rows zeroed, so every per-prompt product
is a whole contiguous tensor (torch falls back to a per-matrix loop for strided outputs).

Column groups.  When the heads fall into groups g that each read only the columns R_g
(the distributed regime: a machine's heads read J_mu and the n' shared columns), W_QK_h
and W_VP_h vanish outside the rows (and, for W_QK_h, the columns) R_g, so group g needs only
Z[:, R_g] and the R x R block M_g = Zm[:, R_g]^T Zm[:, R_g] of the Gram matrix:

    Z <- Z + sum_g (Z[:, R_g] G_g) M_g V_g,   G_g (R x H_g R), V_g (H_g R x W).

`Gram` holds the factors, stacked as G (K, L, groups, R, H_g R), V (K, L, groups, H_g R, W)
and cols (groups, R) or None (one group reading every column, R = W).  In the distributed
regime this does (R/W)^2 of the work of the zero-padded W x W products.

Forward per layer and group:  Q = Z_g G_g (+ the query bias),  P = Q M_g,
Z' = Z + sum_g P V_g; the last layer computes only the query rows' D-slot columns.
Backward (dZ' given): dV_g = P^T dZ', dP = dZ' V_g^T, dQ = dP M_g, dG_g = Z_g^T dQ, and for
layers > 0 also dM = Q^T dP and dZ[:, R_g] += dQ G_g^T + Zm_g (dM + dM^T) (on top of
dZ').  The batch is processed in chunks and each chunk's backward runs straight after its
forward (the loss is the graph's only output, so its gradient with respect to G, V, bias
is known up to the scalar factor autograd passes in later); activations never leave the
cache and are never all alive at once.  Autograd handles only the small map
theta -> (G, V, bias) outside this function.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["Gram", "fused_loss", "fused_flops_per_sample", "gram_states", "head_update"]


class Gram(NamedTuple):
    """The stacked factors of the Gram-form kernels.

    G : (K, L, groups, R, H_g R); V : (K, L, groups, H_g R, W) with removed heads zero;
    bias : (K, L, H, 2, W) query biases mapped to key space, or None (one group only);
    cols : (groups, R) long, the columns each group reads, or None (one group, R = W)."""

    G: torch.Tensor
    V: torch.Tensor
    bias: torch.Tensor | None = None
    cols: torch.Tensor | None = None

    def layers_from(self, l: int) -> Gram:
        """The factors of layers l, l+1, ... (a model that starts at layer l)."""
        return Gram(self.G[:, l:], self.V[:, l:],
                    None if self.bias is None else self.bias[:, l:], self.cols)

    def seed(self, k: int) -> Gram:
        """The factors of seed position k alone (leading axis of length 1)."""
        return Gram(self.G[k:k + 1], self.V[k:k + 1],
                    None if self.bias is None else self.bias[k:k + 1], self.cols)


def fused_flops_per_sample(d: int, dp: int, n: int, W: int, H: int, L: int,
                           R: int | None = None, groups: int = 1) -> tuple[int, int]:
    """(forward, backward) matrix-product FLOPs per prompt and seed of this kernel; R is
    the columns a group reads (W when None), H the heads of all groups together."""
    T, no, R = d + dp, W - n, W if R is None else R
    HR = H * R                                            # all groups' Q width together
    gram = groups * T * R * R
    inner_f = 2 * (gram + T * HR * R + T * HR * R + T * HR * W)
    last_f = 2 * (gram + dp * HR * R + dp * HR * R + dp * HR * no)
    last_b = 2 * (2 * dp * HR * no + 2 * dp * HR * R)
    if L > 1:
        last_b += 2 * (2 * dp * HR * R + 2 * gram)
    inner_b = 2 * (2 * T * HR * W + 4 * T * HR * R + 2 * gram)   # layers > 0 (need dZ)
    first_b = 2 * (2 * T * HR * W + 2 * T * HR * R)              # dV, dP, dQ, dG only
    fwd = (L - 1) * inner_f + last_f
    bwd = last_b + max(L - 2, 0) * inner_b + (first_b if L > 1 else 0)
    return fwd, bwd


def _read(X: torch.Tensor, cols: torch.Tensor | None, g: int) -> torch.Tensor:
    """Group g's columns of X (..., W): X itself for the one all-column group."""
    return X if cols is None else X[..., cols[g]]


def _write(dX: torch.Tensor, cols: torch.Tensor | None, g: int, part: torch.Tensor) -> None:
    """dX (..., W)[..., R_g] += part."""
    if cols is None:
        dX += part
    else:
        dX.index_add_(dX.dim() - 1, cols[g], part)


def _forward(Z0, D, gram: Gram, d, n):
    """Forward of one chunk of prompts Z0 (K, B, T, W); returns (err, saved).  With one
    all-column group the operations and their order are those of the ungrouped kernel
    (bit-identical results)."""
    G, V, bias, cols = gram
    K, B, T, W = Z0.shape
    L, groups, R, HgR = G.shape[1], G.shape[2], G.shape[3], G.shape[-1]
    Hg, KB, dp = HgR // R, K * B, T - d
    rowmask = torch.zeros(1, T, 1, dtype=Z0.dtype, device=Z0.device)
    rowmask[:, :d] = 1
    Z = Z0.reshape(KB, T, W)
    saved = []
    for l in range(L - 1):
        Zm = Z * rowmask                                             # query rows zeroed
        Z_new = None
        per_group = []
        for g in range(groups):
            Zg, Zmg = _read(Z, cols, g), _read(Zm, cols, g)          # (KB, T, R)
            M = torch.bmm(Zmg.transpose(1, 2), Zmg)                  # (KB, R, R)
            Q = torch.bmm(Zg.reshape(K, B * T, R), G[:, l, g])       # (K, BT, Hg R)
            if bias is not None:
                _add_bias(Q.view(K, B, T, HgR), bias[:, l], d)
            P = torch.bmm(Q.view(KB, T * Hg, R), M)                  # (KB, T Hg, R)
            Z_new = _accumulate(Z_new, Z.view(K, B * T, W), P.view(K, B * T, HgR),
                                V[:, l, g])
            per_group.append((Zg, Zmg, M, Q, P))
        saved.append(per_group)
        Z = Z_new.view(KB, T, W)
    # last layer: the d' query rows and the n' columns of the D slot only
    Zm = Z * rowmask
    Zq = Z[:, d:].reshape(K, B * dp, W)
    out = None
    per_group = []
    for g in range(groups):
        Zmg, Zqg = _read(Zm, cols, g), _read(Zq, cols, g)
        M = torch.bmm(Zmg.transpose(1, 2), Zmg)
        Qq = torch.bmm(Zqg, G[:, L - 1, g])
        if bias is not None:
            Qq += bias[:, L - 1, :, 1].reshape(K, 1, HgR)
        Pq = torch.bmm(Qq.view(KB, dp * Hg, R), M)
        out = _accumulate(out, Zq[:, :, n:], Pq.view(K, B * dp, HgR), V[:, L - 1, g, :, n:])
        per_group.append((Zqg, Zmg, M, Qq, Pq))
    err = out.neg_().sub_(D.reshape(K, B * dp, W - n))              # prediction - D
    saved.append(per_group)
    return err, saved


def _accumulate(acc, base, P, V):
    """base + P V for the first group (acc None), else acc += P V."""
    return torch.baddbmm(base, P, V) if acc is None else acc.baddbmm_(P, V)


def _add_dz(dZ, cols, g, dQ, Gl, Zmg, dM) -> None:
    """dZ (KB, T, W)[..., R_g] += dQ G_g^T + Zm_g (dM + dM^T) (dQ None: only the M term),
    in the ungrouped kernel's order when there is one all-column group."""
    K = Gl.shape[0]
    if cols is None:
        if dQ is not None:
            dZ.view(K, -1, dZ.shape[-1]).baddbmm_(dQ, Gl.transpose(1, 2))
        dZ.baddbmm_(Zmg, dM).baddbmm_(Zmg, dM.transpose(1, 2))
        return
    part = torch.bmm(Zmg, dM).baddbmm_(Zmg, dM.transpose(1, 2))
    if dQ is not None:
        part.view(K, -1, part.shape[-1]).baddbmm_(dQ, Gl.transpose(1, 2))
    dZ.index_add_(2, cols[g], part)


def _backward(saved, dout, gram: Gram, d, n, dG, dV, dbias):
    """Backward of one chunk given dout = d loss / d out (K, B d', n'); adds into dG, dV
    and dbias (shaped like G, V, bias).  Every group's dV, dP, dG of a layer are formed
    from that layer's incoming dZ before dZ is updated in place."""
    G, V, bias, cols = gram
    K, L, groups, R, HgR = G.shape
    Hg = HgR // R
    W = V.shape[-1]
    KB, T = saved[-1][0][1].shape[:2]                               # Zm_g (KB, T, R)
    B, dp = KB // K, T - d
    Bdp = dout.shape[1]
    last = []
    for g, (Zqg, _, M, _, Pq) in enumerate(saved[-1]):
        Gl, Vl = G[:, L - 1, g], V[:, L - 1, g]
        dV[:, L - 1, g, :, n:].baddbmm_(Pq.view(K, Bdp, HgR).transpose(1, 2), dout)
        dPq = torch.bmm(dout, Vl[:, :, n:].transpose(1, 2)).view(KB, dp * Hg, R)
        dQq = torch.bmm(dPq, M).view(K, Bdp, HgR)
        dG[:, L - 1, g].baddbmm_(Zqg.transpose(1, 2), dQq)
        if bias is not None:
            dbias[:, L - 1, :, 1] += dQq.sum(dim=1).view(K, -1, W)
        last.append((dPq, dQq))
    if L == 1:
        return
    dZq = dout.new_zeros(K, Bdp, W)
    for g, (_, dQq) in enumerate(last):
        _write(dZq, cols, g, torch.bmm(dQq, G[:, L - 1, g].transpose(1, 2)))
    dZq[:, :, n:] += dout
    dZ = dout.new_zeros(KB, T, W)
    dZ[:, d:] = dZq.view(KB, dp, W)
    for g, ((_, Zmg, _, Qq, _), (dPq, _)) in enumerate(zip(saved[-1], last, strict=True)):
        dM = torch.bmm(Qq.view(KB, dp * Hg, R).transpose(1, 2), dPq)
        _add_dz(dZ, cols, g, None, G[:, L - 1, g], Zmg, dM)
    for l in range(L - 2, -1, -1):
        dZf = dZ.view(K, B * T, W)
        pending = []
        for g, (Zg, Zmg, M, Q, P) in enumerate(saved[l]):
            Gl, Vl = G[:, l, g], V[:, l, g]
            dV[:, l, g].baddbmm_(P.view(K, B * T, HgR).transpose(1, 2), dZf)
            dP = torch.bmm(dZf, Vl.transpose(1, 2)).view(KB, T * Hg, R)
            dQ = torch.bmm(dP, M).view(K, B * T, HgR)
            dG[:, l, g].baddbmm_(Zg.reshape(K, B * T, R).transpose(1, 2), dQ)
            if bias is not None:
                q = dQ.view(K, B, T, -1, W)
                dbias[:, l, :, 0] += q[:, :, :d].sum(dim=(1, 2))
                dbias[:, l, :, 1] += q[:, :, d:].sum(dim=(1, 2))
            if l > 0:
                dM = torch.bmm(Q.view(KB, T * Hg, R).transpose(1, 2), dP)
                pending.append((g, dQ, Gl, Zmg, dM))
        for g, dQ, Gl, Zmg, dM in pending:                           # dZ' -> dZ in place
            _add_dz(dZ, cols, g, dQ, Gl, Zmg, dM)


class _FusedLoss(torch.autograd.Function):
    """Loss and, when needed, its gradient in one pass over chunks of the batch: each
    chunk's backward runs right after its forward, while its activations are still in
    cache; backward only scales the stored gradients by the incoming gloss."""

    @staticmethod
    def forward(ctx, Z0, D, G, V, bias, cols, d, n, chunk, need_grad):
        K, B, T, W = Z0.shape
        dp, npr = T - d, W - n
        scale = 1.0 / (B * dp * npr)
        gram = Gram(G, V, bias, cols)
        total = torch.zeros(K, dtype=Z0.dtype, device=Z0.device)
        grads = None
        if need_grad:
            grads = (torch.zeros_like(G), torch.zeros_like(V),
                     None if bias is None else torch.zeros_like(bias))
        for a in range(0, B, chunk):
            err, saved = _forward(Z0[:, a:a + chunk], D[:, a:a + chunk], gram, d, n)
            total += err.square().sum(dim=(1, 2))
            if need_grad:
                _backward(saved, err * (-2.0 * scale), gram, d, n, *grads)
            del saved, err
        if need_grad:
            ctx.save_for_backward(*(g for g in grads if g is not None))
        ctx.has_bias = bias is not None
        return total * scale

    @staticmethod
    def backward(ctx, gloss):
        grads = ctx.saved_tensors
        if not grads:
            raise RuntimeError("fused_loss was evaluated without gradients (need_grad=False)")
        dG = grads[0] * gloss.view(-1, 1, 1, 1, 1)
        dV = grads[1] * gloss.view(-1, 1, 1, 1, 1)
        dbias = grads[2] * gloss.view(-1, 1, 1, 1, 1) if ctx.has_bias else None
        return None, None, dG, dV, dbias, None, None, None, None, None


def _add_bias(Q: torch.Tensor, b: torch.Tensor, d: int) -> None:
    """Q (K, B, T, HW) += the query bias b (K, H, 2, W) (rows < d: group 0)."""
    K, H, _, W = b.shape
    Q[:, :, :d] += b[:, :, 0].reshape(K, 1, 1, H * W)
    Q[:, :, d:] += b[:, :, 1].reshape(K, 1, 1, H * W)


def fused_loss(Z0: torch.Tensor, D: torch.Tensor, gram: Gram, d: int, n: int,
               chunk: int = 1024) -> torch.Tensor:
    """Per-seed MSE (K,) of the L-layer model on prompts Z0 (K, B, T, W) against D
    (K, B, d', n') with the factors `gram`.  Gradients flow to G, V and bias only (the
    prompts are data); they are computed during the forward pass, chunk by chunk, when
    autograd will need them."""
    if gram.bias is not None and gram.cols is not None:
        raise ValueError("query biases are only supported with one all-column group")
    need_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (gram.G, gram.V, gram.bias))
    return _FusedLoss.apply(Z0, D, gram.G, gram.V, gram.bias, gram.cols, d, n,
                            max(int(chunk), 1), need_grad)


@torch.no_grad()
def gram_states(Z0: torch.Tensor, gram: Gram, d: int
                ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """The activations [Z_0, ..., Z_L] (each (K, B, T, W), every row) of the L-layer model
    and the per-prompt Gram blocks its layers read, Ms[l][g] (K, B, R, R); the same
    arithmetic as the forward of `fused_loss`, without gradients."""
    G, V, bias, cols = gram
    K, B, T, W = Z0.shape
    groups, R, HgR = G.shape[2], G.shape[3], G.shape[-1]
    Z, Zs, Ms = Z0, [Z0], []
    for l in range(G.shape[1]):
        zk = Z[:, :, :d]
        Z_new = Z.reshape(K, B * T, W).clone()
        blocks = []
        for g in range(groups):
            zkg = _read(zk, cols, g)
            M = torch.matmul(zkg.transpose(-1, -2), zkg)             # (K, B, R, R)
            Q = torch.matmul(_read(Z, cols, g).reshape(K, B * T, R), G[:, l, g])
            if bias is not None:
                _add_bias(Q.view(K, B, T, HgR), bias[:, l], d)
            P = torch.matmul(Q.view(K, B, T * HgR // R, R), M).view(K, B * T, HgR)
            Z_new.baddbmm_(P, V[:, l, g])
            blocks.append(M)
        Z = Z_new.view(K, B, T, W)
        Zs.append(Z)
        Ms.append(blocks)
    return Zs, Ms


@torch.no_grad()
def head_update(Z: torch.Tensor, Ms: list[torch.Tensor], gram: Gram, l: int, h: int,
                d: int) -> torch.Tensor:
    """What head h of layer l adds to Z (K, B, T, W) given that layer's Gram blocks Ms
    (from `gram_states`): Z W_QK_h M W_VP_h (plus the head's query bias), (K, B, T, W).
    Heads are numbered group-major, as in the model."""
    G, V, bias, cols = gram
    K, B, T, W = Z.shape
    R, Hg = G.shape[3], G.shape[-1] // G.shape[3]
    g, j = divmod(h, Hg)
    part = slice(j * R, (j + 1) * R)
    Q = torch.matmul(_read(Z, cols, g).reshape(K, B * T, R), G[:, l, g, :, part])
    Q = Q.view(K, B, T, R)
    if bias is not None:
        _add_bias(Q, bias[:, l, h:h + 1], d)
    P = torch.matmul(Q, Ms[g])                                        # (K, B, T, R)
    return torch.matmul(P.view(K, B * T, R), V[:, l, g, part]).view(K, B, T, W)
