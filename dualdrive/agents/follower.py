"""Trajectory follower: turns a :class:`Plan` into a :class:`Control` at the simulation rate.

Lateral: pure pursuit of the plan's path by the rear axle (highway-env's bicycle has a 5 m
wheelbase with the centre of gravity half way), the same law forwards and in reverse.
Longitudinal: the constant acceleration that reaches the plan's first pose on time (re-evaluated
every tick, so it acts as a position controller), and a stop profile when the plan ends.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dualdrive.agents.base import Control, Plan
from dualdrive.world.geometry import resample_polyline

WHEELBASE_M = 5.0  # highway-env's bicycle has its axles at the car's ends: heading rate = v tan(steer) cos(beta) / 5


@dataclass
class FollowerConfig:
    lookahead_min_m: float = 2.5
    lookahead_time_s: float = 0.9
    max_steer_rad: float = 0.7
    max_accel_mps2: float = 3.0
    max_decel_mps2: float = 7.0
    stop_decel_mps2: float = 1.5  # comfortable deceleration used to stop at the end of a plan
    stop_tolerance_m: float = 0.03


class TrajectoryFollower:
    def __init__(self, config: FollowerConfig | None = None) -> None:
        self.cfg = config or FollowerConfig()

    def reset(self) -> None:
        pass

    def update(self, plan: Plan, speed_mps: float) -> Control:
        cfg = self.cfg
        g = plan.gear
        pts = np.vstack([[0.0, 0.0], plan.poses[:, :2]])
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        v = abs(speed_mps) if np.sign(speed_mps) in (0, g) else -abs(speed_mps)
        # longitudinal: reach the first pose's along-track position in one plan step; measuring along
        # the direction of travel (not straight-line distance) means a pose left behind brakes
        d1 = g * float(plan.poses[0, 0])
        a = 2 * (d1 - v * plan.dt_s) / plan.dt_s**2
        ends = len(seg) > 1 and seg[-1] < 0.05  # the plan comes to rest
        if ends:
            remaining = g * float(plan.poses[-1, 0]) - cfg.stop_tolerance_m
            v_stop = np.sqrt(2 * cfg.stop_decel_mps2 * max(remaining, 0.0))
            a = min(a, (v_stop - v) / plan.dt_s)
            if remaining <= 0.0:
                a = -min(max(v, 0.0) / 0.1, cfg.max_decel_mps2)
        a = float(np.clip(a, -cfg.max_decel_mps2, cfg.max_accel_mps2))
        return Control(a, self._steer(plan, v, g), g)

    def _steer(self, plan: Plan, v: float, gear: int) -> float:
        """Pure pursuit of the rear axle: its path curvature is tan(steer) / wheelbase in either
        direction of travel, which keeps reversing stable (a centre reference is not)."""
        cfg = self.cfg
        rear = np.array([-WHEELBASE_M / 2, 0.0])
        h = plan.poses[:, 2]
        path = plan.poses[:, :2] - WHEELBASE_M / 2 * np.column_stack([np.cos(h), np.sin(h)])
        ld = max(cfg.lookahead_min_m, cfg.lookahead_time_s * abs(v))
        # extend the plan along its last heading so a target exists however short the plan is
        path = np.vstack([path, path[-1] + gear * (ld + 1.0) * np.array([np.cos(h[-1]), np.sin(h[-1])])])
        dense = resample_polyline(path, 0.2) if len(path) > 1 else path
        dist = np.linalg.norm(dense - rear, axis=1)
        k0 = int(np.argmin(dist))
        beyond = np.where(dist[k0:] >= ld)[0]
        target = dense[k0 + beyond[0]] if len(beyond) else dense[-1]
        rel = target - rear
        kappa = 2.0 * rel[1] / max(float(rel @ rel), 1e-6)
        return float(np.clip(np.arctan(WHEELBASE_M * kappa), -cfg.max_steer_rad, cfg.max_steer_rad))
