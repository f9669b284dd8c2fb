"""Attention-only linear transformer for masked-block completion (brief section 2).

Tokens are the ROWS of Z (T = d + d' tokens of width W = n + n').  One layer, H heads:

    Z <- Z + sum_h ((Z Wq_h)(Z Wk_h)^T (.) M) (Z Wv_h) Wp_h^T,

with M (T x T) one in the first d columns and zero in the last d': every row reads only the
d complete rows ("keys"), so nothing flows from the hidden block into the visible part.  No
softmax, MLP or normalisation.  The estimation regime adds a learned query bias per token
group (first d rows / last d' rows): (Z Wq_h + 1 b_{h,g}^T).

Read-out convention
-------------------
The prompt is Z_0 = [[A, C], [B, 0]] and the **prediction is minus the final D slot**:

    prediction = -Z_L[d:, n:].

Reason: with the EAGLE-structured weights W_QK = Wq Wk^T = diag(a1 I_n, 0) and
W_VP = Wv Wp^T = diag(a2 I_n, a3 I_n') one layer gives
A' = A + a1 a2 A A^T A, B' = B + a1 a2 B A^T A, C' = C + a1 a3 A A^T C and
D' = D + a1 a3 B A^T C; with a1 a2 = -eta rho and a1 a3 = -gamma rho this is EAGLE's UPDATE
(brief section 4) on A, B, C while the D slot receives -gamma rho B A^T C, i.e. it holds
minus EAGLE's D (the convention of von Oswald et al.).  The loss is the MSE between the
prediction and the true D.

Fast path
---------
Per layer the products W_QK = Wq Wk^T and W_VP = Wv Wp^T are formed once per forward (or
the factors are kept when that is cheaper, e.g. r < W), heads are stacked along the token
axis so a layer is four large matrix products whatever H is, the scores are contracted over
the d key rows only (T x d, never T x T), and the last layer computes only the d' query
rows and the n' output columns the loss needs.  A leading seed axis K stacks independent
models (one flat parameter tensor theta of shape (K, P)), so K seeds train in one process
with per-seed gradients that equal K separate runs.  `models.reference.reference_layers`
is the plain float64 loop transcription the tests hold this path to.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from eaglelab.models._fused import Gram, fused_loss
from eaglelab.models.config import ModelConfig
from eaglelab.models.layout import DistributedLayout
from eaglelab.tasks.scale import prompt_scale

__all__ = ["LinearTransformer", "param_shapes", "read_out"]

FORMS = ("auto", "product", "factor")
DIAGONAL = ("diag", "gdpp")     # supports stored as scalars per head (`ModelConfig.support`)


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Shapes (per seed) of the stored parameters, in the order of the flat vector theta.

    wq, wk: (L, H, read_rows, qk_width); wv: (L, H, read_rows, vp_width) - compact
    (n/M + n' local rows) in the distributed regime; wp: (L, H, W, vp_width); bq
    (estimation only): (L, H, 2, qk_width), the query biases of the first d and the last d'
    tokens.
    """
    L, H = config.stored_layers, config.total_heads
    if config.support in DIAGONAL:
        # (q_x, q_y) and (p_x, p_y) per head: W_QK = diag(q_x I_n, q_y I_n'), W_VP likewise
        return {"q_diag": (L, H, 2), "v_diag": (L, H, 2)}
    shapes = {
        "wq": (L, H, config.read_rows, config.qk_width),
        "wk": (L, H, config.read_rows, config.qk_width),
        "wv": (L, H, config.read_rows, config.vp_width),
        "wp": (L, H, config.width, config.vp_width),
    }
    if config.regime == "estimation":
        shapes["bq"] = (L, H, 2, config.qk_width)
    return shapes


