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
    if "lead" in out:  # without labels, a zero that keeps the head in the graph (data-parallel ranks agree)
        lead = lead_loss(out["lead"], batch["lead"], cfg) if "lead" in batch else 0.0 * out["lead"].sum()
    else:
        lead = plan.new_zeros(())
    total = (cfg.plan_loss_weight * plan + cfg.gear_loss_weight * gear + cfg.bev_loss_weight * bev
             + cfg.light_loss_weight * light + cfg.lead_loss_weight * lead)
    return {"loss": total, "plan_loss": plan, "gear_loss": gear, "bev_loss": bev, "light_loss": light,
            "lead_loss": lead}


def lead_loss(pred: Tensor, target: Tensor, cfg: E2EConfig) -> Tensor:
    """The car-ahead head: BCE on presence over labelled frames (presence >= 0), plus L1 on the scaled gap and
    relative speed over frames with a lead; 0 (with a gradient path) where nothing applies."""
    present = target[:, 0]
    labelled = present >= 0
    bce = F.binary_cross_entropy_with_logits(pred[:, 0], present.clamp(min=0.0), reduction="none")
    bce = (bce * labelled).sum() / labelled.sum().clamp(min=1)
    has = present > 0.5
    scale = pred.new_tensor([cfg.route_scale_m, cfg.speed_scale_mps])
    l1 = (F.l1_loss(pred[:, 1:], target[:, 1:] / scale, reduction="none").sum(dim=1) * has).sum()
    return bce + l1 / has.sum().clamp(min=1)
