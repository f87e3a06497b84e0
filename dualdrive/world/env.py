"""Gymnasium environments for the scenario families: ``dualdrive/Highway-v0``, ``Urban-v0``,
``Parking-v0`` and ``P2P-v0``.

Action: ``[acceleration_mps2, steering_rad, gear]`` (gear >= 0 forward, < 0 reverse).
Observation: the mapless navigation observation of :meth:`World.observation` (odometry and the
sparse route in the ego frame); the sensor suite adds camera, LiDAR and radar on top.
The reset info carries ``privileged_world``, the ground-truth handle that only the privileged
expert and the benchmark may read.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dualdrive.world.route import Command
from dualdrive.world.scenarios import ConfigError, ScenarioConfig
from dualdrive.world.world import ACCEL_LIMITS_MPS2, MAX_STEER_RAD, ROUTE_TARGETS, World

from dualdrive.world.registration import ENV_IDS, register_envs  # noqa: F401  (their home; re-exported here)


def observation_space() -> spaces.Dict:
    f = lambda lo, hi, shape: spaces.Box(lo, hi, shape, np.float32)  # noqa: E731
    n_cmd = len(Command)
    return spaces.Dict({
        "speed_mps": f(-10.0, 50.0, (1,)),
        "accel_mps2": f(-100.0, 100.0, (1,)),
        "yaw_rate_rps": f(-20.0, 20.0, (1,)),
        "steer_rad": f(-1.0, 1.0, (1,)),
        "gear": spaces.Box(-1, 1, (1,), np.int8),
        "route_xy_ego_m": f(-1e4, 1e4, (ROUTE_TARGETS, 2)),
        "route_command": spaces.Box(0, n_cmd - 1, (ROUTE_TARGETS,), np.int8),
        "command": spaces.Box(0, n_cmd - 1, (1,), np.int8),
        "command_distance_m": f(0.0, 1e4, (1,)),
        "speed_limit_mps": f(0.0, 100.0, (1,)),
        "route_speed_limit_mps": f(0.0, 100.0, (ROUTE_TARGETS,)),
    })


class DualDriveEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, family: str = "p2p", config: ScenarioConfig | dict | None = None,
                 render_mode: str | None = None) -> None:
        if isinstance(config, dict):
            config = ScenarioConfig.from_dict({"family": family, **config})
        self.config = config or ScenarioConfig(family=family)
        if self.config.family != family:
            raise ConfigError(f"config family {self.config.family!r} does not match env family {family!r}")
        self.render_mode = render_mode
        self.observation_space = observation_space()
        self.action_space = spaces.Box(np.array([ACCEL_LIMITS_MPS2[0], -MAX_STEER_RAD, -1.0], np.float32),
                                       np.array([ACCEL_LIMITS_MPS2[1], MAX_STEER_RAD, 1.0], np.float32))
        self.world: World | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, 2**31 - 1))
        self.world = World(self.config, int(seed))
        return self.world.observation(), self._info(reset=True)

    def step(self, action):
        w = self.world
        before = w.progress_m
        n_inf = len(w.monitor.infractions)
        w.step(action)
        reward = (w.progress_m - before) / 10.0 - 1.0 * (len(w.monitor.infractions) - n_inf)
        return w.observation(), float(reward), w.terminated, w.truncated, self._info()

    def _info(self, reset: bool = False) -> dict[str, Any]:
        w = self.world
        info = {"t_s": w.t, "dt_s": w.dt, "progress_m": w.progress_m, "route_length_m": w.route.arrival_m,
                "infractions": len(w.monitor.infractions)}
        if reset:
            info["privileged_world"] = w
        if w.terminated or w.truncated:
            info["summary"] = w.summary()
        return info

    def render(self):
        from dualdrive.viz.render import render_topdown
        return render_topdown(self.world)
