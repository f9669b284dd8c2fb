"""Greedy head pruning by validation loss (brief section 3, step 1): the one pruning
procedure, used by training (`train.prune_to` / `prune_at`, then fine-tuning) and by
extraction of a multi-head model.

Every seed is pruned independently: at each step, for every remaining removable head, remove
it and measure the validation loss; each seed removes the head whose removal hurts least.
Stops at `keep` heads per layer (per machine in the distributed regime).  The loss after
every removal is recorded.  The caller passes a VALIDATION batch (Z0, D): what pruning
selects on must never be what is reported.

The candidates' losses are the full model's with that head masked, computed more cheaply
(the same numbers up to rounding, `tests/test_models.py` checks the choices against a plain
loop): on a copy holding only the heads still alive, and from the cached activations of the
layer the head sits in (`_losses_without`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from eaglelab.models._fused import fused_loss, gram_states, head_update

__all__ = ["PruneResult", "prune_heads"]


@dataclass
class PruneResult:
    model: object                                     # the pruned LinearTransformer
    keep: torch.Tensor                                # (K, L, H') kept head indices
    loss_before: list[float]                          # per seed, on the validation batch
    loss_after: list[float]
    history: list[list[dict]] = field(default_factory=list)  # per seed: removals in order

    def to_dict(self) -> dict:
        return {"loss_before": self.loss_before, "loss_after": self.loss_after,
                "history": self.history, "keep": self.keep.tolist()}


@torch.no_grad()
def prune_heads(model, Z0: torch.Tensor, D: torch.Tensor, keep: int = 1) -> PruneResult:
    """Prune every seed of `model` greedily to `keep` heads per layer (and machine) by the
    loss on the validation batch (Z0 (B, T, W), D (B, d', n')); the model is not changed."""
    c = model.config
    K, L, H = model.num_seeds, c.layers, c.total_heads
    groups = c.machines if c.regime == "distributed" else 1
    per_group = H // groups
    if not 1 <= keep <= per_group:
        raise ValueError(f"keep must lie in [1, {per_group}] heads per layer"
                         f"{' and machine' if groups > 1 else ''}, got {keep}")
    mask = model.head_mask.clone()
    base = model.loss(Z0, D).tolist()
    history: list[list[dict]] = [[] for _ in range(K)]

    def removable(k: int) -> list[tuple[int, int]]:
        out = []
        for l in range(L):
            for g in range(groups):
                heads = range(g * per_group, (g + 1) * per_group)
                alive = [h for h in heads if mask[k, l, h] != 0]
                if len(alive) > keep:
                    out += [(l, h) for h in alive]
        return out

    original = model.head_mask.clone()
    try:
        while any(removable(k) for k in range(K)):
            model.head_mask.copy_(mask)
            small, where = _compact(model, mask, groups, per_group)
            for k in range(K):
                cands = removable(k)
                if not cands:
                    continue
                losses = _losses_without(small.seed_slice(k), Z0, D,
                                         [(l, int(where[k, l, h])) for l, h in cands])
                j = int(torch.argmin(torch.nan_to_num(losses, nan=float("inf"))))
                l, h = cands[j]
                mask[k, l, h] = 0
                history[k].append({"layer": l, "head": h, "loss": float(losses[j])})
    finally:
        model.head_mask.copy_(original)
    idx = torch.stack([torch.stack([torch.nonzero(mask[k, l]).flatten() for l in range(L)])
                       for k in range(K)])
    pruned = model.select_heads(idx)
    after = pruned.loss(Z0, D).tolist()
    return PruneResult(pruned, idx, base, after, history)


def _compact(model, mask: torch.Tensor, groups: int, per_group: int):
    """The model with only the live heads of `mask` (K, L, H) kept, so that a candidate's
    loss does not pay for the heads removed so far: every (seed, layer, machine) keeps its
    live heads, padded with dead ones (mask 0, so they add nothing) to the largest live
    count.  Returns (compacted model, where (K, L, H): each original head's index in it,
    -1 for a head not kept)."""
    K, L, H = mask.shape
    live = mask.view(K, L, groups, per_group) != 0
    width = max(int(live.sum(-1).max()), 1)
    # per group: live heads first (in index order), then dead ones; keep the first `width`
    order = torch.argsort((~live).to(torch.int8), dim=-1, stable=True)[..., :width]
    base = torch.arange(groups, device=mask.device).view(1, 1, groups, 1) * per_group
    keep = (order + base).reshape(K, L, -1)
    where = torch.full((K, L, H), -1, dtype=torch.long, device=mask.device)
    where.scatter_(2, keep, torch.arange(keep.shape[2], device=mask.device
                                         ).expand_as(keep).contiguous())
    return model.select_heads(keep), where


@torch.no_grad()
def _losses_without(model, Z0: torch.Tensor, D: torch.Tensor,
                    heads: list[tuple[int, int]]) -> torch.Tensor:
    """Validation loss (float64, one per entry) of the one-seed `model` with head (l, h)
    removed, for each (l, h) in `heads`.  The activations of the current model are formed
    once; removing head h of layer l changes nothing before layer l and subtracts that
    head's update from Z_{l+1}, so only the layers after l are run again."""
    c = model.config
    L = c.layers
    Z, D, gram = model.gram_inputs(Z0, D)
    D = D.contiguous()
    Zs, Ms = gram_states(Z, gram, c.d)

    def loss_from(Zl: torch.Tensor, l: int) -> float:
        if l == L:
            err = Zl[:, :, c.d:, c.n:].neg() - D
            return float(err.double().square().mean())
        return float(fused_loss(Zl.contiguous(), D, gram.layers_from(l), c.d, c.n)[0])

    out = []
    for l, h in heads:
        upd = head_update(Zs[l], Ms[l], gram, l, h, c.d)
        out.append(loss_from(Zs[l + 1] - upd, l + 1))
    return torch.tensor(out, dtype=torch.float64)
