"""Fused forward and hand-written backward of the training loss ("Gram" form).

The loss of K stacked models on their own prompts, L layers, H heads.  Because the mask
lets every row read only the d key rows zk (per prompt d x W), one layer is

    Z <- Z + sum_h Z W_QK_h (zk^T zk) W_VP_h = Z + (Z G) M V,   M = zk^T zk (W x W),

with G = [W_QK_1 ... W_QK_H] (W x HW), V = [W_VP_1; ...; W_VP_H] (HW x W) and the heads
stacked along the row axis of Q = Z G.  Contracting over the keys through the per-prompt
Gram matrix M costs d W^2 once per layer instead of 2 T H d W for scores and values.
M is formed as Zm^T Zm with Zm = Z with its query rows zeroed, so every per-prompt product
has the T x W x W shape of the floor's benchmark (20 x 20 x 20 here) and every output is a
whole contiguous tensor (torch falls back to a per-matrix loop for strided outputs).

Forward per layer:  Q = Z G (+ the group's query bias),  P = Q M,  Z' = Z + P V; the last
layer computes only the query rows' D-slot columns.  Backward (dZ' given):
dV = P^T dZ', dP = dZ' V^T, dQ = dP M, dG = Z^T dQ, and for layers > 0 also
dM = Q^T dP and dZ = dZ' + dQ G^T + Zm (dM + dM^T).  The batch is processed in chunks and
each chunk's backward runs straight after its forward (the loss is the graph's only
output, so its gradient with respect to G, V, bias is known up to the scalar factor
autograd passes in later); activations never leave the cache and are never all alive at
once.  Autograd handles only the small map theta -> (G, V, bias) outside this function.
"""

from __future__ import annotations

import torch

__all__ = ["fused_loss", "fused_flops_per_sample", "gram_states", "head_update"]


def fused_flops_per_sample(d: int, dp: int, n: int, W: int, H: int, L: int) -> tuple[int, int]:
    """(forward, backward) matrix-product FLOPs per prompt and seed of this kernel."""
    T, no = d + dp, W - n
    inner_f = 2 * (T * W * W + 3 * T * H * W * W)
    last_f = 2 * (T * W * W + 2 * dp * H * W * W + dp * H * W * no)
    last_b = 2 * (2 * dp * H * W * no + 2 * dp * H * W * W)
    if L > 1:
        last_b += 2 * (2 * dp * H * W * W + 2 * T * W * W)
    inner_b = 2 * (6 * T * H * W * W + 2 * T * W * W)      # layers > 0 (need dZ)
    first_b = 2 * (4 * T * H * W * W)                      # dV, dP, dQ, dG only
    fwd = (L - 1) * inner_f + last_f
    bwd = last_b + max(L - 2, 0) * inner_b + (first_b if L > 1 else 0)
    return fwd, bwd


def _forward(Z0, D, G, V, bias, d, n):
    """Forward of one chunk of prompts Z0 (K, B, T, W); returns (err, saved)."""
    K, B, T, W = Z0.shape
    L, HW = G.shape[1], G.shape[-1]
    H, KB, dp = HW // W, K * B, T - d
    rowmask = torch.zeros(1, T, 1, dtype=Z0.dtype)
    rowmask[:, :d] = 1
    Z = Z0.reshape(KB, T, W)
    saved = []
    for l in range(L - 1):
        Zm = Z * rowmask                                             # query rows zeroed
        M = torch.bmm(Zm.transpose(1, 2), Zm)                        # zk^T zk (KB, W, W)
        Q = torch.bmm(Z.view(K, B * T, W), G[:, l])                  # (K, BT, HW)
        if bias is not None:
            _add_bias(Q.view(K, B, T, HW), bias[:, l], d)
        P = torch.bmm(Q.view(KB, T * H, W), M)                       # (KB, TH, W)
        Z_new = torch.baddbmm(Z.view(K, B * T, W), P.view(K, B * T, HW), V[:, l])
        saved.append((Z, Zm, M, Q, P))
        Z = Z_new.view(KB, T, W)
    # last layer: the d' query rows and the n' columns of the D slot only
    Zm = Z * rowmask
    M = torch.bmm(Zm.transpose(1, 2), Zm)
    Zq = Z[:, d:].reshape(K, B * dp, W)
    Qq = torch.bmm(Zq, G[:, L - 1])
    if bias is not None:
        Qq += bias[:, L - 1, :, 1].reshape(K, 1, HW)
    Pq = torch.bmm(Qq.view(KB, dp * H, W), M)
    out = torch.baddbmm(Zq[:, :, n:], Pq.view(K, B * dp, HW), V[:, L - 1, :, n:])
    err = out.neg_().sub_(D.reshape(K, B * dp, W - n))              # prediction - D
    saved.append((Z, Zm, M, Zq, Qq, Pq))
    return err, saved


