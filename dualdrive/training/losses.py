"""Training losses of the E2E model: L1 on poses, cross-entropy on gear, masked cross-entropy on the
auxiliary BEV semantic map and light state (label -1 = unlabelled, e.g. human driving clips)."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from dualdrive.agents.e2e.config import E2EConfig

IGNORE_INDEX = -1


def masked_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean CE over labelled elements; exactly 0 (with a gradient path) when nothing is labelled.

    ``F.cross_entropy(..., ignore_index=-1)`` averages over the labelled count and returns NaN when
    that count is 0, which a batch of human driving clips would hit.
    """
    total = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
    n_labelled = (target != IGNORE_INDEX).sum()
    return total / n_labelled.clamp(min=1)


def compute_losses(out: dict[str, Tensor], batch: dict[str, Tensor], cfg: E2EConfig) -> dict[str, Tensor]:
    """Weighted total (``loss``) and its parts, each a scalar tensor."""
    # TransFuser / NAVSIM convention; with a plan per gear, the expert's gear's plan is the one scored
    pred = out["plans"][torch.arange(len(batch["gear"]), device=batch["gear"].device), batch["gear"]] \
        if "plans" in out else out["plan"]
    plan = F.l1_loss(pred, batch["plan"])
    gear = F.cross_entropy(out["gear_logits"], batch["gear"])
    bev = masked_cross_entropy(out["bev_logits"], batch["bev_semantic"])
    light = masked_cross_entropy(out["light_logits"], batch["light"])
    total = (cfg.plan_loss_weight * plan + cfg.gear_loss_weight * gear + cfg.bev_loss_weight * bev
             + cfg.light_loss_weight * light)
    return {"loss": total, "plan_loss": plan, "gear_loss": gear, "bev_loss": bev, "light_loss": light}
