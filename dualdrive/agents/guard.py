"""A LiDAR check of a learned plan before it is driven: will the car, following this plan, touch anything?

End-to-end planners in the field keep a rule-based check between the network and the actuators
(UniAD's occupancy-based collision optimisation, SparseDrive's collision-aware rescoring, the AEB
every production car has). This one is sensor-only, like the network it guards: it rolls the car
forward along the plan through the same trajectory follower and bicycle model the drive loop uses,
and tests the car's footprint (plus a margin) against the current LiDAR returns above the ground.

The LiDAR's world is taken to stand still for the check, which is right for what it is for (parked
cars, kerbs, cones, a stopped queue) and wrong for traffic that moves away; so its horizon is short at
speed (an emergency check) and longer at manoeuvring speeds, where everything near is parked. At speed
the front radar adds what the LiDAR cannot tell: how fast what is ahead moves. Each radar return
ahead (confirmed by LiDAR returns beside it where its echo is as weak as clutter) is carried forward at
its Doppler velocity, the ego's own motion taken out, read as motion along the road, over a longer horizon:
the slower car ahead that the plan would run into in two or three seconds. For a car ahead that moves on,
the plan is slowed towards its speed, gently where that clears it and harder where it must (as adaptive
cruise control does); for one that stands, or where slowing down is not enough, the plan is cut short.

What it does with a plan that would touch something, at walking pace in a car-park manoeuvre (leaving
the spot, searching, parking) or standing boxed in: it tries variants of the network's plan (its turn
eased, or turned a little about the rear axle) and, in the car park (elsewhere only after some seconds
boxed in), the network's plan for the other gear, as a driver backs up when the nose will not clear,
keeping to that gear a while so that a multi-point turn holds. With nothing clear all the way, it
drives the candidate that goes furthest, cut where it stops being clear; at speed, the network's path
cut short of the contact. Every path it drives is the network's: eased, turned or cut, never invented.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from dualdrive.agents.base import FORWARD, Plan
from dualdrive.agents.follower import WHEELBASE_M, FollowerConfig, TrajectoryFollower
from dualdrive.planning.retime import retime_plan

# the ego's footprint as the drive loop's bicycle model has it (highway-env's Vehicle: 5 m x 2 m, centre reference)
EGO_LENGTH_M, EGO_WIDTH_M = 5.0, 2.0
MAX_STEER_RATE_RPS = 1.5  # how fast the wheel turns, so the rollout does not steer faster than the car can


@dataclass(frozen=True)
class GuardConfig:
    enabled: bool = True
    step_s: float = 0.2  # rollout step (twice the drive loop's tick: half the cost, and the bicycle
    # model's error over a 2.5 s manoeuvre at walking pace stays a few centimetres)
    horizon_s: float = 0.8  # at speed: an emergency check (everything is assumed to stand still)
    slow_horizon_s: float = 2.5  # at manoeuvring speeds, where what is near is parked
    slow_speed_mps: float = 3.0  # below this the long horizon applies
    margin_long_m: float = 0.5  # clearance ahead of / behind the footprint, at speed
    margin_lat_m: float = 0.2  # ... and beside it
    slow_margin_long_m: float = 0.2  # the same at manoeuvring speeds: a car-park bay leaves ~0.65 m a
    slow_margin_lat_m: float = 0.05  # side, and turning out of it sweeps a front corner into most of that
    min_height_m: float = 0.3  # LiDAR returns below this are the ground
    max_height_m: float = 2.6  # ... and above this pass over the car
    swap_gear_max_speed_mps: float = 1.0  # the other gear's plan is tried only near a standstill
    boxed_in_m: float = 1.0  # off a car-park manoeuvre, only when stopped this close to what blocks the way
    # ... and the other gear's plan off a car-park manoeuvre only once boxed in this many decisions in a row
    # (a car-park aisle after the spot is left looks like a road to the command; a queue ahead moves off
    # within seconds, and there the network's own plan stands still, so the guard never gets here)
    stuck_decisions: int = 30
    min_creep_m: float = 0.3  # a stop nearer than this is a stop where the car is: no creeping up to contact
    turn_nudges_rad: tuple[float, ...] = (0.15, -0.15, 0.3, -0.3)  # the plan turned about the rear axle, in order
    # after a change of gear the guard made, the network's plan for that gear (eased or turned as it was
    # chosen) is kept for this many decisions while it stays clear, even where the network turns back: a
    # driver backing up to make room backs up far enough, rather than changing gear every tick at the edge
    # of what the check allows
    commit_decisions: int = 15
    # the radar check at speed: each return (the nearest point of what echoed) moves on at its ground speed,
    # read along the car's heading; a plan that would bring the footprint plus these margins onto one within
    # the horizon is slowed or cut. The longer margin ahead keeps a gap: the radar point is a car's rear bumper
    radar: bool = True  # False: the LiDAR check alone (for comparison; the rollout's extension stays)
    radar_horizon_s: float = 3.0
    radar_margin_long_m: float = 2.0
    radar_margin_lat_m: float = 0.3
    # a return weaker than this is believed only with LiDAR obstacle returns within radar_confirm_m of it (the
    # radar's clutter echoes at -15 to -5 dBsm; a car is ~5 dBsm, a pedestrian ~0, a cone ~-7)
    radar_strong_dbsm: float = -4.0
    radar_confirm_m: float = 1.5
    radar_max_azimuth_deg: float = 40.0
    # ... and only on plans that turn less than this over their 4 s: the radar's velocity is read along the
    # car's heading, which through a junction turn is not the road's (there it braked the car in the middle of
    # a left turn, in front of the oncoming traffic it had misread)
    radar_max_turn_deg: float = 15.0
    # a target ahead moving on faster than this is followed: the plan's speed brought down to the target's at
    # the first of these rates that clears it (m/s^2; the follower's hardest is 7)
    radar_follow_min_mps: float = 1.0
    radar_follow_decels_mps2: tuple[float, ...] = (1.5, 3.0, 5.0)

    def __post_init__(self) -> None:
        for name in ("step_s", "horizon_s", "slow_horizon_s", "radar_horizon_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"guard.{name}={getattr(self, name)} must be positive")
        if not 0 < self.radar_max_azimuth_deg < 90 or not 0 < self.radar_max_turn_deg <= 180:
            raise ValueError("guard.radar_max_azimuth_deg must be in (0, 90) and radar_max_turn_deg in (0, 180]")
        if any(a <= 0 for a in self.radar_follow_decels_mps2):
            raise ValueError("guard.radar_follow_decels_mps2 must be positive rates")
        margins = (self.margin_long_m, self.margin_lat_m, self.slow_margin_long_m, self.slow_margin_lat_m,
                   self.radar_margin_long_m, self.radar_margin_lat_m, self.radar_confirm_m)
        if min(margins) < 0 or self.min_height_m >= self.max_height_m:
            raise ValueError("guard margins must be >= 0 and guard.min_height_m < guard.max_height_m")


class Contact(NamedTuple):
    """Where a plan first touches something: when (s), how far along it the car is still clear (m), and the
    speed along the road of the radar target it touches (m/s; None: a LiDAR contact)."""

    t_s: float
    free_m: float
    target_mps: float | None = None


@dataclass(frozen=True)
class Verdict:
    """What the guard made of a plan: the plan to drive, and why it is not the one given (None: it is)."""

    plan: Plan
    reason: str | None = None


def obstacle_points(points: np.ndarray, cfg: GuardConfig) -> np.ndarray:
    """(N, 2) ego-frame x, y of the LiDAR returns that are neither ground nor overhead."""
    p = np.asarray(points, dtype=float).reshape(-1, 4) if np.asarray(points).size else np.zeros((0, 4))
    keep = (p[:, 2] > cfg.min_height_m) & (p[:, 2] < cfg.max_height_m) & np.all(np.isfinite(p[:, :3]), axis=1)
    return p[keep, :2]


def radar_along_heading(returns: np.ndarray, speed_mps: float) -> tuple[np.ndarray, np.ndarray]:
    """Ego-frame (N, 2) positions and ground speeds along the ego's heading of radar returns (range, azimuth,
    range rate, RCS). The radar measures the speed along its line of sight; with the ego's own motion taken out,
    it is read along the heading, as traffic on the road moves."""
    c, s = np.cos(returns[:, 1]), np.sin(returns[:, 1])
    return returns[:, :1] * np.column_stack([c, s]), (returns[:, 2] + float(speed_mps) * c) / c


def radar_targets(returns: np.ndarray, speed_mps: float, obstacles: np.ndarray, cfg: GuardConfig) -> np.ndarray:
    """(M, 4) ego-frame x, y and ground velocity vx, vy of the radar returns to check against. The radar measures
    the velocity along the line of sight only; with the ego's own motion taken out, it is read as motion along
    the ego's heading (traffic ahead and oncoming moves along the road: read along the line of sight, an
    oncoming car in the next lane would head for the radar and look like a collision). Returns wider than
    ``radar_max_azimuth_deg`` are left to the LiDAR check (beside the car that reading does not hold); weak
    echoes count only where the LiDAR confirms something is there."""
    r = np.asarray(returns, dtype=float).reshape(-1, 4) if np.asarray(returns).size else np.zeros((0, 4))
    r = r[np.all(np.isfinite(r), axis=1) & (np.abs(r[:, 1]) <= np.radians(cfg.radar_max_azimuth_deg))]
    if len(r) == 0:
        return np.zeros((0, 4))
    xy, v_along = radar_along_heading(r, speed_mps)
    keep = r[:, 3] >= cfg.radar_strong_dbsm
    if len(obstacles) and not keep.all():
        d2 = ((xy[~keep, None, :] - obstacles[None, :, :2]) ** 2).sum(axis=2)
        keep[~keep] = (d2 <= cfg.radar_confirm_m ** 2).any(axis=1)
    return np.column_stack([xy, v_along, np.zeros(len(r))])[keep]


def first_moving_contact(poses: np.ndarray, step_s: float, targets: np.ndarray, margin_long_m: float,
                         margin_lat_m: float) -> tuple[int, int] | None:
    """(rollout pose, target) indices of the first rollout pose (``step_s`` apart, the first one ``step_s``
    ahead) whose footprint plus the margins takes in a radar target carried forward at its velocity to that
    time, and of the first such target. A target in the bare footprint now does not count (the LiDAR check
    has it)."""
    if len(targets) == 0 or len(poses) == 0:
        return None
    inside_now = (np.abs(targets[:, 0]) < EGO_LENGTH_M / 2) & (np.abs(targets[:, 1]) < EGO_WIDTH_M / 2)
    index = np.flatnonzero(~inside_now)
    targets = targets[index]
    if len(targets) == 0:
        return None
    t = step_s * np.arange(1, len(poses) + 1)[:, None]
    px, py = targets[None, :, 0] + targets[None, :, 2] * t, targets[None, :, 1] + targets[None, :, 3] * t
    c, s = np.cos(poses[:, 2])[:, None], np.sin(poses[:, 2])[:, None]
    dx, dy = px - poses[:, None, 0], py - poses[:, None, 1]
    lx, ly = np.abs(c * dx + s * dy), np.abs(-s * dx + c * dy)
    inside = (lx < EGO_LENGTH_M / 2 + margin_long_m) & (ly < EGO_WIDTH_M / 2 + margin_lat_m)
    hit = np.flatnonzero(inside.any(axis=1))
    if not len(hit):
        return None
    return int(hit[0]), int(index[np.flatnonzero(inside[hit[0]])[0]])


def _plan_at(times: np.ndarray, poses: np.ndarray, plan: Plan, t_s: float, x: float, y: float, h: float) -> Plan:
    """The plan as it would be re-issued at time ``t_s`` from pose (x, y, h) of the plan's own frame: its
    poses ``dt`` apart from ``t_s`` on (the last one held), in the car's frame there. ``times`` and
    ``poses`` are the plan's with the start (0, 0, 0) prepended, the headings unwrapped, and may go on past the
    plan's end (see :func:`rollout`)."""
    tq = np.minimum(t_s + times[1:len(plan.poses) + 1], times[-1])
    px, py, ph = (np.interp(tq, times, poses[:, i]) for i in range(3))
    c, s = np.cos(h), np.sin(h)
    dx, dy = px - x, py - y
    return Plan(np.column_stack([c * dx + s * dy, -s * dx + c * dy, ph - h]), plan.gear, plan.dt_s)


