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
        self.horizon_index = [round(h / PLAN_DT_S) - 1 for h in HORIZONS_S if round(h / PLAN_DT_S) <= plan_poses]
        self.sums = torch.zeros(7 + len(self.horizon_index), dtype=torch.float64, device=device)
        self.bev_confusion = torch.zeros(bev_classes, bev_classes, dtype=torch.float64, device=device)
        self.bev_classes = bev_classes
        self.loss_sum = torch.zeros(1, dtype=torch.float64, device=device)

    def update(self, out: dict[str, Tensor], batch: dict[str, Tensor], loss: Tensor) -> None:
        """Add a batch's outputs, targets and its mean training loss."""
        self.loss_sum += loss.detach().double() * len(out["plan"])
        pred, target = out["plan"].double(), batch["plan"].double()
        dist_m = torch.linalg.vector_norm(pred[..., :2] - target[..., :2], dim=-1)  # (B, P)
        light_ok = batch["light"] != IGNORE_INDEX
        parts = [len(pred),                                                   # 0 samples
                 (pred - target).abs().mean(dim=(1, 2)).sum(),                 # 1 plan L1
                 dist_m.mean(dim=1).sum(),                                     # 2 mean L2 over the poses
                 (out["gear_logits"].argmax(-1) == batch["gear"]).sum(),       # 3 gear correct
                 (out["light_logits"].argmax(-1) == batch["light"])[light_ok].sum(),  # 4 light correct
                 light_ok.sum(),                                               # 5 light labelled
                 dist_m[:, -1].sum()]                                          # 6 final displacement
        parts += [dist_m[:, i].sum() for i in self.horizon_index]
        self.sums += torch.stack([torch.as_tensor(p, dtype=torch.float64, device=self.sums.device) for p in parts])
        labelled = batch["bev_semantic"] != IGNORE_INDEX
        t = batch["bev_semantic"][labelled]
        p = out["bev_logits"].argmax(1)[labelled]
        self.bev_confusion += torch.bincount(t * self.bev_classes + p, minlength=self.bev_classes ** 2).view(
            self.bev_classes, self.bev_classes).double()

    def reduce(self) -> None:
        """Sum over data-parallel ranks (no-op outside torch.distributed)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.sums)
            torch.distributed.all_reduce(self.bev_confusion)
            torch.distributed.all_reduce(self.loss_sum)

    def result(self) -> dict[str, float]:
        s = self.sums.cpu().tolist()
        n = max(s[0], 1.0)
        res = {"val_samples": int(s[0]), "val_loss": float(self.loss_sum) / n, "plan_l1": s[1] / n, "l2_mean_m": s[2] / n, "gear_acc": s[3] / n,
               "light_acc": s[4] / s[5] if s[5] > 0 else float("nan"), "light_labelled": int(s[5])}
        res["fde_m"] = s[6] / n
        for k, h in enumerate(HORIZONS_S[:len(self.horizon_index)]):
            res[f"l2_{h}s_m"] = s[7 + k] / n
        res["bev_miou"] = bev_miou(self.bev_confusion)
        return res


def bev_miou(confusion: Tensor) -> float:
    """Mean IoU over the classes present in target or prediction (rows: target, columns: prediction)."""
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    if not present.any():
        return float("nan")
    return float((tp[present] / union[present]).mean())
