"""The one contract every driver implements, and the typed values that cross it.

An agent sees an observation (a dict of arrays, see ``World.observation``) and returns either
a :class:`Plan` (future ego poses, the NAVSIM/TransFuser convention: 8 poses at 0.5 s, in the
ego frame at the time of planning) or a :class:`Control` (direct actuation). The drive loop
turns plans into controls with the trajectory follower.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np

PLAN_POSES = 8
PLAN_DT_S = 0.5
FORWARD, REVERSE = 1, -1


@dataclass(frozen=True)
class Plan:
    """Future ego poses (x_m, y_m, heading_rad) in the ego frame at planning time, one per ``dt_s``."""

    poses: np.ndarray  # (PLAN_POSES, 3)
    gear: int = FORWARD
    dt_s: float = PLAN_DT_S

    def __post_init__(self) -> None:
        p = np.asarray(self.poses, dtype=float)
        if p.ndim != 2 or p.shape[1] != 3 or len(p) < 1:
            raise ValueError(f"Plan.poses must have shape (N, 3) [x_m, y_m, heading_rad], got {p.shape}")
        if not np.all(np.isfinite(p)):
            raise ValueError("Plan.poses contains NaN or inf")
        if self.gear not in (FORWARD, REVERSE):
            raise ValueError(f"Plan.gear must be {FORWARD} (forward) or {REVERSE} (reverse), got {self.gear}")
        object.__setattr__(self, "poses", p)


@dataclass(frozen=True)
class Control:
    """Direct actuation: acceleration along the gear's direction, front-wheel angle, gear."""

    accel_mps2: float
    steer_rad: float
    gear: int = FORWARD

    def to_action(self) -> np.ndarray:
        return np.array([self.accel_mps2, self.steer_rad, self.gear], dtype=float)


class Agent(abc.ABC):
    """A driver. ``reset`` is called at the start of each episode with the env's reset info."""

    name: str = "agent"
    # an agent that drives on the sensor suite (camera, LiDAR, radar) gets its env wrapped in it
    uses_sensors: bool = False
    # only a privileged agent (the expert) receives the world's ground-truth handle in its reset info
    privileged: bool = False
    # on a stock highway-env env: True, the agent returns the env's own actions (it gets the action space in
    # its reset info); False, it returns Plans/Controls as everywhere else, and the runner gives the env
    # continuous actions at 10 Hz and drives them through the trajectory follower
    stock_actions: bool = False

    def reset(self, info: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Prepare for a new episode."""

    @abc.abstractmethod
    def act(self, observation: dict[str, np.ndarray]) -> Plan | Control:
        """Decide for this tick."""


PRIVILEGED_KEYS = ("privileged_world",)


def reset_info_for(agent: Agent, info: dict[str, Any]) -> dict[str, Any]:
    """The reset info an agent may see: the ground-truth handle only for a privileged agent."""
    if agent.privileged:
        return dict(info)
    return {k: v for k, v in info.items() if k not in PRIVILEGED_KEYS}