def _backward(saved, dout, G, V, d, n, has_bias, dG, dV, dbias):
    """Backward of one chunk given dout = d loss / d out (K, B d', n'); adds into dG, dV
    and dbias (K, L, ...)."""
    K, L, W, HW = G.shape
    H = HW // W
    Z, Zm, M, Zq, Qq, Pq = saved[-1]
    KB, T = Z.shape[0], Z.shape[1]
    B, dp = KB // K, T - d
    Bdp = dout.shape[1]
    Gl, Vl = G[:, L - 1], V[:, L - 1]
    dV[:, L - 1, :, n:].baddbmm_(Pq.view(K, Bdp, HW).transpose(1, 2), dout)
    dPq = torch.bmm(dout, Vl[:, :, n:].transpose(1, 2)).view(KB, dp * H, W)
    dQq = torch.bmm(dPq, M).view(K, Bdp, HW)
    dG[:, L - 1].baddbmm_(Zq.transpose(1, 2), dQq)
    if has_bias:
        dbias[:, L - 1, :, 1] += dQq.sum(dim=1).view(K, H, W)
    if L == 1:
        return
    dZq = torch.bmm(dQq, Gl.transpose(1, 2))
    dZq[:, :, n:] += dout
    dZ = torch.zeros(KB, T, W, dtype=G.dtype)
    dZ[:, d:] = dZq.view(KB, dp, W)
    dM = torch.bmm(Qq.view(KB, dp * H, W).transpose(1, 2), dPq)
    dZ.baddbmm_(Zm, dM).baddbmm_(Zm, dM.transpose(1, 2))           # through M = zk^T zk
    for l in range(L - 2, -1, -1):
        Z, Zm, M, Q, P = saved[l]
        Gl, Vl = G[:, l], V[:, l]
        dZf = dZ.view(K, B * T, W)
        dV[:, l].baddbmm_(P.view(K, B * T, HW).transpose(1, 2), dZf)
        dP = torch.bmm(dZf, Vl.transpose(1, 2)).view(KB, T * H, W)
        dQ = torch.bmm(dP, M).view(K, B * T, HW)
        dG[:, l].baddbmm_(Z.view(K, B * T, W).transpose(1, 2), dQ)
        if has_bias:
            q = dQ.view(K, B, T, H, W)
            dbias[:, l, :, 0] += q[:, :, :d].sum(dim=(1, 2))
            dbias[:, l, :, 1] += q[:, :, d:].sum(dim=(1, 2))
        if l > 0:
            dM = torch.bmm(Q.view(KB, T * H, W).transpose(1, 2), dP)
            dZf.baddbmm_(dQ, Gl.transpose(1, 2))
            dZ.baddbmm_(Zm, dM).baddbmm_(Zm, dM.transpose(1, 2))


class _FusedLoss(torch.autograd.Function):
    """Loss and, when needed, its gradient in one pass over chunks of the batch: each
    chunk's backward runs right after its forward, while its activations are still in
    cache; backward only scales the stored gradients by the incoming gloss."""

    @staticmethod
    def forward(ctx, Z0, D, G, V, bias, d, n, chunk, need_grad):
        K, B, T, W = Z0.shape
        dp, npr = T - d, W - n
        scale = 1.0 / (B * dp * npr)
        total = torch.zeros(K, dtype=Z0.dtype)
        grads = None
        if need_grad:
            grads = (torch.zeros_like(G), torch.zeros_like(V),
                     None if bias is None else torch.zeros_like(bias))
        for a in range(0, B, chunk):
            err, saved = _forward(Z0[:, a:a + chunk], D[:, a:a + chunk], G, V, bias, d, n)
            total += err.square().sum(dim=(1, 2))
            if need_grad:
                _backward(saved, err * (-2.0 * scale), G, V, d, n, bias is not None, *grads)
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
        w = gloss.view(-1, 1, 1, 1)
        dG, dV = grads[0] * w, grads[1] * w
        dbias = grads[2] * gloss.view(-1, 1, 1, 1, 1) if ctx.has_bias else None
        return None, None, dG, dV, dbias, None, None, None, None


