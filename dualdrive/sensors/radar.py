"""A front radar: a few returns with range, azimuth and radial (Doppler) velocity, noise and clutter.

Each box in the field of view whose centre is not hidden behind a nearer box (a 2-D check along
the line of sight) gives one return at its nearest footprint point. Clutter returns come from
the stationary world: their radial velocity is what a stationary reflector shows to a moving ego.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dualdrive.sensors.lidar import SensorConfigError, _slab_2d
from dualdrive.sensors.scene import SensorScene
from dualdrive.world.geometry import world_to_ego

RADAR_COLUMNS = ("range_m", "azimuth_rad", "radial_velocity_mps", "rcs_dbsm")


@dataclass(frozen=True)
class RadarConfig:
    range_m: float = 120.0
    fov_deg: float = 120.0  # total horizontal field of view, centred forward
    max_returns: int = 32
    range_noise_m: float = 0.25
    azimuth_noise_deg: float = 0.5
    velocity_noise_mps: float = 0.1
    clutter_rate: float = 2.0  # mean number of clutter returns per frame (Poisson)

    def __post_init__(self) -> None:
        if self.range_m <= 0:
            raise SensorConfigError(f"radar.range_m={self.range_m} must be positive")
        if not 0.0 < self.fov_deg < 360.0:
            raise SensorConfigError(f"radar.fov_deg={self.fov_deg} must be in (0, 360)")
        if self.max_returns < 1:
            raise SensorConfigError(f"radar.max_returns={self.max_returns} must be at least 1")
        if min(self.range_noise_m, self.azimuth_noise_deg, self.velocity_noise_mps, self.clutter_rate) < 0:
            raise SensorConfigError("radar noise values and clutter_rate must be >= 0")


class Radar:
    def __init__(self, config: RadarConfig = RadarConfig()) -> None:
        self.cfg = config

    def measure(self, scene: SensorScene, rng: np.random.Generator | None = None) -> np.ndarray:
        """(M, 4) float32 returns (range_m, azimuth_rad, radial_velocity_mps, rcs_dbsm), M <= max_returns,
        nearest first."""
        cfg = self.cfg
        b = scene.boxes
        rows = []
        if len(b):
            c = world_to_ego(b.xy, scene.ego_xy, scene.ego_heading_rad)
            rel_h = b.heading_rad - scene.ego_heading_rad
            az = np.arctan2(c[:, 1], c[:, 0])
            tn, tf = _slab_2d(az, c, rel_h, b.length_m / 2, b.width_m / 2)  # (targets as rays, boxes)
            dist = np.diag(tn).copy()  # entry distance along the line of sight to each box itself
            inside = np.diag(tf) > 0
            dist = np.where(inside, np.maximum(dist, 0.0), np.linalg.norm(c, axis=1))
            blocked = ((tf > np.maximum(tn, 0)) & (np.maximum(tn, 0) < dist[:, None] - 0.5)).any(1)
            vis = inside & ~blocked & (dist < cfg.range_m) & (np.abs(az) < np.deg2rad(cfg.fov_deg) / 2)
            # radial velocity: the target's velocity minus ours, along the line of sight
            ego_v = scene.ego_speed_mps * np.array([np.cos(scene.ego_heading_rad), np.sin(scene.ego_heading_rad)])
            los = np.column_stack([np.cos(az + scene.ego_heading_rad), np.sin(az + scene.ego_heading_rad)])
            vr = ((b.velocity_mps - ego_v) * los).sum(1)
            rcs = 10 * np.log10(np.maximum(b.width_m * b.height_m, 0.05))  # bigger frontal area, stronger echo
            for k in np.where(vis)[0]:
                rows.append((dist[k], az[k], vr[k], rcs[k]))
        if rng is not None and cfg.clutter_rate > 0:
            for _ in range(int(rng.poisson(cfg.clutter_rate))):
                r = float(rng.uniform(2.0, cfg.range_m))
                a = float(rng.uniform(-1, 1) * np.deg2rad(cfg.fov_deg) / 2)
                rows.append((r, a, -scene.ego_speed_mps * np.cos(a), float(rng.uniform(-15, -5))))
        out = np.array(sorted(rows), np.float64).reshape(-1, 4)
        if rng is not None and len(out):
            out[:, 0] += rng.normal(0, cfg.range_noise_m, len(out))
            out[:, 1] += rng.normal(0, np.deg2rad(cfg.azimuth_noise_deg), len(out))
            out[:, 2] += rng.normal(0, cfg.velocity_noise_mps, len(out))
            out[:, 0] = np.maximum(out[:, 0], 0.0)
        return out[: cfg.max_returns].astype(np.float32)