def rollout(plan: Plan, speed_mps: float, steer_rad: float, horizon_s: float, step_s: float = 0.1,
            follower: TrajectoryFollower | None = None) -> np.ndarray:
    """(T, 3) poses (x, y, heading, in the frame of planning) of the car following ``plan`` for ``horizon_s``,
    through the drive loop's follower and highway-env's bicycle model (axles at the car's ends)."""
    follower = follower or TrajectoryFollower(FollowerConfig())
    times = plan.dt_s * np.arange(0, len(plan.poses) + 1)
    poses = np.vstack([[0.0, 0.0, 0.0], plan.poses])
    poses[:, 2] = np.unwrap(poses[:, 2])
    # the car re-plans every tick, so the plan it follows never ends where this one does: beyond its last pose
    # the plan goes on straight at the speed of its last step (a plan that comes to rest stays at rest).
    # Without this, the re-issued plan ran out after a second or so, the follower braked for its end, and a
    # rollout at speed slowed down in the middle of the road (it never reached the slower car it closed on)
    tail = max(horizon_s, plan.dt_s)
    last_step = (poses[-1] - poses[-2]) * (tail / plan.dt_s)
    last_step[2] = 0.0  # straight on, at the last heading
    times = np.append(times, times[-1] + tail)
    poses = np.vstack([poses, poses[-1] + last_step])
    x = y = h = 0.0
    v, steer = float(speed_mps), float(steer_rad)
    out = []
    for k in range(int(round(horizon_s / step_s))):
        ctrl = follower.update(_plan_at(times, poses, plan, k * step_s, x, y, h), v)
        steer = float(np.clip(ctrl.steer_rad, steer - MAX_STEER_RATE_RPS * step_s, steer + MAX_STEER_RATE_RPS * step_s))
        a = ctrl.accel_mps2 * ctrl.gear
        if v * ctrl.gear < -1e-6:  # rolling against the gear: the world brakes to a stop first
            a = -np.sign(v) * min(abs(v) / step_s, 8.0)
        beta = np.arctan(0.5 * np.tan(steer))
        x += v * np.cos(h + beta) * step_s
        y += v * np.sin(h + beta) * step_s
        h += v * np.sin(beta) / (WHEELBASE_M / 2) * step_s
        v_new = v + a * step_s
        v = 0.0 if v_new * ctrl.gear < 0 and v * ctrl.gear >= 0 else v_new  # braking does not reverse the car
        out.append((x, y, h))
        if v == 0.0 and a * ctrl.gear <= 0.0:  # stopped and staying: the rest of the rollout is this pose
            break
    return np.asarray(out, dtype=float).reshape(-1, 3)


