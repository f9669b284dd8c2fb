"""Greedy head pruning by validation loss (brief section 3, step 1): the one pruning
procedure, used by training (`train.prune_to` / `prune_at`, then fine-tuning) and by
extraction of a multi-head model.

Every seed is pruned independently but all seeds are evaluated in one batched forward:
at each step, for every remaining removable head, mask it and measure the validation loss;
each seed removes the head whose removal hurts least.  Stops at `keep` heads per layer (per
machine in the distributed regime).  The loss after every removal is recorded.  The caller
passes a VALIDATION batch (Z0, D): what pruning selects on must never be what is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

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
            cands = [removable(k) for k in range(K)]
            width = max(len(x) for x in cands)
            losses = torch.full((K, width), float("inf"))
            for j in range(width):
                trial = mask.clone()
                for k in range(K):
                    if j < len(cands[k]):
                        l, h = cands[k][j]
                        trial[k, l, h] = 0
                model.head_mask.copy_(trial)
                loss = model.loss(Z0, D)
                for k in range(K):
                    if j < len(cands[k]):
                        losses[k, j] = loss[k]
            for k in range(K):
                if cands[k]:
                    j = int(torch.argmin(losses[k]))
                    l, h = cands[k][j]
                    mask[k, l, h] = 0
                    history[k].append({"layer": l, "head": h, "loss": float(losses[k, j])})
    finally:
        model.head_mask.copy_(original)
    idx = torch.stack([torch.stack([torch.nonzero(mask[k, l]).flatten() for l in range(L)])
                       for k in range(K)])
    pruned = model.select_heads(idx)
    after = pruned.loss(Z0, D).tolist()
    return PruneResult(pruned, idx, base, after, history)
