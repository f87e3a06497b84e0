"""metrics.csv: one row per logged step, per epoch and per validation, with a fixed set of columns."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

COLUMNS = ("kind", "epoch", "step", "lr", "loss", "plan_loss", "gear_loss", "bev_loss", "light_loss",
           "lead_loss", "val_samples", "val_loss", "plan_l1", "l2_mean_m", "l2_1s_m", "l2_2s_m", "l2_3s_m", "l2_4s_m", "fde_m",
           "gear_acc", "light_acc", "light_labelled", "bev_miou")


class CsvLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def keep_epochs_up_to(self, epoch: int) -> None:
        """Drop rows of epochs after ``epoch`` (a resumed run redoes them), or start the file."""
        rows = []
        if self.path.is_file() and epoch > 0:
            with self.path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("epoch") and int(r["epoch"]) <= epoch]
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise KeyError(f"metrics.csv has no column(s) {sorted(unknown)}")
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v