def first_contact(poses: np.ndarray, obstacles: np.ndarray, margin_long_m: float, margin_lat_m: float) -> int | None:
    """Index of the first rollout pose whose footprint plus the margins takes in an obstacle point that is
    clear of them now, or whose bare footprint takes in one that is within the margins now. A point inside
    the car's footprint now is contact the car can only move out of, and does not count."""
    if len(obstacles) == 0 or len(poses) == 0:
        return None
    half_l, half_w = EGO_LENGTH_M / 2 + margin_long_m, EGO_WIDTH_M / 2 + margin_lat_m
    reach = float(np.max(np.hypot(poses[:, 0], poses[:, 1]))) + np.hypot(half_l, half_w)
    pts = obstacles[np.hypot(obstacles[:, 0], obstacles[:, 1]) <= reach]
    touching = (np.abs(pts[:, 0]) < EGO_LENGTH_M / 2) & (np.abs(pts[:, 1]) < EGO_WIDTH_M / 2)
    pts = pts[~touching]
    if len(pts) == 0:
        return None
    near = (np.abs(pts[:, 0]) < half_l) & (np.abs(pts[:, 1]) < half_w)  # within the margins already
    c, s = np.cos(poses[:, 2])[:, None], np.sin(poses[:, 2])[:, None]
    dx, dy = pts[None, :, 0] - poses[:, None, 0], pts[None, :, 1] - poses[:, None, 1]
    lx, ly = np.abs(c * dx + s * dy), np.abs(-s * dx + c * dy)
    inside = np.where(near[None, :], (lx < EGO_LENGTH_M / 2) & (ly < EGO_WIDTH_M / 2), (lx < half_l) & (ly < half_w))
    hit = np.flatnonzero(inside.any(axis=1))
    return int(hit[0]) if len(hit) else None


