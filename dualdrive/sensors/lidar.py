"""A rotating multi-beam LiDAR: first returns off 3-D boxes and the ground, with occlusion.

Rays are cast in the ego frame (x forward, y left, z up from the ground under the ego). Each
azimuth is first intersected with every box footprint in 2-D (a slab test on (azimuth, box)
pairs); only the pairs that cross are extended to all beams, where the ray's height along its
way decides whether it passes over, under or into the box. The nearest hit per ray wins, so a
box behind a box is not seen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dualdrive.sensors.scene import BoxClass, SensorScene
from dualdrive.world.geometry import world_to_ego

# reflectivity by what was hit (cones and number plates are retro-reflective)
INTENSITY = {int(BoxClass.CAR): 0.6, int(BoxClass.TRUCK): 0.5, int(BoxClass.EMERGENCY): 0.7,
             int(BoxClass.PEDESTRIAN): 0.3, int(BoxClass.STATIC): 0.55, int(BoxClass.CONE): 0.95}
GROUND_INTENSITY = 0.1


class SensorConfigError(ValueError):
    """A sensor configuration value out of range; the message names the field."""


@dataclass(frozen=True)
class LidarConfig:
    beams: int = 32
    elevation_min_deg: float = -25.0
    elevation_max_deg: float = 5.0
    azimuth_resolution_deg: float = 1.0  # 360 azimuths
    range_m: float = 60.0
    mount_height_m: float = 1.9
    noise_std_m: float = 0.02  # Gaussian range noise
    point_loss: float = 0.0  # probability that a return is lost

    def __post_init__(self) -> None:
        if self.beams < 1:
            raise SensorConfigError(f"lidar.beams={self.beams} must be at least 1")
        if not -90.0 < self.elevation_min_deg <= self.elevation_max_deg < 90.0:
            raise SensorConfigError("lidar.elevation_min_deg <= lidar.elevation_max_deg, both within (-90, 90) "
                                    f"degrees; got {self.elevation_min_deg}, {self.elevation_max_deg}")
        if not 0.0 < self.azimuth_resolution_deg <= 45.0:
            raise SensorConfigError(f"lidar.azimuth_resolution_deg={self.azimuth_resolution_deg} must be in (0, 45]")
        if self.range_m <= 0:
            raise SensorConfigError(f"lidar.range_m={self.range_m} must be positive")
        if self.mount_height_m <= 0:
            raise SensorConfigError(f"lidar.mount_height_m={self.mount_height_m} must be positive")
        if self.noise_std_m < 0 or not 0.0 <= self.point_loss <= 1.0:
            raise SensorConfigError("lidar.noise_std_m must be >= 0 and lidar.point_loss within [0, 1]")

    @property
    def n_azimuth(self) -> int:
        return int(round(360.0 / self.azimuth_resolution_deg))

    @property
    def max_points(self) -> int:
        return self.n_azimuth * self.beams


class Lidar:
    def __init__(self, config: LidarConfig = LidarConfig()) -> None:
        self.cfg = config
        self.az = np.deg2rad(np.arange(config.n_azimuth) * 360.0 / config.n_azimuth)
        self.el = np.deg2rad(np.linspace(config.elevation_min_deg, config.elevation_max_deg, config.beams))
        self.tan_el = np.tan(self.el)
        self.cos_el = np.cos(self.el)

    def scan(self, scene: SensorScene, rng: np.random.Generator | None = None) -> np.ndarray:
        """(N, 4) float32 points (x_m, y_m, z_m, intensity) in the ego frame, one per ray that hit."""
        cfg = self.cfg
        n_az, n_el = len(self.az), len(self.el)
        h0 = cfg.mount_height_m
        # horizontal distance to the first hit of every ray (inf: nothing), and what it hit
        t_hit = np.full(n_az * n_el, np.inf)
        inten = np.zeros(n_az * n_el)
        t_max = cfg.range_m * self.cos_el  # horizontal reach of each beam
        # the ground
        down = self.tan_el < 0
        t_ground = np.where(down, h0 / np.maximum(-self.tan_el, 1e-9), np.inf)
        t_ground = np.where(t_ground <= t_max, t_ground, np.inf)
        t_hit[:] = np.tile(t_ground, n_az)
        inten[np.isfinite(t_hit)] = GROUND_INTENSITY
        b = scene.boxes
        if len(b):
            c = world_to_ego(b.xy, scene.ego_xy, scene.ego_heading_rad)
            rel_h = b.heading_rad - scene.ego_heading_rad
            near = np.linalg.norm(c, axis=1) < cfg.range_m + np.hypot(b.length_m, b.width_m)
            c, rel_h = c[near], rel_h[near]
            hl, hw, hz = b.length_m[near] / 2, b.width_m[near] / 2, b.height_m[near]
            refl = np.array([INTENSITY.get(int(k), 0.5) for k in b.cls[near]])
            if len(c):
                tn, tf = _slab_2d(self.az, c, rel_h, hl, hw)  # (n_az, n_box)
                ai, bi = np.nonzero(tf > np.maximum(tn, 0.0))
                if len(ai):
                    tn, tf = np.maximum(tn[ai, bi], 0.0)[:, None], tf[ai, bi][:, None]
                    tan = self.tan_el[None, :]
                    # where the ray's height h0 + t tan(el) is within [0, hz]
                    with np.errstate(divide="ignore", invalid="ignore"):
                        t_a = np.where(tan != 0, (0.0 - h0) / tan, -np.inf)
                        t_b = np.where(tan != 0, (hz[bi][:, None] - h0) / tan, np.inf)
                    lo = np.where(tan < 0, t_b, np.where(tan > 0, t_a, -np.inf))
                    hi = np.where(tan < 0, t_a, np.where(tan > 0, t_b, np.inf))
                    flat_inside = (tan == 0) & (h0 <= hz[bi][:, None])
                    lo = np.where(tan == 0, np.where(flat_inside, -np.inf, np.inf), lo)
                    hi = np.where(tan == 0, np.where(flat_inside, np.inf, -np.inf), hi)
                    t_in = np.maximum(tn, lo)
                    t_out = np.minimum(tf, hi)
                    hit = (t_in <= t_out) & (t_in <= t_max[None, :])
                    pi, ei = np.nonzero(hit)
                    ray = ai[pi] * n_el + ei
                    t = t_in[pi, ei]
                    order = np.argsort(t)[::-1]  # write far to near: the nearest hit wins
                    ray, t, box = ray[order], t[order], bi[pi][order]
                    closer = t < t_hit[ray]
                    t_hit[ray[closer]] = t[closer]
                    inten[ray[closer]] = refl[box[closer]]
        ok = np.isfinite(t_hit)
        idx = np.nonzero(ok)[0]
        ai, ei = idx // n_el, idx % n_el
        t = t_hit[idx]
        rng_m = t / self.cos_el[ei]
        if rng is not None and cfg.noise_std_m > 0:
            rng_m = rng_m + rng.normal(0.0, cfg.noise_std_m, len(rng_m))
        t = rng_m * self.cos_el[ei]
        pts = np.column_stack([t * np.cos(self.az[ai]), t * np.sin(self.az[ai]), h0 + rng_m * np.sin(self.el[ei]),
                               inten[idx]]).astype(np.float32)
        if rng is not None and cfg.point_loss > 0:
            pts = pts[rng.random(len(pts)) >= cfg.point_loss]
        return pts


def _slab_2d(az: np.ndarray, centre: np.ndarray, heading: np.ndarray, hl: np.ndarray, hw: np.ndarray):
    """Entry and exit distance of rays from the origin along each azimuth through each box footprint."""
    d = np.stack([np.cos(az), np.sin(az)], -1)  # (A, 2)
    ch, sh = np.cos(heading), np.sin(heading)
    # ray origin and direction in each box's frame
    ox = -(centre[:, 0] * ch + centre[:, 1] * sh)  # (B,)
    oy = -(-centre[:, 0] * sh + centre[:, 1] * ch)
    dx = d[:, 0:1] * ch + d[:, 1:2] * sh  # (A, B)
    dy = -d[:, 0:1] * sh + d[:, 1:2] * ch
    with np.errstate(divide="ignore", invalid="ignore"):
        tx1, tx2 = (-hl - ox) / dx, (hl - ox) / dx
        ty1, ty2 = (-hw - oy) / dy, (hw - oy) / dy
    # a ray parallel to a slab is inside it for all t, or never
    in_x = np.abs(ox) <= hl
    in_y = np.abs(oy) <= hw
    txn = np.where(dx == 0, np.where(in_x, -np.inf, np.inf), np.minimum(tx1, tx2))
    txf = np.where(dx == 0, np.where(in_x, np.inf, -np.inf), np.maximum(tx1, tx2))
    tyn = np.where(dy == 0, np.where(in_y, -np.inf, np.inf), np.minimum(ty1, ty2))
    tyf = np.where(dy == 0, np.where(in_y, np.inf, -np.inf), np.maximum(ty1, ty2))
    return np.maximum(txn, tyn), np.minimum(txf, tyf)


def bev_histogram(points: np.ndarray, x_range_m: tuple[float, float] = (-16.0, 48.0),
                  y_range_m: tuple[float, float] = (-32.0, 32.0), resolution_m: float = 0.25,
                  split_height_m: float = 0.2, max_per_cell: int = 5) -> np.ndarray:
    """TransFuser's LiDAR input: a (2, H, W) float32 count grid of points below / above
    ``split_height_m`` in front of the ego (rows: x forward, columns: y left), normalised to [0, 1]."""
    nx = int(round((x_range_m[1] - x_range_m[0]) / resolution_m))
    ny = int(round((y_range_m[1] - y_range_m[0]) / resolution_m))
    out = np.zeros((2, nx, ny), np.float32)
    if len(points) == 0:
        return out
    for k, sel in enumerate((points[:, 2] <= split_height_m, points[:, 2] > split_height_m)):
        p = points[sel]
        hist, _, _ = np.histogram2d(p[:, 0], p[:, 1], bins=(nx, ny), range=(x_range_m, y_range_m))
        out[k] = np.minimum(hist, max_per_cell) / max_per_cell
    return out
