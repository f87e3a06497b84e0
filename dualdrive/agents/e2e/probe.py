"""The speed probe: asking System 1 what it would do at the speed limit, against the inertia problem.

A policy that reads its own speed learns from demonstrations that speed persists: a slow car stays
slow (Codevilla et al., "Exploring the Limitations of Behavior Cloning for Autonomous Driving",
ICCV 2019, call it the inertia problem; "copycat" agents in Wen et al., NeurIPS 2020). dualdrive's
System 1 shows it plainly: slowed to 1.2 m/s behind a car cutting in on the highway, with the road
empty ahead and a 30 m/s limit, it planned 1.1 -> 2.2 m/s over 4 s, re-planned every tick from the
speed it had, and crawled for two minutes (longtail `highway_cut_in`, seed 5000).

The probe asks the same network, on the same frame, with its speed input set to the speed limit
(a second row in the same batch), and the radar's Doppler velocities shifted as the ego's motion at that
speed would shift them (:func:`radar_at_speed`: a standing car ahead must not look as if it kept pace).
Whether that plan holds the speed is the network's own reading of whether anything in the scene (a
car ahead, a red light, a pedestrian, a bend) calls for less: if it holds it, nothing does, and the
slow plan is the network copying its own speed. Then the car drives the probe's plan, the path the
network would take at the limit, reached from the current speed at a comfortable acceleration. If the
probe slows down, the network's own plan stands. The probe is asked only below the limit on the road
(never in a car-park manoeuvre or aisle, where a walking pace is the point), and what it returns still
goes through the plan guard.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dualdrive.agents.base import FORWARD, Plan
from dualdrive.planning.retime import retime_plan


@dataclass(frozen=True)
class SpeedProbeConfig:
    enabled: bool = True
    # the probe's speed: the limit where the car is, up to max_probe_mps (a network trained on demonstrations
    # that never exceed 30 m/s is asked nothing above it); no probe where the limit is below min_probe_mps
    # (car-park aisles: walking pace is the point there)
    min_probe_mps: float = 5.0
    max_probe_mps: float = 30.0
    below_ratio: float = 0.8  # asked only while the car is slower than this share of the probe speed
    # the probe's plan "holds" the speed if no step of it is slower than this share of the probe speed: a car
    # ahead, a red light or a bend makes the network plan to slow down well below that within its 4 s
    hold_ratio: float = 0.85
    accel_mps2: float = 1.5  # how fast the car gains speed towards the probe's plan (a comfortable rate)

    def __post_init__(self) -> None:
        if not 0 < self.min_probe_mps <= self.max_probe_mps:
            raise ValueError("speed probe: need 0 < min_probe_mps <= max_probe_mps")
        if not (0 < self.below_ratio <= 1 and 0 < self.hold_ratio <= 1 and self.accel_mps2 > 0):
            raise ValueError("speed probe: ratios must be in (0, 1] and accel_mps2 positive")


def probe_speed(speed_limit_mps: float, cfg: SpeedProbeConfig) -> float | None:
    """The speed to ask the network about: the limit, at most ``max_probe_mps``; None where the limit is unknown
    or below ``min_probe_mps`` (a car-park aisle's 4 m/s: never a question above the limit)."""
    if not np.isfinite(speed_limit_mps) or speed_limit_mps < cfg.min_probe_mps:
        return None
    return float(min(speed_limit_mps, cfg.max_probe_mps))


def wanted(speed_mps: float, probe_mps: float | None, cfg: SpeedProbeConfig) -> bool:
    """Whether the probe is asked this decision (the caller also keeps it off car-park manoeuvres)."""
    return cfg.enabled and probe_mps is not None and abs(speed_mps) < cfg.below_ratio * probe_mps


def holds_speed(probe_poses: np.ndarray, probe_mps: float, dt_s: float, cfg: SpeedProbeConfig) -> bool:
    """Whether the network's plan at the probe speed keeps every step at ``hold_ratio`` of it or more."""
    poses = np.asarray(probe_poses, float)
    if not np.all(np.isfinite(poses)):
        return False
    step_speeds = np.linalg.norm(np.diff(np.vstack([[0.0, 0.0], poses[:, :2]]), axis=0), axis=1) / dt_s
    return bool(step_speeds.min() >= cfg.hold_ratio * probe_mps)


def radar_at_speed(radar: np.ndarray, count: int, speed_mps: float, probe_mps: float) -> np.ndarray:
    """The model's radar rows (range, azimuth, radial velocity, RCS) as seen from the car at ``probe_mps``
    instead of ``speed_mps``: each real return's radial velocity less the extra ego speed along its line of
    sight (a standing reflector shows -v cos(azimuth)); padding rows stay as they are."""
    out = np.array(radar, dtype=np.float32, copy=True)
    n = max(0, min(int(count), len(out)))
    out[:n, 2] -= np.float32(probe_mps - speed_mps) * np.cos(out[:n, 1])
    return out


def sped_up(plan: Plan, probe_plan: Plan, speed_mps: float, cfg: SpeedProbeConfig) -> Plan:
    """The probe's plan, its speed reached from ``speed_mps`` at ``accel_mps2``: the path the network takes
    at the limit, at no more than the network's own speed there. A plan that is not forward stays as it is."""
    if plan.gear != FORWARD or probe_plan.gear != FORWARD:
        return plan
    return retime_plan(probe_plan, speed_mps, max_accel_mps2=cfg.accel_mps2)