def _add_bias(Q: torch.Tensor, b: torch.Tensor, d: int) -> None:
    """Q (K, B, T, HW) += the group's query bias b (K, H, 2, W) (rows < d: group 0)."""
    K, H, _, W = b.shape
    Q[:, :, :d] += b[:, :, 0].reshape(K, 1, 1, H * W)
    Q[:, :, d:] += b[:, :, 1].reshape(K, 1, 1, H * W)


def fused_loss(Z0: torch.Tensor, D: torch.Tensor, G: torch.Tensor, V: torch.Tensor,
               bias: torch.Tensor | None, d: int, n: int, chunk: int = 1024) -> torch.Tensor:
    """Per-seed MSE (K,) of the L-layer model on prompts Z0 (K, B, T, W) against D
    (K, B, d', n').  G (K, L, W, H W), V (K, L, H W, W), bias (K, L, H, 2, W) or None.
    Gradients flow to G, V and bias only (the prompts are data); they are computed during
    the forward pass, chunk by chunk, when autograd will need them."""
    need_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (G, V, bias))
    return _FusedLoss.apply(Z0, D, G, V, bias, d, n, max(int(chunk), 1), need_grad)


@torch.no_grad()
def gram_states(Z0: torch.Tensor, G: torch.Tensor, V: torch.Tensor, bias: torch.Tensor | None,
                d: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The activations [Z_0, ..., Z_L] (each (K, B, T, W), every row) of the L-layer model
    and the per-prompt Gram matrices [M_0, ..., M_{L-1}] (each (K, B, W, W)) its layers
    read; the same arithmetic as the forward of `fused_loss`, without gradients."""
    K, B, T, W = Z0.shape
    HW = G.shape[-1]
    Z, Zs, Ms = Z0, [Z0], []
    for l in range(G.shape[1]):
        zk = Z[:, :, :d]
        M = torch.matmul(zk.transpose(-1, -2), zk)                   # (K, B, W, W)
        Q = torch.matmul(Z.reshape(K, B * T, W), G[:, l]).view(K, B, T, HW)
        if bias is not None:
            _add_bias(Q, bias[:, l], d)
        P = torch.matmul(Q.view(K, B, T * HW // W, W), M).view(K, B * T, HW)
        Z = torch.baddbmm(Z.reshape(K, B * T, W), P, V[:, l]).view(K, B, T, W)
        Zs.append(Z)
        Ms.append(M)
    return Zs, Ms


@torch.no_grad()
def head_update(Z: torch.Tensor, M: torch.Tensor, G_l: torch.Tensor, V_l: torch.Tensor,
                bias_l: torch.Tensor | None, h: int, d: int) -> torch.Tensor:
    """What head h of one layer adds to Z (K, B, T, W) given the layer's Gram matrices M
    (K, B, W, W): Z W_QK_h M W_VP_h (plus the head's query bias), (K, B, T, W).  G_l
    (K, W, H W), V_l (K, H W, W), bias_l (K, H, 2, W) are the layer's stacked factors."""
    K, B, T, W = Z.shape
    cols = slice(h * W, (h + 1) * W)
    Q = torch.matmul(Z.reshape(K, B * T, W), G_l[:, :, cols]).view(K, B, T, W)
    if bias_l is not None:
        _add_bias(Q, bias_l[:, h:h + 1], d)
    P = torch.matmul(Q, M)                                           # (K, B, T, W)
    return torch.matmul(P.view(K, B * T, W), V_l[:, cols]).view(K, B, T, W)