def read_out(Z: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """The prediction from a final Z (..., T, W): minus its D slot, -Z[..., d:, n:]."""
    return -Z[..., config.d:, config.n:]


def _flops_qk(form: str, c: ModelConfig, rows: int) -> int:
    W, H, d, k = c.width, c.total_heads, c.d, c.qk_width
    if form == "product":
        return 2 * (rows * W * H * W + H * rows * d * W)
    return 2 * (rows * W * H * k + d * W * H * k + H * rows * d * k)


def _flops_vp(form: str, c: ModelConfig, rows: int, out_cols: int) -> int:
    W, H, d, k = c.width, c.total_heads, c.d, c.vp_width
    if form == "product":
        return 2 * (H * rows * d * W + rows * H * W * out_cols)
    return 2 * (d * W * H * k + H * rows * d * k + rows * H * k * out_cols)


class LinearTransformer(nn.Module):
    """K stacked linear transformers of one architecture (K = number of seeds).

    Parameters
    ----------
    config : ModelConfig.
    seeds : int or sequence of ints.  An int K gives K models initialised from seeds
        0..K-1; a sequence gives one model per listed seed.  Seed s initialises its theta
        from ``torch.Generator().manual_seed(s)`` alone, so the stacked models equal the
        single-seed ones.
    dtype : parameter dtype (float32 for training, float64 for reference checks).
    form : "auto" (cheapest by FLOP count), "product" or "factor" for both the query/key and
        the value/projection side, or a pair (qk_form, vp_form).

    Attributes
    ----------
    theta : nn.Parameter (K, P), all weights of a seed in one row (see `param_shapes`).
    head_mask : buffer (K, L, H) of 0/1; a zero removes that head (pruning by masking).
    """

    def __init__(self, config: ModelConfig, seeds: int | Sequence[int] = 1, *,
                 dtype: torch.dtype = torch.float32,
                 form: str | tuple[str, str] = "auto") -> None:
        super().__init__()
        self.config = config
        seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
        if len(seed_list) == 0:
            raise ValueError("seeds must name at least one seed")
        self.seeds = seed_list
        self.shapes = param_shapes(config)
        self.offsets: dict[str, tuple[int, int]] = {}
        start = 0
        for name, shape in self.shapes.items():
            size = int(np.prod(shape))
            self.offsets[name] = (start, start + size)
            start += size
        self.numel_per_seed = start
        theta = torch.empty(len(seed_list), start, dtype=dtype)
        for k, s in enumerate(seed_list):
            gen = torch.Generator().manual_seed(s)
            theta[k] = torch.randn(start, generator=gen, dtype=torch.float64).to(dtype)
        theta *= config.init_std
        if config.support == "sparse":      # the entries the support removes start (and stay) 0
            W, n = config.width, config.n
            for name, keep_x in (("wq", True), ("wk", True), ("wv", False), ("wp", False)):
                a, b = self.offsets[name]
                view = theta[:, a:b].view(len(seed_list), *self.shapes[name])
                rows = torch.arange(W) < n
                view[..., ~rows if keep_x else rows, :] = 0
        if config.support == "gdpp":        # GD++: q_y = 0 (starts and stays 0)
            a, _ = self.offsets["q_diag"]
            theta[:, a + 1:a + 2 * config.stored_layers * config.total_heads:2] = 0
        if "bq" in self.offsets:
            a, b = self.offsets["bq"]
            theta[:, a:b] = 0
        self.theta = nn.Parameter(theta)
        self.register_buffer(
            "head_mask", torch.ones(len(seed_list), config.layers, config.total_heads,
                                    dtype=dtype))
        self.layout = (DistributedLayout(config.n, config.n_prime, config.machines)
                       if config.regime == "distributed" else None)
        # the columns each machine's heads read (machines, n/M + n'), for the grouped Gram
        # kernel; a buffer, so it follows the model to its device (not saved)
        self.register_buffer("read_columns", None if self.layout is None else torch.as_tensor(
            np.stack([self.layout.local_columns(mu) for mu in range(config.machines)])),
            persistent=False)
        self.set_form(form)

    # construction helpers ------------------------------------------------------------
    @property
    def num_seeds(self) -> int:
        return self.theta.shape[0]

    def set_form(self, form: str | tuple[str, str]) -> None:
        """Choose how each side is evaluated ("auto" = fewest FLOPs per layer)."""
        qk, vp = (form, form) if isinstance(form, str) else form
        for f in (qk, vp):
            if f not in FORMS:
                raise ValueError(f"form {f!r} is not known; use one of {FORMS}")
        c = self.config
        if qk == "auto":
            qk = min(("product", "factor"), key=lambda f: _flops_qk(f, c, c.tokens))
        if vp == "auto":
            vp = min(("product", "factor"), key=lambda f: _flops_vp(f, c, c.tokens, c.width))
        self.qk_form, self.vp_form = qk, vp

    def flops_per_sample(self, full: bool = False) -> int:
        """Forward FLOPs per prompt and seed (matrix products only).

        full=False counts what the fast path executes (last layer: d' query rows, n'
        output columns); full=True counts L complete layers in product form, the plain
        cost of the architecture."""
        c = self.config
        if full:
            return c.layers * (_flops_qk("product", c, c.tokens)
                               + _flops_vp("product", c, c.tokens, c.width))
        inner = _flops_qk(self.qk_form, c, c.tokens) + _flops_vp(self.vp_form, c, c.tokens,
                                                                 c.width)
        last = (_flops_qk(self.qk_form, c, c.d_prime)
                + _flops_vp(self.vp_form, c, c.d_prime, c.n_prime))
        return (c.layers - 1) * inner + last

    def params(self, theta: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Views of theta as named parameters of shape (K, *param_shapes[name])."""
        theta = self.theta if theta is None else theta
        K = theta.shape[0]
        return {name: theta[:, a:b].view(K, *self.shapes[name])
                for name, (a, b) in self.offsets.items()}

    def full_factors(self, theta: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Parameters with the read factors (query, key, value) embedded to full W rows
        (K, L, H, W, k)."""
        p = dict(self.params(theta))
        if self.config.tied:          # one stored layer, used by all: (K, 1, ...) -> (K, L, ...)
            L = self.config.layers
            p = {k: v.expand(v.shape[0], L, *v.shape[2:]) for k, v in p.items()}
        if self.config.support in DIAGONAL:
            return self._diagonal_factors(p)
        if self.layout is not None:
            for name in ("wq", "wk", "wv"):
                p[name] = self.layout.embed_local(p[name], self.config.heads)
        if self.config.support == "sparse":
            for name, rows in self._support_rows().items():
                p[name] = p[name] * rows.to(p[name].dtype)[:, None]
        return p

    def _diagonal_factors(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """support "diag" / "gdpp": Wq = diag(q_x I_n, q_y I_n'), Wk = I, Wv = diag(p_x I_n,
        p_y I_n'), Wp = I (q_y masked to 0 for "gdpp"), each (K, L, H, W, W)."""
        c = self.config
        q, v = p["q_diag"], p["v_diag"]
        if c.support == "gdpp":
            q = q * torch.tensor([1.0, 0.0], dtype=q.dtype, device=q.device)
        group = (torch.arange(c.width, device=q.device) >= c.n).long()   # 0: x, 1: y columns
        eye = torch.eye(c.width, dtype=q.dtype, device=q.device).expand(*q.shape[:3], -1, -1)
        return {"wq": torch.diag_embed(q[..., group]), "wk": eye,
                "wv": torch.diag_embed(v[..., group]), "wp": eye}

    def _support_rows(self) -> dict[str, torch.Tensor]:
        """support="sparse": the rows each factor may use (query/key: the n x columns;
        value/projection: the n' y columns), so W_QK = Wq Wk^T sits on the (x, x) block and
        W_VP = Wv Wp^T on the (y, y) block."""
        c = self.config
        x = (torch.arange(c.width) < c.n).to(self.theta.device)
        return {"wq": x, "wk": x, "wv": ~x, "wp": ~x}

    def products(self, theta: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """W_QK = Wq Wk^T and W_VP = Wv Wp^T per layer and head, (K, L, H, W, W), head mask
        applied to W_VP; for the estimation regime also the query biases mapped to key
        space, b Wk^T, as "bias_qk" (K, L, H, 2, W).  Without `theta` the result is
        detached (for extraction); pass theta to differentiate through it."""
        p = self.full_factors(self.theta.detach() if theta is None else theta)
        out = {"W_QK": p["wq"] @ p["wk"].transpose(-1, -2),
               "W_VP": (p["wv"] @ p["wp"].transpose(-1, -2)) * self.head_mask[..., None, None]}
        if "bq" in p:
            out["bias_qk"] = p["bq"] @ p["wk"].transpose(-1, -2)
        return out

    # forward -------------------------------------------------------------------------
    def _prepare(self, theta: torch.Tensor | None,
                 forms: tuple[str, str] | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        qk_form, vp_form = forms or (self.qk_form, self.vp_form)
        K = (self.theta if theta is None else theta).shape[0]
        L, H, W = c.layers, c.total_heads, c.width
        p = self.full_factors(theta)
        prep: dict[str, torch.Tensor] = {}
        wq, wk = p["wq"], p["wk"]
        if qk_form == "product":
            qk = wq @ wk.transpose(-1, -2)                          # (K, L, H, W, W)
            prep["qk"] = qk.permute(0, 1, 3, 2, 4).reshape(K, L, W, H * W)
            if "bq" in p:
                prep["bias"] = p["bq"] @ wk.transpose(-1, -2)      # (K, L, H, 2, W)
        else:
            kq = wq.shape[-1]
            prep["wq"] = wq.permute(0, 1, 3, 2, 4).reshape(K, L, W, H * kq)
            prep["wk"] = wk.permute(0, 1, 3, 2, 4).reshape(K, L, W, H * kq)
            if "bq" in p:
                prep["bias"] = p["bq"]                              # (K, L, H, 2, kq)
        wp = p["wp"] * self.head_mask[..., None, None]
        if vp_form == "product":
            prep["vp"] = (p["wv"] @ wp.transpose(-1, -2)).reshape(K, L, H * W, W)
        else:
            kv = wp.shape[-1]
            prep["wv"] = p["wv"].permute(0, 1, 3, 2, 4).reshape(K, L, W, H * kv)
            prep["wpT"] = wp.transpose(-1, -2).reshape(K, L, H * kv, W)
        return prep

    def _layer(self, Z: torch.Tensor, prep: dict[str, torch.Tensor], l: int,
               last: bool) -> torch.Tensor:
        """The update of one layer.  Z is (K, B, T, W); returns (K, B, T, W), or for
        last=True only the D slot's update (K, B, d', n')."""
        c = self.config
        K, B, T, W = Z.shape
        d, H, KB = c.d, c.total_heads, K * B
        Zf = Z.view(KB, T, W)
        zk = Zf[:, :d, :]                                            # key rows (view)
        if last:
            Tq = c.d_prime
            Zq = Z[:, :, d:, :].reshape(K, B * Tq, W)
        else:
            Tq = T
            Zq = Z.view(K, B * T, W)
        # scores S (KB, Tq*H, d): heads inner to the query-row axis ---------------------
        if self.qk_form == "product":
            q = torch.matmul(Zq, prep["qk"][:, l])                   # (K, B*Tq, H*W)
            kq = W
        else:
            q = torch.matmul(Zq, prep["wq"][:, l])                   # (K, B*Tq, H*kq)
            kq = q.shape[-1] // H
        if "bias" in prep:
            b = prep["bias"][:, l]                                   # (K, H, 2, kq)
            if last:
                rows = b[:, :, 1, :].reshape(K, 1, 1, H * kq)
            else:
                rows = torch.cat([b[:, :, 0:1, :].expand(K, H, d, kq),
                                  b[:, :, 1:2, :].expand(K, H, T - d, kq)], dim=2)
                rows = rows.permute(0, 2, 1, 3).reshape(K, 1, T, H * kq)
            q = (q.view(K, B, Tq, H * kq) + rows).view(K, B * Tq, H * kq)
        if self.qk_form == "product":
            S = torch.bmm(q.view(KB, Tq * H, W), zk.transpose(1, 2))
        else:
            kk = torch.matmul(zk.reshape(K, B * d, W), prep["wk"][:, l])  # (K, B*d, H*kq)
            if H == 1:
                S = torch.bmm(q.view(KB, Tq, kq), kk.view(KB, d, kq).transpose(1, 2))
            else:
                S = torch.einsum("bthc,bjhc->bthj", q.view(KB, Tq, H, kq),
                                 kk.view(KB, d, H, kq)).reshape(KB, Tq * H, d)
        # values and projection -------------------------------------------------------
        if self.vp_form == "product":
            vp = prep["vp"][:, l]                                    # (K, H*W, W)
            if last:
                vp = vp[..., c.n:]
            P = torch.bmm(S, zk)                                     # (KB, Tq*H, W)
            out = torch.matmul(P.view(K, B * Tq, H * W), vp)
        else:
            wpT = prep["wpT"][:, l]                                  # (K, H*kv, W)
            if last:
                wpT = wpT[..., c.n:]
            v = torch.matmul(zk.reshape(K, B * d, W), prep["wv"][:, l])  # (K, B*d, H*kv)
            kv = v.shape[-1] // H
            if H == 1:
                O = torch.bmm(S, v.view(KB, d, kv))
            else:
                O = torch.einsum("bthj,bjhc->bthc", S.view(KB, Tq, H, d),
                                 v.view(KB, d, H, kv))
            out = torch.matmul(O.reshape(K, B * Tq, H * kv), wpT)
        return out.view(K, B, Tq, -1)

    def _as_batch(self, Z0: torch.Tensor) -> torch.Tensor:
        c = self.config
        if Z0.shape[-2:] != (c.tokens, c.width):
            raise ValueError(f"prompt has trailing shape {tuple(Z0.shape[-2:])}; this model "
                             f"expects (d + d', n + n') = {(c.tokens, c.width)}")
        if Z0.dim() == 3:
            Z0 = Z0.unsqueeze(0).expand(self.num_seeds, *Z0.shape)
        if Z0.dim() != 4 or Z0.shape[0] != self.num_seeds:
            raise ValueError(f"prompt must be (B, T, W) or (K={self.num_seeds}, B, T, W), got "
                             f"{tuple(Z0.shape)}")
        return Z0.to(self.theta.dtype).contiguous()

    def prompt_scale(self, Z0: torch.Tensor) -> torch.Tensor:
        """The per-prompt factor c (...,) the model multiplies its prompts by (1 without
        normalisation; `ModelConfig.normalise`, `tasks.scale`)."""
        c = self.config
        return prompt_scale(Z0, c.d, c.n, c.normalise, c.norm_target)

    def forward(self, Z0: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """Prediction (K, B, d', n') = -Z_L[d:, n:] for prompts Z0 (B, T, W) shared by all
        seeds or (K, B, T, W) per seed.  The prompt's D slot is used as given (normally 0).
        With normalisation the layers run on c Z0 and the prediction is divided by c."""
        c = self.config
        Z = self._as_batch(Z0)
        scale = None
        if c.normalise != "none":
            scale = self.prompt_scale(Z)[..., None, None]
            Z = Z * scale
        prep = self._prepare(theta)
        for l in range(c.layers - 1):
            Z = Z + self._layer(Z, prep, l, last=False)
        upd = self._layer(Z, prep, c.layers - 1, last=True)
        pred = -(Z[:, :, c.d:, c.n:] + upd)
        return pred if scale is None else pred / scale

    def layer_outputs(self, Z0: torch.Tensor, theta: torch.Tensor | None = None
                      ) -> list[torch.Tensor]:
        """[Z_0, Z_1, ..., Z_L], each (K, B, T, W): every layer's full activations (the D
        slot holds minus the running prediction).  With normalisation these are the
        activations of the scaled prompts c Z0 the layers see (Z_0 = c Z0)."""
        Z = self._as_batch(Z0)
        if self.config.normalise != "none":
            Z = Z * self.prompt_scale(Z)[..., None, None]
        prep = self._prepare(theta)
        out = [Z]
        for l in range(self.config.layers):
            Z = Z + self._layer(Z, prep, l, last=False)
            out.append(Z)
        return out

    def loss(self, Z0: torch.Tensor, D: torch.Tensor, theta: torch.Tensor | None = None,
             fused: bool = True, chunk: int = 1024) -> torch.Tensor:
        """Per-seed MSE (K,) between the prediction and the true D ((B, d', n') or
        (K, B, d', n')).  With normalisation it is the MSE of the scaled problem the layers
        solve, (c Z0, c D) with c held constant - the training loss of a normalised model.

        fused=True evaluates it with the fused Gram-form kernel and its hand-written
        backward (`_fused.py`, the training path); fused=False through `forward` and
        autograd.  `chunk` is the fused kernel's batch chunk (cache locality only)."""
        if not fused:
            Z, D = self._scaled(Z0, D)
            err = self._unnormalised().forward(Z, theta) - D
            return err.square().mean(dim=(1, 2, 3))
        Z, D, gram = self.gram_inputs(Z0, D, theta)
        c = self.config
        # one seed at a time: the K seeds share no work, and a single seed's activations
        # stay in cache (stacking the seeds in every GEMM is slower: benchmarks/bench_train.py)
        losses = [fused_loss(Z[k:k + 1], D[k:k + 1].contiguous(), gram.seed(k), c.d, c.n,
                             chunk)
                  for k in range(Z.shape[0])]
        return losses[0] if len(losses) == 1 else torch.cat(losses)

    def _scaled(self, Z0: torch.Tensor, D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Z, D) per seed, (K, B, T, W) and (K, B, d', n'), in the model's dtype and
        multiplied by the prompt scale of a normalised model."""
        Z = self._as_batch(Z0)
        D = D.to(self.theta.dtype)
        if D.dim() == 3:
            D = D.unsqueeze(0).expand(self.num_seeds, *D.shape)
        if self.config.normalise != "none":
            scale = self.prompt_scale(Z)[..., None, None]
            Z, D = Z * scale, D * scale
        return Z, D

    def gram_inputs(self, Z0: torch.Tensor, D: torch.Tensor, theta: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, Gram]:
        """What the Gram-form kernels (`_fused`) take: (Z, D) as `loss` scores them and the
        stacked factors (`_fused.Gram`), with removed heads zero in V.  In the distributed
        regime every machine's heads form one column group reading R_mu = J_mu + the
        shared columns, with the compact R_mu x R_mu products (no zero padding)."""
        Z, D = self._scaled(Z0, D)
        return Z, D, self._gram(theta)

    def _gram(self, theta: torch.Tensor | None) -> Gram:
        if self.layout is None:
            prep = self._prepare(theta, ("product", "product"))
            return Gram(prep["qk"].unsqueeze(2), prep["vp"].unsqueeze(2), prep.get("bias"))
        c = self.config
        p = self.params(theta)
        K, L, H, R = p["wq"].shape[:4]
        M, Hm, W = c.machines, c.heads, c.width
        qk = p["wq"] @ p["wk"].transpose(-1, -2)                    # (K, L, H, R, R)
        G = qk.view(K, L, M, Hm, R, R).permute(0, 1, 2, 4, 3, 5).reshape(K, L, M, R, Hm * R)
        wp = p["wp"] * self.head_mask[..., None, None]
        V = (p["wv"] @ wp.transpose(-1, -2)).reshape(K, L, M, Hm * R, W)
        return Gram(G, V, None, self.read_columns)

    def _unnormalised(self) -> LinearTransformer:
        """self, or a view of its weights without normalisation (shares theta)."""
        if self.config.normalise == "none":
            return self
        plain = copy.copy(self)
        plain.config = self.config.with_normalisation("none")
        return plain

    # seeds and heads -----------------------------------------------------------------
    def seed_slice(self, k: int | Sequence[int]) -> LinearTransformer:
        """A new model holding only the listed seed positions (copies)."""
        idx = [k] if isinstance(k, int) else list(k)
        new = LinearTransformer(self.config, [self.seeds[i] for i in idx],
                                dtype=self.theta.dtype, form=(self.qk_form, self.vp_form)
                                ).to(self.theta.device)
        with torch.no_grad():
            new.theta.copy_(self.theta[idx])
            new.head_mask.copy_(self.head_mask[idx])
        return new

    @staticmethod
    def stack(models: Sequence[LinearTransformer]) -> LinearTransformer:
        """Concatenate models of one architecture along the seed axis (copies)."""
        first = models[0]
        seeds = [s for m in models for s in m.seeds]
        new = LinearTransformer(first.config, seeds, dtype=first.theta.dtype,
                                form=(first.qk_form, first.vp_form)).to(first.theta.device)
        with torch.no_grad():
            new.theta.copy_(torch.cat([m.theta for m in models]))
            new.head_mask.copy_(torch.cat([m.head_mask for m in models]))
        return new

    def head_index(self, keep: torch.Tensor) -> torch.Tensor:
        """Validate keep (K, L, H') head indices for `select_heads`."""
        c = self.config
        keep = torch.as_tensor(keep, dtype=torch.long)
        K, L = self.num_seeds, c.layers
        if keep.dim() != 3 or keep.shape[:2] != (K, L):
            raise ValueError(f"keep must have shape (K={K}, L={L}, H'), got {tuple(keep.shape)}")
        if keep.min() < 0 or keep.max() >= c.total_heads:
            raise ValueError(f"keep holds head indices outside 0..{c.total_heads - 1}")
        if c.regime == "distributed":
            hpm_new = keep.shape[2] // c.machines
            if hpm_new * c.machines != keep.shape[2]:
                raise ValueError("distributed regime: keep the same number of heads on every "
                                 "machine (H' must be a multiple of M)")
            machine = torch.div(keep, c.heads, rounding_mode="floor")
            want = torch.arange(c.machines).repeat_interleave(hpm_new)
            if not torch.equal(machine, want.expand_as(machine)):
                raise ValueError("distributed regime: keep must list each machine's heads in "
                                 "machine order, the same count per machine")
        return keep

    def select_heads(self, keep: torch.Tensor) -> LinearTransformer:
        """A new model with only the heads listed in keep (K, L, H') per seed and layer
        (heads are physically removed; head_mask is gathered alongside).  In the
        distributed regime keep lists H'/M heads of every machine, machine-major."""
        c = self.config
        keep = self.head_index(keep)
        Hn = keep.shape[2]
        hpm = Hn // c.machines if c.regime == "distributed" else Hn
        new = LinearTransformer(c.with_heads(hpm), self.seeds, dtype=self.theta.dtype,
                                form="auto").to(self.theta.device)
        with torch.no_grad():
            new.theta.copy_(self.gather_heads(self.theta, keep, new))
            new.head_mask.copy_(torch.gather(self.head_mask, 2, keep))
        return new

    def gather_heads(self, flat: torch.Tensor, keep: torch.Tensor,
                     new: LinearTransformer) -> torch.Tensor:
        """Gather a (K, P) tensor laid out like theta (parameters, Adam moments) to the
        layout of `new` keeping the heads `keep` (K, L, H')."""
        K = flat.shape[0]
        parts = []
        for name, shape in self.shapes.items():
            a, b = self.offsets[name]
            x = flat[:, a:b].view(K, *shape)                         # (K, L, H, ...)
            idx = keep.view(K, shape[0], keep.shape[2], *([1] * (len(shape) - 2)))
            idx = idx.expand(K, shape[0], keep.shape[2], *shape[2:])
            parts.append(torch.gather(x, 2, idx).reshape(K, -1))
        out = torch.cat(parts, dim=1)
        assert out.shape[1] == new.numel_per_seed
        return out

    # numpy access for extraction and tests -------------------------------------------
    def weights(self, k: int = 0) -> dict[str, np.ndarray]:
        """Seed position k's stored parameters as float64 numpy arrays (compact shapes)."""
        return {name: v[k].detach().cpu().double().numpy()
                for name, v in self.params().items()}
