"""Batch augmentation on the training device: sensor dropout and camera brightness jitter.

Sensor dropout teaches the model what the sensor suite does at run time: a dropped frame arrives
as zeros with its valid flag 0, and the plan must still come from the other sensor and the route.
Draws use the global torch generator, which the trainer re-seeds every epoch (reproducible resume).
"""
from __future__ import annotations

import torch
from torch import Tensor

UINT8_MAX = 255


def augment_batch(batch: dict[str, Tensor], sensor_dropout_prob: float, brightness_jitter: float) -> dict[str, Tensor]:
    out = dict(batch)
    camera = batch["camera"]
    n = len(camera)
    if brightness_jitter > 0:
        factor = 1.0 + (torch.rand(n, 1, 1, 1, device=camera.device) * 2.0 - 1.0) * brightness_jitter
        camera = (camera.float() * factor).round().clamp(0, UINT8_MAX).to(torch.uint8)
    if sensor_dropout_prob > 0:
        keep_cam = (torch.rand(n, device=camera.device) >= sensor_dropout_prob).float()
        keep_lidar = (torch.rand(n, device=camera.device) >= sensor_dropout_prob).float()
        camera = camera * keep_cam.view(n, 1, 1, 1).to(camera.dtype)
        out["lidar_bev"] = batch["lidar_bev"] * keep_lidar.view(n, 1, 1, 1)
        out["valid_camera"] = batch["valid_camera"] * keep_cam
        out["valid_lidar"] = batch["valid_lidar"] * keep_lidar
        if "radar_count" in batch:  # a dropped radar frame arrives without returns
            keep_radar = torch.rand(n, device=camera.device) >= sensor_dropout_prob
            out["radar_count"] = batch["radar_count"] * keep_radar.to(batch["radar_count"].dtype)
    out["camera"] = camera
    return out
