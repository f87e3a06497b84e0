"""The demonstration reader for System 1 training: one item per recorded frame.

``DemoDataset(root, episodes=None)[i]`` is a dict of torch tensors (the contract the model and the
trainer are written against):

==================  ==================  ===============================================================
key                 dtype, shape        meaning
==================  ==================  ===============================================================
``camera``          uint8 (3, 96, 192)  front camera, RGB, channels first
``lidar_bev``       float32 (2,128,128) LiDAR point counts below / above 0.2 m per 0.5 m cell, / 5, clipped
                                        to [0, 1]; rows x forward from -16 m, columns y left from -32 m
``speed``           float32 (1,)        ego speed, m/s (negative reversing)
``accel``           float32 (1,)        the odometry's longitudinal acceleration, m/s^2 (0 if not recorded)
``command``         int64 ()            navigation command 0..9 (``dualdrive.world.route.Command``)
``route``           float32 (10, 2)     route target points, ego frame, m
``plan``            float32 (8, 3)      the expert's plan: (x_m, y_m, heading_rad) at 0.5 s steps, ego frame
``gear``            int64 ()            the plan's gear: 0 forward, 1 reverse
``bev_semantic``    int64 (64, 64)      ``BevClass`` per 1 m cell (same area and layout as ``lidar_bev``);
                                        -1 where unlabelled
``light``           int64 ()            ``LightState`` ahead (0 none, 1 green, 2 yellow, 3 red); -1 unlabelled
``valid_camera``    float32 ()          1 when the camera frame is real, 0 when dropped (then all zeros)
``valid_lidar``     float32 ()          the same for the LiDAR
``guidance``        int64 ()            the meta-action the expert's plan carries out (System 1's guidance
                                        input, ``dualdrive.agents.e2e.guidance.GUIDANCE``)
``radar``           float32 (32, 4)     front radar rows (range_m, azimuth_rad, radial_velocity_mps, rcs_dbsm),
                                        zero past ``radar_count``
``radar_count``     int64 ()            real rows of ``radar`` (0 for a dropped radar frame)
``lead``            float32 (3,)        the car ahead on the route (``dualdrive.data.lead``): present 0/1 (-1
                                        unlabelled), gap m, speed relative to the ego m/s
``history_valid``   float32 ()          1 when the episode has a frame ``HISTORY_S`` (1 s) before this one
``speed_past``      float32 (1,)        the ego's speed in that frame (this frame's where there is none)
``radar_past``      float32 (32, 4)     that frame's radar rows, and ``radar_past_count`` int64 () their number
                                        (0 without the frame)
``route_past``      float32 (10, 2)     that frame's route target points, in that frame's ego frame
==================  ==================  ===============================================================

Reading: the store is opened lazily once per process (a DataLoader worker reopens it after the
fork, never per item). The small per-frame arrays of an episode are read once and kept (a few KB);
the camera, LiDAR and semantic BEV arrays are chunked one frame per chunk, so an item decodes only
its own frame.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dualdrive.agents.e2e.config import HISTORY_S
from dualdrive.agents.e2e.guidance import label_from_plan
from dualdrive.data.lead import lead_labels
from dualdrive.sensors.radar import RadarConfig
from dualdrive.data.format import (BEV_SEMANTIC_CELLS, LIDAR_MAX_PER_CELL, DatasetError, complete_episodes, read_meta,
                                   store_path)

FRAME_KEYS = ("camera_front_rgb", "lidar_bev", "bev_semantic")  # read one frame at a time
SMALL_KEYS = ("speed_mps", "accel_mps2", "command", "route_xy_ego_m", "plan", "plan_gear", "light_state", "camera_valid", "lidar_valid",
              "radar_returns", "radar_num_returns", "radar_valid", "t_s")
PAST_TOLERANCE_S = 0.05  # a frame this close to HISTORY_S before another is "a second ago" (frames lie on 0.1 s ticks)
RADAR_ROWS = RadarConfig().max_returns


def split_episodes(root: str | Path, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train_keys, val_keys): a deterministic split by episode, stratified by scenario (each
    scenario gives round(val_fraction x its episodes) to validation; at least one episode overall
    when there are two or more)."""
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction={val_fraction} must be in [0, 1)")
    read_meta(root)
    keys, _ = complete_episodes(root)
    by_scenario: dict[str, list[str]] = {}
    for k in keys:
        by_scenario.setdefault(k.rsplit("_", 1)[0], []).append(k)
    rng = np.random.default_rng(seed)
    val: list[str] = []
    pools = []
    for name in sorted(by_scenario):
        ks = sorted(by_scenario[name])
        order = [ks[i] for i in rng.permutation(len(ks))]
        n_val = int(round(val_fraction * len(ks)))
        val += order[:n_val]
        pools.append(order[n_val:])
    if not val and val_fraction > 0 and len(keys) >= 2:
        largest = max(pools, key=len)
        val.append(largest[0])
    val_set = set(val)
    return [k for k in keys if k not in val_set], sorted(val)