class PlanGuard:
    """Checks a plan against the LiDAR and returns the plan to drive (see the module's docstring)."""

    def __init__(self, config: GuardConfig | None = None) -> None:
        self.cfg = config or GuardConfig()
        self._follower = TrajectoryFollower(FollowerConfig())
        self.interventions = 0  # decisions changed, this episode
        self.gear_swaps = 0
        self._commit_gear, self._commit_left = 0, 0
        self._stuck = 0  # decisions in a row boxed in with nothing to drive

    def reset(self) -> None:
        self.interventions = self.gear_swaps = 0
        self._commit_gear, self._commit_left = 0, 0
        self._stuck = 0

    def contact(self, plan: Plan, speed_mps: float, steer_rad: float, obstacles: np.ndarray,
                targets: np.ndarray | None = None) -> Contact | None:
        """The plan's first contact within the horizon, or None: when the rollout first touches something, and
        how far along it the car is still clear of it. ``targets``: radar targets (:func:`radar_targets`),
        checked at speed over the radar horizon."""
        cfg = self.cfg
        slow = abs(speed_mps) < cfg.slow_speed_mps
        horizon = cfg.slow_horizon_s if slow else cfg.horizon_s
        radar = not slow and plan.gear == FORWARD and targets is not None and len(targets) > 0 \
            and abs(float(plan.poses[-1, 2])) < np.radians(cfg.radar_max_turn_deg) \
            and _anything_near(plan, speed_mps, targets[:, :2], cfg.radar_horizon_s, targets[:, 2:],
                               margin_m=max(cfg.radar_margin_long_m, cfg.radar_margin_lat_m))
        lidar = _anything_near(plan, speed_mps, obstacles, horizon)
        if not (lidar or radar):
            return None
        poses = rollout(plan, speed_mps, steer_rad, max(horizon, cfg.radar_horizon_s) if radar else horizon,
                        cfg.step_s, self._follower)
        n_lidar = int(round(horizon / cfg.step_s))
        k = first_contact(poses[:n_lidar], obstacles, *((cfg.slow_margin_long_m, cfg.slow_margin_lat_m) if slow
                                                         else (cfg.margin_long_m, cfg.margin_lat_m))) if lidar else None
        target_mps = None
        if radar:
            hit = first_moving_contact(poses, cfg.step_s, targets, cfg.radar_margin_long_m, cfg.radar_margin_lat_m)
            if hit is not None and (k is None or hit[0] < k):
                k, target_mps = hit[0], float(targets[hit[1], 2])
        if k is None:
            return None
        path = np.vstack([[0.0, 0.0], poses[:k, :2]])  # up to the last pose clear of it
        return Contact((k + 1) * cfg.step_s, float(np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1))), target_mps)

    def check(self, plan: Plan, speed_mps: float, steer_rad: float, points: np.ndarray,
              alternative: Plan | None = None, car_park: bool = False, radar: np.ndarray | None = None) -> Verdict:
        """The plan to drive. ``alternative``: the network's plan for the other gear, tried near a standstill
        in a car-park manoeuvre (``car_park``); elsewhere only the network's own plan, bent, and only when
        the car stands boxed in (``GuardConfig.boxed_in_m``). ``radar``: the front radar's returns (rows of
        range, azimuth, radial velocity, RCS), for the check at speed."""
        cfg = self.cfg
        if not cfg.enabled:
            return Verdict(plan)
        obstacles = obstacle_points(points, cfg)
        targets = radar_targets(radar, speed_mps, obstacles, cfg) if radar is not None and cfg.radar else None
        if self._commit_left > 0:
            self._commit_left -= 1
            if plan.gear != self._commit_gear and alternative is not None and alternative.gear == self._commit_gear:
                for candidate, what in self._gear_variants(alternative):  # as it was chosen: eased, turned
                    if self.contact(candidate, speed_mps, steer_rad, obstacles) is None:
                        self.interventions += 1
                        return Verdict(candidate, f"keeps to {what} ({self._commit_left} more decisions) "
                                                  "to make room")
                self._commit_left = 0
        hit = self.contact(plan, speed_mps, steer_rad, obstacles, targets)
        if hit is None:
            self._stuck = 0
            return Verdict(plan)
        self.interventions += 1
        t_s, dist_m = hit.t_s, hit.free_m
        if hit.target_mps is not None and hit.target_mps > cfg.radar_follow_min_mps:
            for decel in cfg.radar_follow_decels_mps2:  # a car ahead that moves on: follow it, as gently as will do
                slowed = retime_plan(plan, speed_mps, max_speed_mps=hit.target_mps, cap_decel_mps2=decel)
                if self.contact(slowed, speed_mps, steer_rad, obstacles, targets) is None:
                    return Verdict(slowed, f"the car ahead (radar, {hit.target_mps:.0f} m/s) is {t_s:.1f} s away "
                                           f"on its plan; slowing at {decel:.1f} m/s2")
        # variants are made up only where the network's path is known to be a manoeuvre (leaving the spot,
        # parking) or where the car stands boxed in; in town a bent path is as likely to leave the road.
        # The other gear only in the car park or when stuck: on a road what blocks the way is mostly traffic
        # that will move, and backing into the cars behind to get round it is the worse mistake
        boxed_in = abs(speed_mps) <= 0.5 and dist_m < cfg.boxed_in_m
        self._stuck = self._stuck + 1 if boxed_in else 0
        best: tuple[Plan, str, float] = (plan, "its plan", dist_m)
        if car_park or boxed_in:
            other = alternative if car_park or self._stuck >= cfg.stuck_decisions else None
            for candidate, what in self._fallbacks(plan, speed_mps, other):
                c_hit = self.contact(candidate, speed_mps, steer_rad, obstacles)
                if c_hit is None:
                    self._drove(candidate, plan)
                    return Verdict(candidate, f"its plan touches an obstacle in {t_s:.1f} s; drove {what}")
                if c_hit.free_m > best[2] + 0.05:
                    best = (candidate, what, c_hit.free_m)
        # nothing is clear all the way: the path that goes furthest before it is not (the network's unless a
        # variant goes further), up to where the margin's contact begins, and a stop there. Closer than
        # min_creep_m it stops where it is: no creeping up to contact
        candidate, what, free_m = best
        if free_m < cfg.min_creep_m:
            return Verdict(truncated(plan, 0.0), f"its plan touches an obstacle in {t_s:.1f} s ({dist_m:.1f} m); "
                                                 "stopping")
        if candidate is not plan:
            self._drove(candidate, plan)
        return Verdict(truncated(candidate, free_m), f"its plan touches an obstacle in {t_s:.1f} s ({dist_m:.1f} m); "
                                                     f"{what} up to {free_m:.1f} m")

    def _drove(self, candidate: Plan, plan: Plan) -> None:
        """Book-keeping for a variant driven instead of the network's plan: a change of gear is kept a while."""
        if candidate.gear != plan.gear:
            self.gear_swaps += 1
            self._commit_gear, self._commit_left = candidate.gear, self.cfg.commit_decisions
        self._stuck = 0

    def _fallbacks(self, plan: Plan, speed_mps: float, alternative: Plan | None) -> list[tuple[Plan, str]]:
        """What else may be driven, in order of preference, at manoeuvring speeds only: the network's plan
        with its turn eased (half, then none: backing straight out of a bay before turning, as a driver
        does), turned a little about the rear axle (round the corner of a parked car), then the other gear's
        plan, likewise. At speed nothing but cutting the plan short is safe to make up."""
        cfg = self.cfg
        if abs(speed_mps) >= cfg.slow_speed_mps:
            return []
        g = _gear(plan.gear)
        out = [(straightened(plan, a), f"its {g} plan with {int(100 * (1 - a))} % less turn") for a in (0.5, 0.0)]
        out += [(turned(plan, a), f"its {g} plan turned {np.degrees(a):+.0f} deg") for a in cfg.turn_nudges_rad]
        if alternative is not None and alternative.gear != plan.gear \
                and abs(speed_mps) <= cfg.swap_gear_max_speed_mps:
            out += self._gear_variants(alternative)
        return out

    def _gear_variants(self, alternative: Plan) -> list[tuple[Plan, str]]:
        """The other gear's plan as the network gives it, eased, and straight but turned (wedged across an
        aisle, a driver backs out turning the other way: the multi-point turn)."""
        ga = _gear(alternative.gear)
        out = [(straightened(alternative, a), f"its {ga} plan" + (f" with {int(100 * (1 - a))} % less turn"
                                                                  if a < 1 else "")) for a in (1.0, 0.5, 0.0)]
        return out + [(turned(straightened(alternative, 0.0), a), f"its {ga} plan straight, turned "
                       f"{np.degrees(a):+.0f} deg") for a in self.cfg.turn_nudges_rad]


