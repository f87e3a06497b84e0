"""Which sensors does an E2E checkpoint use? Its plan L2 and light-state accuracy on a demonstration dataset
with each sensor frame as recorded, with the camera replaced by a flat grey frame, and with the LiDAR grid
emptied (the valid flags left at 1: the network is not told the frame is missing, so it has to notice).

    .venv/bin/python tools/diagnostics/sensor_ablation.py runs/model/val [--checkpoint PATH]

A sensor the network reads makes its numbers worse when it is blanked; one it ignores leaves them as they are.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dualdrive.agents.e2e.agent import DEFAULT_CHECKPOINT
from dualdrive.agents.e2e.checkpoint import load_checkpoint
from dualdrive.agents.e2e.model import MODEL_INPUT_KEYS
from dualdrive.data.dataset import DemoDataset

GREY = 128  # a flat mid-grey frame: no lamp, no lane, nothing


def blank(x: dict[str, torch.Tensor], which: str) -> dict[str, torch.Tensor]:
    x = dict(x)
    if which == "camera grey":
        x["camera"] = torch.full_like(x["camera"], GREY)
    elif which == "lidar empty":
        x["lidar_bev"] = torch.zeros_like(x["lidar_bev"])
    return x


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="demonstration dataset directory (dualdrive collect)")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    args = p.parse_args()
    torch.set_num_threads(1)
    model, _ = load_checkpoint(args.checkpoint)
    data = DemoDataset(args.data)
    print(f"{args.checkpoint} on {args.data} ({len(data)} frames)")
    for which in ("as recorded", "camera grey", "lidar empty"):
        l2_sum, frames, light_ok, light_n = 0.0, 0, 0, 0
        for b in torch.utils.data.DataLoader(data, batch_size=64):
            x = blank({k: v for k, v in b.items() if k in MODEL_INPUT_KEYS}, which)
            with torch.inference_mode():
                out = model(**x)
            l2_sum += (out["plan"][..., :2] - b["plan"][..., :2]).norm(dim=-1).mean(dim=1).sum().item()
            frames += len(b["plan"])
            labelled = b["light"] >= 0
            light_ok += (out["light_logits"].argmax(dim=1)[labelled] == b["light"][labelled]).sum().item()
            light_n += int(labelled.sum())
        light = f"{light_ok / light_n:.3f}" if light_n else "n/a"
        print(f"  {which:12s} plan L2 (mean over 4 s) {l2_sum / frames:.3f} m, light-state accuracy {light}")


if __name__ == "__main__":
    main()