class DemoDataset(Dataset):
    """Frames of the complete episodes of a demonstration dataset (all, or the given episode keys)."""

    def __init__(self, root: str | Path, episodes: list[str] | None = None) -> None:
        self.root = Path(root)
        self.meta = read_meta(self.root)
        available, _ = complete_episodes(self.root)
        if episodes is None:
            keys = available
        else:
            unknown = sorted(set(episodes) - set(available))
            if unknown:
                raise DatasetError(f"episode(s) {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} are not "
                                   f"complete episodes of {str(self.root)!r} (it has {len(available)}); take keys from "
                                   "split_episodes(root)")
            keys = list(episodes)
        if not keys:
            raise DatasetError(f"{str(self.root)!r} has no complete episodes; collect some with `dualdrive collect "
                               f"--out {self.root}` (an interrupted collection resumes with the same command)")
        self.episodes = keys
        import zarr
        root_g = zarr.open_group(str(store_path(self.root)), mode="r")
        lengths = [int(root_g[k].attrs["frames"]) for k in keys]
        self._starts = np.concatenate([[0], np.cumsum(lengths)])
        self._pid: int | None = None  # the process the open handles belong to
        self._root_g = None
        self._frames: dict[str, dict] = {}  # episode -> opened per-frame arrays
        self._small: dict[str, dict] = {}  # episode -> small arrays, read whole once

    def __len__(self) -> int:
        return int(self._starts[-1])

    def frames_with_history(self) -> int:
        """How many frames have a frame ``HISTORY_S`` earlier in their episode (what a history model learns from;
        a recording whose frames do not fall 1 s apart, or that lacks ``t_s``, has none)."""
        import zarr
        root_g = zarr.open_group(str(store_path(self.root)), mode="r")
        return int(sum((past_frames(root_g[k]["t_s"][:]) >= 0).sum() for k in self.episodes if "t_s" in root_g[k]))

    def locate(self, index: int) -> tuple[str, int]:
        """(episode key, frame) of a global index."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} frames")
        e = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.episodes[e], int(index - self._starts[e])

    def __getstate__(self) -> dict:  # DataLoader workers get no open handles; each opens its own
        state = dict(self.__dict__)
        state.update(_pid=None, _root_g=None, _frames={}, _small={})
        return state

    def _episode(self, key: str) -> tuple[dict, dict]:
        if self._pid != os.getpid():
            import zarr
            self._root_g = zarr.open_group(str(store_path(self.root)), mode="r")
            self._frames, self._small, self._pid = {}, {}, os.getpid()
        if key not in self._frames:
            g = self._root_g[key]
            self._frames[key] = {k: g[k] for k in FRAME_KEYS if k in g}
            small = {k: np.asarray(g[k][:]) for k in SMALL_KEYS if k in g}
            # the lead label of every frame, once per episode (the boxes themselves are not kept)
            boxes = (np.asarray(g["boxes"][:]), np.asarray(g["num_boxes"][:])) if "boxes" in g and "num_boxes" in g \
                else (None, None)
            small["lead"] = lead_labels(*boxes, small["route_xy_ego_m"], small["speed_mps"])
            small["past"] = past_frames(small["t_s"]) if "t_s" in small else np.full(len(small["speed_mps"]), -1)
            self._small[key] = small
        return self._frames[key], self._small[key]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        key, t = self.locate(int(index))
        big, small = self._episode(key)
        cam_ok = float(small["camera_valid"][t] != 0)
        lidar_ok = float(small["lidar_valid"][t] != 0)
        cam = np.ascontiguousarray(big["camera_front_rgb"][t].transpose(2, 0, 1)) if cam_ok else \
            np.zeros((3, *big["camera_front_rgb"].shape[1:3]), np.uint8)
        lidar = np.clip(big["lidar_bev"][t].astype(np.float32) / LIDAR_MAX_PER_CELL, 0.0, 1.0) if lidar_ok else \
            np.zeros(big["lidar_bev"].shape[1:], np.float32)
        if "bev_semantic" in big:
            bev = big["bev_semantic"][t].astype(np.int64)
        else:  # a log without privileged labels (a human drive): every cell unlabelled
            bev = np.full((BEV_SEMANTIC_CELLS, BEV_SEMANTIC_CELLS), -1, np.int64)
        light = int(small["light_state"][t]) if "light_state" in small else -1
        radar, radar_count = _radar(small, t)
        past = int(small["past"][t])
        then = past if past >= 0 else t  # no frame a second ago: this one's speed and route, and no returns
        radar_past, radar_past_count = _radar(small, past) if past >= 0 else (np.zeros_like(radar), 0)
        # the meta-action the expert's own plan carries out: System 1's guidance input in training
        guidance = label_from_plan(small["plan"][t], float(small["speed_mps"][t]), int(small["command"][t]),
                                   reverse=bool(small["plan_gear"][t] < 0))
        return {
            "camera": torch.from_numpy(cam),
            "lidar_bev": torch.from_numpy(lidar),
            "speed": torch.tensor([small["speed_mps"][t]], dtype=torch.float32),
            "accel": torch.tensor([small["accel_mps2"][t] if "accel_mps2" in small else 0.0], dtype=torch.float32),
            "command": torch.tensor(int(small["command"][t]), dtype=torch.int64),
            "route": torch.from_numpy(small["route_xy_ego_m"][t].astype(np.float32)),
            "plan": torch.from_numpy(small["plan"][t].astype(np.float32)),
            "gear": torch.tensor(int(small["plan_gear"][t] < 0), dtype=torch.int64),
            "bev_semantic": torch.from_numpy(bev),
            "light": torch.tensor(light, dtype=torch.int64),
            "guidance": torch.tensor(guidance, dtype=torch.int64),
            "valid_camera": torch.tensor(cam_ok, dtype=torch.float32),
            "valid_lidar": torch.tensor(lidar_ok, dtype=torch.float32),
            "radar": torch.from_numpy(radar),
            "radar_count": torch.tensor(radar_count, dtype=torch.int64),
            "lead": torch.from_numpy(small["lead"][t].copy()),
            "history_valid": torch.tensor(float(past >= 0), dtype=torch.float32),
            "speed_past": torch.tensor([small["speed_mps"][then]], dtype=torch.float32),
            "radar_past": torch.from_numpy(radar_past),
            "radar_past_count": torch.tensor(radar_past_count, dtype=torch.int64),
            "route_past": torch.from_numpy(small["route_xy_ego_m"][then].astype(np.float32)),
        }


def _radar(small: dict, t: int) -> tuple[np.ndarray, int]:
    """Frame ``t``'s radar rows (zero-padded) and their number; a dropped radar frame has none."""
    radar = np.zeros((RADAR_ROWS, 4), np.float32)
    if "radar_returns" not in small or not small["radar_valid"][t]:
        return radar, 0
    rows = small["radar_returns"][t][:RADAR_ROWS]
    radar[:len(rows)] = rows
    return radar, min(int(small["radar_num_returns"][t]), RADAR_ROWS)


def past_frames(t_s: np.ndarray, back_s: float = HISTORY_S) -> np.ndarray:
    """For each frame of an episode, the index of its frame ``back_s`` earlier, or -1 where the episode has none
    (its first second, or a recording whose frames do not fall on that time)."""
    t = np.asarray(t_s, np.float64)
    if not len(t):
        return np.zeros(0, np.int64)
    want = t - back_s
    hi = np.clip(np.searchsorted(t, want), 0, len(t) - 1)
    lo = np.clip(hi - 1, 0, len(t) - 1)
    j = np.where(np.abs(t[lo] - want) < np.abs(t[hi] - want), lo, hi)  # the nearest frame (float32 times)
    return np.where(np.abs(t[j] - want) <= PAST_TOLERANCE_S, j, -1).astype(np.int64)