def _anything_near(plan: Plan, speed_mps: float, obstacles: np.ndarray, horizon_s: float,
                   velocities: np.ndarray | None = None, margin_m: float = 0.5) -> bool:
    """Whether any obstacle point is near enough to the plan for the rollout to be worth running: within
    the footprint's reach (plus ``margin_m``, at least the largest margin checked, and a metre for the
    follower cutting corners) of the plan's path, itself no longer than the car can drive in the horizon at
    up to 3 m/s^2. ``velocities``: the points move (radar targets): each is taken anywhere on its way over
    the horizon."""
    if len(obstacles) == 0:
        return False
    reach = np.hypot(EGO_LENGTH_M / 2 + margin_m, EGO_WIDTH_M / 2 + margin_m) + 1.0
    travel = abs(speed_mps) * horizon_s + 1.5 * horizon_s**2 + reach
    if velocities is not None:  # where each target is at seven times over the horizon
        obstacles = np.vstack([obstacles + f * horizon_s * velocities for f in np.linspace(0.0, 1.0, 7)])
    pts = obstacles[np.hypot(obstacles[:, 0], obstacles[:, 1]) <= travel]
    if len(pts) == 0:
        return False
    path = np.vstack([[0.0, 0.0], plan.poses[:, :2]])
    dense = np.vstack([path[0]] + [np.linspace(a, b, max(2, int(np.ceil(np.linalg.norm(b - a) / 0.5)) + 1))[1:]
                                   for a, b in zip(path[:-1], path[1:])])
    near = np.min(((pts[:, None, :] - dense[None, :, :]) ** 2).sum(axis=2), axis=1)
    return bool(np.any(near <= reach**2))


