"""Re-timing a plan: the same path at a different speed profile (wrappers that slow a driver down, System 1's
speed probe that lets it gain speed at a comfortable rate, its red-light rule that stops it short of a junction)."""
from __future__ import annotations

import numpy as np

from dualdrive.agents.base import Plan

COMFORT_DECEL_MPS2 = 1.5  # a speed cap is reached from above this fast


def retime_plan(plan: Plan, speed_mps: float, max_speed_mps: float | None = None, max_accel_mps2: float | None = None,
                decel_mps2: float | None = None, cap_decel_mps2: float = COMFORT_DECEL_MPS2,
                stop_at_m: float | None = None, stop_decel_mps2: float = 2.0) -> Plan:
    """The same path with a slower speed profile: each step's planned speed capped by `max_speed`
    (reached from above at `cap_decel`, a comfortable 1.5 m/s^2 unless given), by the current speed plus
    `max_accel` per second, or braking at `decel` to a stop. Never faster than the plan, never off its path.

    `stop_at_m`: also no faster than lets the car stop `stop_at_m` along the path braking at `stop_decel`
    (harder if it must: the deceleration that stops it there from the current speed), wherever the path ends.
    The car drives at the plan's pace up to where it has to brake, rather than standing at the stop from the
    plan's next step on, which asked the follower for the whole stop in one step (it overran by metres)."""
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
    if stop_at_m is not None:
        s_new = _stopping(s_new, t, v0, max(0.0, float(stop_at_m)), stop_decel_mps2)
    poses = np.column_stack([np.interp(s_new, s, pts[:, i]) for i in range(2)]
                            + [np.interp(s_new, s, np.unwrap(pts[:, 2]))])
    return Plan(poses, plan.gear, plan.dt_s)


def _stopping(s_plan: np.ndarray, t: np.ndarray, v0: float, stop_m: float, decel_mps2: float,
              step_s: float = 0.1) -> np.ndarray:
    """Progress at the times ``t`` never ahead of ``s_plan`` and never faster than a stop at ``stop_m`` allows
    (v <= sqrt(2 a (stop - s)), integrated in ``step_s`` steps)."""
    a = max(decel_mps2, v0 * v0 / (2 * max(stop_m, 1e-3)))
    times = np.arange(1, int(round(t[-1] / step_s)) + 1) * step_s
    plan_at = np.interp(times, np.concatenate([[0.0], t]), np.concatenate([[0.0], s_plan]))
    s, out = 0.0, np.empty(len(times))
    for k, cap in enumerate(plan_at):
        s = min(s + np.sqrt(2 * a * max(stop_m - s, 0.0)) * step_s, cap, stop_m)
        out[k] = s
    return np.interp(t, times, out)
