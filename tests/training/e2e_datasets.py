"""Test datasets with exactly the DemoDataset contract (a test helper, not library code).

``RandomDemoDataset``: every key, shape and dtype of the contract with random values, some samples
unlabelled (BEV all -1, light -1) and some with a dropped sensor frame (zeros, valid flag 0).
``StructuredDemoDataset``: the targets are simple functions of the inputs, so a model can learn them:
the plan drives at the given speed towards the first route point's lateral offset, the gear is
reverse for the parking commands, the light state is painted into the camera image and the BEV
semantic map is the LiDAR's above-ground occupancy.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

CAMERA_SHAPE = (3, 96, 192)
BEV_SHAPE = (2, 128, 128)
SEMANTIC_PX = 64
PLAN_POSES, PLAN_DT_S = 8, 0.5
NUM_COMMANDS, ROUTE_POINTS, LIGHT_CLASSES, BEV_CLASSES = 10, 10, 4, 6
REVERSE_COMMANDS = (8, 9)  # PARK, LEAVE_SPOT
LIGHT_COLOURS = torch.tensor([[0, 0, 0], [0, 255, 0], [255, 255, 0], [255, 0, 0]], dtype=torch.uint8)
CONTRACT_KEYS = ("camera", "lidar_bev", "speed", "command", "route", "plan", "gear", "bev_semantic", "light",
                 "valid_camera", "valid_lidar")


class RandomDemoDataset(Dataset):
    def __init__(self, n: int = 16, seed: int = 0, unlabelled_every: int = 3, dropped_every: int = 4) -> None:
        self.n, self.seed, self.unlabelled_every, self.dropped_every = n, seed, unlabelled_every, dropped_every

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        labelled = i % self.unlabelled_every != 0
        cam_ok = i % self.dropped_every != 1
        lidar_ok = i % self.dropped_every != 2
        camera = torch.randint(0, 256, CAMERA_SHAPE, generator=g, dtype=torch.uint8)
        lidar = (torch.randint(0, 6, BEV_SHAPE, generator=g) / 5.0).float()
        return {
            "camera": camera if cam_ok else torch.zeros_like(camera),
            "lidar_bev": lidar if lidar_ok else torch.zeros_like(lidar),
            "speed": torch.rand(1, generator=g) * 15.0,
            "command": torch.randint(0, NUM_COMMANDS, (), generator=g),
            "route": torch.randn(ROUTE_POINTS, 2, generator=g) * 20.0,
            "plan": torch.randn(PLAN_POSES, 3, generator=g),
            "gear": torch.randint(0, 2, (), generator=g),
            "bev_semantic": (torch.randint(0, BEV_CLASSES, (SEMANTIC_PX, SEMANTIC_PX), generator=g) if labelled
                             else torch.full((SEMANTIC_PX, SEMANTIC_PX), -1, dtype=torch.long)),
            "light": torch.randint(0, LIGHT_CLASSES, (), generator=g) if labelled else torch.tensor(-1),
            "valid_camera": torch.tensor(float(cam_ok)),
            "valid_lidar": torch.tensor(float(lidar_ok)),
        }


class StructuredDemoDataset(Dataset):
    def __init__(self, n: int = 16, seed: int = 0) -> None:
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        speed_mps = torch.rand(1, generator=g) * 10.0
        command = torch.randint(0, NUM_COMMANDS, (), generator=g)
        lateral_m = (torch.rand((), generator=g) - 0.5) * 8.0
        route = torch.stack([8.0 * torch.arange(1, ROUTE_POINTS + 1, dtype=torch.float32),
                             lateral_m * torch.ones(ROUTE_POINTS)], dim=1)
        t_s = PLAN_DT_S * torch.arange(1, PLAN_POSES + 1, dtype=torch.float32)
        frac = t_s / t_s[-1]
        plan = torch.stack([speed_mps * t_s, lateral_m * frac, 0.1 * lateral_m * frac], dim=1)
        light = torch.randint(0, LIGHT_CLASSES, (), generator=g)
        camera = torch.full(CAMERA_SHAPE, 90, dtype=torch.uint8)
        camera[:, :24, :48] = LIGHT_COLOURS[light].view(3, 1, 1)  # the light's colour in the top-left corner
        lidar = torch.zeros(BEV_SHAPE)
        occupied = torch.rand(8, 8, generator=g) < 0.3  # 8 m x 8 m blocks with obstacles
        lidar[1] = occupied.float().repeat_interleave(16, 0).repeat_interleave(16, 1)
        semantic = torch.where(occupied, 3, 1).repeat_interleave(8, 0).repeat_interleave(8, 1).long()
        return {"camera": camera, "lidar_bev": lidar, "speed": speed_mps, "command": command, "route": route,
                "plan": plan, "gear": torch.tensor(int(int(command) in REVERSE_COMMANDS)),
                "bev_semantic": semantic, "light": light,
                "valid_camera": torch.tensor(1.0), "valid_lidar": torch.tensor(1.0)}
