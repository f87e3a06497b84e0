"""The sensor suite as a gymnasium observation wrapper, for dualdrive's envs and any highway-env env.

Observation (a dict of arrays; units in the names):

- ``camera_<name>_rgb`` (H, W, 3) uint8 and ``camera_<name>_valid`` (1,) int8 for each camera;
- ``lidar_points_m`` (max_points, 4) float32 rows (x_m, y_m, z_m, intensity) in the ego frame
  (x forward, y left, z up from the ground), the first ``lidar_num_points`` of them real;
  ``lidar_valid`` (1,) int8;
- ``radar_returns`` (max_returns, 4) float32 rows (range_m, azimuth_rad, radial_velocity_mps,
  rcs_dbsm), the first ``radar_num_returns`` real; ``radar_valid`` (1,) int8;
- odometry ``speed_mps``, ``yaw_rate_rps``, ``accel_mps2``, ``gear`` and the navigation route
  (``route_xy_ego_m``, ``route_command``, ``command``, ``command_distance_m``): on dualdrive's envs
  the world's, on a stock env the ego's lane ahead (:mod:`dualdrive.sensors.stock_nav`), with the
  stock env's own observation as ``env_observation``.

A sensor frame that is missing (dropped, blacked out) has ``*_valid`` = 0: the arrays then hold
zeros that must not be read as data. Noise and faults are drawn from a generator seeded by the
episode seed, so a seeded episode sees the same noise every time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dualdrive.sensors.camera import Camera, CameraConfig
from dualdrive.sensors.lidar import Lidar, LidarConfig, SensorConfigError
from dualdrive.sensors.radar import Radar, RadarConfig
from dualdrive.sensors.scene import SensorScene, scene_from_highway_env, scene_from_world

NOISE_SEED_SALT = 0x5E_A5  # keeps sensor noise independent of the world's own random stream


@dataclass(frozen=True)
class SensorSuiteConfig:
    cameras: tuple[CameraConfig, ...] = (CameraConfig(),)
    lidar: LidarConfig | None = field(default_factory=LidarConfig)
    radar: RadarConfig | None = field(default_factory=RadarConfig)
    frame_dropout: float = 0.0  # probability that a sensor's frame is missing at a tick (each sensor)
    camera_blackout: float = 0.0  # probability that a camera delivers a black frame (covered lens)
    noise: bool = True  # sensor noise (range, azimuth, Doppler) and clutter

    def __post_init__(self) -> None:
        for name in ("frame_dropout", "camera_blackout"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise SensorConfigError(f"sensors.{name}={v} must be a probability in [0, 1]")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise SensorConfigError(f"sensors.cameras: names must be unique, got {names}")


class SensorSuite(gym.ObservationWrapper):
    """Adds camera(s), LiDAR, radar and odometry to a dualdrive env or a stock highway-env env."""

    def __init__(self, env: gym.Env, config: SensorSuiteConfig = SensorSuiteConfig()) -> None:
        super().__init__(env)
        self.cfg = config
        self.cameras = [Camera(c) for c in config.cameras]
        self.lidar = Lidar(config.lidar) if config.lidar else None
        self.radar = Radar(config.radar) if config.radar else None
        u = env.unwrapped
        # a dualdrive env (its own world, or a replayed human scene that offers ``sensor_scene()``) already
        # gives odometry and the route in its observation
        self.is_dualdrive = (hasattr(u, "world") and hasattr(type(u), "_info")) or hasattr(u, "sensor_scene")
        if not self.is_dualdrive and not hasattr(u, "road"):
            raise SensorConfigError(f"{type(u).__name__} is not a highway-env environment (no road): the sensor "
                                    "suite needs env.unwrapped.road and env.unwrapped.vehicle")
        self.observation_space = self._space(env.observation_space)
        self.rng = np.random.default_rng(NOISE_SEED_SALT)
        self._prev: tuple[float, float] | None = None  # (heading, speed) of the ego, stock envs

    # -- gymnasium ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:  # a seeded episode sees the same noise every time; unseeded ones go on drawing
            self.rng = np.random.default_rng([NOISE_SEED_SALT, int(seed)])
        self._prev = None
        obs, info = self.env.reset(seed=seed, options=options)
        return self.observation(obs), info

    def observation(self, observation):
        scene = self.scene()
        out = self._odometry(scene, observation)
        rng = self.rng if self.cfg.noise else None
        for cam in self.cameras:
            name = cam.cfg.name
            ok = not self._dropped() and self.rng.random() >= self.cfg.camera_blackout
            img = cam.render(scene) if ok else np.zeros((cam.cfg.height_px, cam.cfg.width_px, 3), np.uint8)
            if ok and rng is not None and cam.cfg.noise_std > 0:
                img = np.clip(img + rng.normal(0.0, cam.cfg.noise_std, img.shape), 0, 255).astype(np.uint8)
            out[f"camera_{name}_rgb"] = img
            out[f"camera_{name}_valid"] = np.array([int(ok)], np.int8)
        if self.lidar is not None:
            ok = not self._dropped()
            pts = self.lidar.scan(scene, rng) if ok else None
            out["lidar_points_m"], out["lidar_num_points"], out["lidar_valid"] = _padded(pts, self.lidar.cfg.max_points)
        if self.radar is not None:
            ok = not self._dropped()
            ret = self.radar.measure(scene, rng) if ok else None
            out["radar_returns"], out["radar_num_returns"], out["radar_valid"] = _padded(ret, self.radar.cfg.max_returns)
        return out

    # -- helpers -------------------------------------------------------------------------------
    def scene(self) -> SensorScene:
        u = self.env.unwrapped
        if hasattr(u, "sensor_scene"):
            return u.sensor_scene()
        return scene_from_world(u.world) if self.is_dualdrive else scene_from_highway_env(self.env)

    def _dropped(self) -> bool:
        return self.cfg.frame_dropout > 0 and self.rng.random() < self.cfg.frame_dropout

    def _odometry(self, scene: SensorScene, observation) -> dict:
        if self.is_dualdrive:
            return dict(observation)  # odometry and the navigation route
        u = self.env.unwrapped
        dt = 1.0 / float(u.config.get("policy_frequency", 1))
        h, v = scene.ego_heading_rad, scene.ego_speed_mps
        yaw_rate, acc = 0.0, 0.0
        if self._prev is not None:
            yaw_rate = float((h - self._prev[0] + np.pi) % (2 * np.pi) - np.pi) / dt
            acc = (v - self._prev[1]) / dt
        self._prev = (h, v)
        from dualdrive.sensors.stock_nav import stock_navigation
        return {"speed_mps": np.array([v], np.float32), "yaw_rate_rps": np.array([yaw_rate], np.float32),
                "accel_mps2": np.array([acc], np.float32), "gear": np.array([1], np.int8),
                **stock_navigation(self.env), "env_observation": observation}

    def _space(self, base: spaces.Space) -> spaces.Dict:
        f = lambda lo, hi, shape: spaces.Box(lo, hi, shape, np.float32)  # noqa: E731
        d: dict[str, spaces.Space] = {}
        if self.is_dualdrive:
            d.update(base.spaces)
        else:
            from dualdrive.world.commands import Command
            from dualdrive.world.world import ROUTE_TARGETS
            d.update(speed_mps=f(-50.0, 100.0, (1,)), yaw_rate_rps=f(-100.0, 100.0, (1,)),
                     accel_mps2=f(-1e3, 1e3, (1,)), gear=spaces.Box(-1, 1, (1,), np.int8),
                     route_xy_ego_m=f(-1e4, 1e4, (ROUTE_TARGETS, 2)),
                     route_command=spaces.Box(0, len(Command) - 1, (ROUTE_TARGETS,), np.int8),
                     command=spaces.Box(0, len(Command) - 1, (1,), np.int8), command_distance_m=f(0.0, 1e5, (1,)),
                     speed_limit_mps=f(0.0, 100.0, (1,)), route_speed_limit_mps=f(0.0, 100.0, (ROUTE_TARGETS,)),
                     env_observation=base)
        valid = spaces.Box(0, 1, (1,), np.int8)
        for cam in self.cameras:
            d[f"camera_{cam.cfg.name}_rgb"] = spaces.Box(0, 255, (cam.cfg.height_px, cam.cfg.width_px, 3), np.uint8)
            d[f"camera_{cam.cfg.name}_valid"] = valid
        if self.lidar is not None:
            n = self.lidar.cfg.max_points
            d["lidar_points_m"] = f(-1e3, 1e3, (n, 4))
            d["lidar_num_points"] = spaces.Box(0, n, (1,), np.int32)
            d["lidar_valid"] = valid
        if self.radar is not None:
            n = self.radar.cfg.max_returns
            d["radar_returns"] = f(-1e3, 1e3, (n, 4))
            d["radar_num_returns"] = spaces.Box(0, n, (1,), np.int32)
            d["radar_valid"] = valid
        return spaces.Dict(d)


def _padded(rows: np.ndarray | None, capacity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed-size buffer of a sensor's rows, their count and the validity flag (None: frame missing)."""
    buf = np.zeros((capacity, 4), np.float32)
    n = 0 if rows is None else len(rows)
    if n:
        buf[:n] = rows
    return buf, np.array([n], np.int32), np.array([int(rows is not None)], np.int8)