def truncated(plan: Plan, distance_m: float) -> Plan:
    """The plan's path cut ``distance_m`` along it (its poses' timing kept up to there), at rest from then on:
    the follower brakes to a stop at the cut."""
    path = np.vstack([[0.0, 0.0, 0.0], plan.poses])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path[:, :2], axis=0), axis=1))])
    d = float(np.clip(distance_m, 0.0, arc[-1]))
    end = np.array([np.interp(d, arc, path[:, i]) for i in range(3)])
    poses = plan.poses.copy()
    beyond = arc[1:] >= d
    poses[beyond] = end
    return Plan(poses, plan.gear, plan.dt_s)


def straightened(plan: Plan, amount: float) -> Plan:
    """The plan with its sideways offsets and heading changes scaled by ``amount`` (0: straight along the
    car's axis), its progress along the axis kept."""
    p = plan.poses.copy()
    p[:, 1:] *= amount
    return Plan(p, plan.gear, plan.dt_s)


def turned(plan: Plan, angle_rad: float) -> Plan:
    """The plan rotated by ``angle_rad`` (> 0: to the left) about the rear axle, the point the follower
    steers (rotated about the car's centre, the path would barely move where the follower looks)."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    p = plan.poses
    x, y = p[:, 0] + WHEELBASE_M / 2, p[:, 1]
    return Plan(np.column_stack([c * x - s * y - WHEELBASE_M / 2, s * x + c * y, p[:, 2] + angle_rad]),
                plan.gear, plan.dt_s)


def _gear(g: int) -> str:
    return "forward" if g == FORWARD else "reverse"
