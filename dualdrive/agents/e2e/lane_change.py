"""The lane-change assist: under a lane-change command, System 1's plan is taken into the route's lane when the
LiDAR shows that lane clear beside the car.

Why a rule: the shipped network does not change lanes for the navigation. On P2P 5003 the route moves one lane to
the left over 30 m before a left turn (``CHANGE_LANE_LEFT``); the network's plan stays in its lane, the car reaches
the junction in the lane that goes straight on, stops short of it, creeps and leaves the road. Five of fifteen P2P
drives were lost so on the road. A lane change the driver asks for and the car carries out when the next lane is
clear is what production lane-change assists do; this one asks the navigation instead of the indicator stalk.

What it does: while the command is ``CHANGE_LANE_LEFT`` or ``CHANGE_LANE_RIGHT`` and no LiDAR return above the
ground lies in the next lane on that side from ``behind_m`` behind the car to ``ahead_m`` ahead of it, every pose
of a forward plan further than ``max_offset_m`` from the route's centre line is moved across towards it, coming
back at most ``converge_per_m`` across per metre along the plan
(:func:`dualdrive.agents.e2e.turn_keeping.keep_on_route`); the plan's progress along its path is the network's.
With the lane not clear the network's plan is left as it is (the plan guard still checks it).

Off with ``--no-lane-change-assist`` (``drive``, ``eval``), ``$DUALDRIVE_E2E_LANE_CHANGE=0`` or
``E2EAgent(lane_change=False)``, and in :func:`dualdrive.agents.e2e.agent.network_alone`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dualdrive.agents.base import Plan
from dualdrive.agents.e2e.turn_keeping import keep_on_route
from dualdrive.world.commands import Command

SIDES = {Command.CHANGE_LANE_LEFT: 1.0, Command.CHANGE_LANE_RIGHT: -1.0}


@dataclass(frozen=True)
class LaneChangeConfig:
    enabled: bool = True
    max_offset_m: float = 1.0  # a plan pose is kept this close to the route's centre line
    converge_per_m: float = 0.25  # across per metre along the plan: a lane (3.5 m) in 14 m
    # the next lane must be clear of LiDAR returns over this stretch: a car 20 m behind at 5 m/s faster is 4 s away
    behind_m: float = 20.0
    ahead_m: float = 15.0
    lane_inner_m: float = 1.2  # the next lane beside the car, from this far across (the ego's half width + a bit)
    lane_outer_m: float = 5.0  # ... to this far (a lane of 3.5 m beyond the ego's own)
    min_height_m: float = 0.3  # returns below this are the ground
    max_height_m: float = 2.6  # ... above this they pass over the car

    def __post_init__(self) -> None:
        if min(self.max_offset_m, self.converge_per_m, self.behind_m, self.ahead_m) <= 0 or \
                not 0 <= self.lane_inner_m < self.lane_outer_m or self.min_height_m >= self.max_height_m:
            raise ValueError("lane-change assist: max_offset_m, converge_per_m, behind_m, ahead_m must be > 0, "
                             "0 <= lane_inner_m < lane_outer_m and min_height_m < max_height_m")


def next_lane_clear(points: np.ndarray, side: float, cfg: LaneChangeConfig) -> bool:
    """No LiDAR return above the ground in the next lane on ``side`` (+1 left, -1 right) over the checked stretch."""
    p = np.asarray(points, float).reshape(-1, 4) if np.asarray(points).size else np.zeros((0, 4))
    p = p[np.all(np.isfinite(p[:, :3]), axis=1) & (p[:, 2] > cfg.min_height_m) & (p[:, 2] < cfg.max_height_m)]
    lateral = side * p[:, 1]
    inside = (lateral > cfg.lane_inner_m) & (lateral < cfg.lane_outer_m) & (p[:, 0] > -cfg.behind_m) & \
        (p[:, 0] < cfg.ahead_m)
    return not inside.any()


class LaneChangeAssist:
    """Call :meth:`wanted` once a decision, then :meth:`apply` to a forward plan where it is."""

    def __init__(self, config: LaneChangeConfig | None = None) -> None:
        self.cfg = config or LaneChangeConfig()
        self.reset()

    def reset(self) -> None:
        self.assisted = 0  # decisions whose plan it moved, for the episode's record
        self.waited = 0  # decisions under a lane-change command with the next lane not clear

    def wanted(self, obs: dict[str, Any], lidar_points: np.ndarray | None) -> bool:
        """Whether the plan is to be taken into the route's lane this decision (a lane change asked, the lane clear)."""
        if not self.cfg.enabled or lidar_points is None:
            return False
        command = int(np.asarray(obs.get("command", [-1])).reshape(-1)[0])
        side = SIDES.get(command)
        if side is None:
            return False
        if not next_lane_clear(lidar_points, side, self.cfg):
            self.waited += 1
            return False
        return True

    def apply(self, plan: Plan, obs: dict[str, Any]) -> Plan:
        kept = keep_on_route(plan, obs, self.cfg.max_offset_m, self.cfg.converge_per_m)
        if kept is None:
            return plan
        self.assisted += 1
        return kept
