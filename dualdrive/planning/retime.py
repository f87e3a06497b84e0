"""Re-timing a plan: the same path at a different speed profile (wrappers that slow a driver down, System 1's
speed probe that lets it gain speed at a comfortable rate)."""
from __future__ import annotations

import numpy as np

from dualdrive.agents.base import Plan

COMFORT_DECEL_MPS2 = 1.5  # a speed cap is reached from above this fast


def retime_plan(plan: Plan, speed_mps: float, max_speed_mps: float | None = None, max_accel_mps2: float | None = None,
                decel_mps2: float | None = None, cap_decel_mps2: float = COMFORT_DECEL_MPS2) -> Plan:
    """The same path with a slower speed profile: each step's planned speed capped by `max_speed`
    (reached from above at `cap_decel`, a comfortable 1.5 m/s^2 unless given), by the current speed plus
    `max_accel` per second, or braking at `decel` to a stop. Never faster than the plan, never off its path."""
    pts = np.vstack([[0.0, 0.0, 0.0], plan.poses])
    seg = np.linalg.norm(np.diff(pts[:, :2], axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] < 1e-6:
        return plan
    t = plan.dt_s * np.arange(1, len(plan.poses) + 1)
    v0 = abs(float(speed_mps))
    u = seg / plan.dt_s  # planned speed over each step
    if max_speed_mps is not None:
        u = np.minimum(u, np.maximum(max_speed_mps, v0 - cap_decel_mps2 * t))
    mid = t - plan.dt_s / 2  # a step's mean speed is the speed at its middle
    if max_accel_mps2 is not None:
        u = np.minimum(u, v0 + max_accel_mps2 * mid)
    if decel_mps2 is not None:
        u = np.minimum(u, np.maximum(v0 - decel_mps2 * mid, 0.0))
    s_new = np.minimum(np.cumsum(u * plan.dt_s), s[-1])
    poses = np.column_stack([np.interp(s_new, s, pts[:, i]) for i in range(2)]
                            + [np.interp(s_new, s, np.unwrap(pts[:, 2]))])
    return Plan(poses, plan.gear, plan.dt_s)
