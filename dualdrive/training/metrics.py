"""Validation metrics of the E2E model, accumulated as sums so data-parallel ranks can add them up.

Open-loop planning metrics (plan L1, L2 displacement at 1/2/3/4 s, mean and final displacement),
gear accuracy, light accuracy on labelled samples and BEV mIoU on labelled cells.
"""
from __future__ import annotations

import torch
from torch import Tensor

from dualdrive.training.losses import IGNORE_INDEX

PLAN_DT_S = 0.5
HORIZONS_S = (1, 2, 3, 4)


class ValAccumulator:
    """Running sums of one validation pass; ``reduce`` adds those of all ranks, ``result`` averages."""

    def __init__(self, plan_poses: int, bev_classes: int, light_classes: int, device: torch.device) -> None:
        # pose index of each horizon: the poses are at PLAN_DT_S, 2 PLAN_DT_S, ...
        self.horizons = {h: round(h / PLAN_DT_S) - 1 for h in HORIZONS_S if round(h / PLAN_DT_S) <= plan_poses}
        self.names = ["samples", "loss", "plan_l1", "l2_mean_m", "fde_m", "gear_correct", "light_correct",
                      "light_labelled", *(f"l2_{h}s_m" for h in self.horizons)]
        self.sums = torch.zeros(len(self.names), dtype=torch.float64, device=device)
        self.bev_confusion = torch.zeros(bev_classes, bev_classes, dtype=torch.float64, device=device)
        self.bev_classes = bev_classes

    def update(self, out: dict[str, Tensor], batch: dict[str, Tensor], loss: Tensor) -> None:
        """Add a batch's outputs, targets and its mean training loss."""
        pred, target = out["plan"].double(), batch["plan"].double()
        dist_m = torch.linalg.vector_norm(pred[..., :2] - target[..., :2], dim=-1)  # (B, P)
        light_ok = batch["light"] != IGNORE_INDEX
        parts = {"samples": len(pred), "loss": loss.detach().double() * len(pred),
                 "plan_l1": (pred - target).abs().mean(dim=(1, 2)).sum(), "l2_mean_m": dist_m.mean(dim=1).sum(),
                 "fde_m": dist_m[:, -1].sum(), "gear_correct": (out["gear_logits"].argmax(-1) == batch["gear"]).sum(),
                 "light_correct": (out["light_logits"].argmax(-1) == batch["light"])[light_ok].sum(),
                 "light_labelled": light_ok.sum(), **{f"l2_{h}s_m": dist_m[:, i].sum() for h, i in self.horizons.items()}}
        self.sums += torch.stack([torch.as_tensor(parts[k], dtype=torch.float64, device=self.sums.device)
                                  for k in self.names])
        labelled = batch["bev_semantic"] != IGNORE_INDEX
        cells = batch["bev_semantic"][labelled] * self.bev_classes + out["bev_logits"].argmax(1)[labelled]
        self.bev_confusion += torch.bincount(cells, minlength=self.bev_classes ** 2).view(
            self.bev_classes, self.bev_classes).double()

    def reduce(self) -> None:
        """Sum over data-parallel ranks (no-op outside torch.distributed)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.sums)
            torch.distributed.all_reduce(self.bev_confusion)

    def result(self) -> dict[str, float]:
        s = dict(zip(self.names, self.sums.cpu().tolist()))
        n = max(s["samples"], 1.0)
        res = {"val_samples": int(s["samples"]), "val_loss": s["loss"] / n, "gear_acc": s["gear_correct"] / n,
               "light_acc": s["light_correct"] / s["light_labelled"] if s["light_labelled"] > 0 else float("nan"),
               "light_labelled": int(s["light_labelled"]), "bev_miou": bev_miou(self.bev_confusion)}
        res.update({k: s[k] / n for k in ("plan_l1", "l2_mean_m", "fde_m", *(f"l2_{h}s_m" for h in self.horizons))})
        return res


def bev_miou(confusion: Tensor) -> float:
    """Mean IoU over the classes present in target or prediction (rows: target, columns: prediction)."""
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    if not present.any():
        return float("nan")
    return float((tp[present] / union[present]).mean())
