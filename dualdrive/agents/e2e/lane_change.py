"""The lane-change rule: where the navigation asks for a lane change, System 1's plan is laid across to the next
lane once the LiDAR shows a gap there, and the change is driven to its end.

Why a rule: the shipped network does not change lanes for the navigation. On P2P 5004 the route moves one lane to
the left 55 m before a left turn (``CHANGE_LANE_LEFT``); the network's plan ends at most 1.5 m to the left, the car
reaches the junction in the lane that goes straight on, stops short of it, creeps and leaves the road. Five of
sixteen P2P drives were lost so on the road (eighth session). A lane change the navigation asks for and the car
carries out when the next lane is clear is what production lane-change assists do.

What it does:
- **The shift.** Under ``CHANGE_LANE_LEFT`` / ``_RIGHT`` the route's targets show where the new lane is: the
  route's polyline jumps from lane to lane in one 30 m segment, so the first target past the last one that carries
  the lane-change command is the switch's end, in the new lane (:func:`switch_end`). Its distance across the road
  from the car, measured square to the road's direction (from the targets still in the car's lane, else the car's
  heading), is the shift to make. A car already within half a lane of it changes nothing (the network, or an
  earlier change, got there first: the command stays up until the car's progress passes the switch).
- **The gap** (:func:`next_lane_clear`): no LiDAR return above the ground in the lane beside, from
  ``behind_m + behind_s * v`` behind the car to ``ahead_m + ahead_s * v`` ahead of it (the expert's gap rule with
  the LiDAR's eyes: it sees no speeds behind). No gap: the network's plan is driven and the rule looks again
  next tick.
- **The manoeuvre.** The rule fixes a road-aligned frame where the change starts and follows the car through it by
  odometry (speed and yaw rate). The path eases the shift in over ``length_s`` seconds of travel (the expert's
  3.5 s; at least ``min_length_m``) on a smooth step; the plan's poses are laid along it at the network's own
  distances, so the network keeps the speed. Once started the change is finished (a half-done change is worse than
  either lane), then the network drives again; only 5 m before a junction is a change still going on let go (the
  route's lane through the junction is turn keeping's then). The plan guard still checks every plan against the
  LiDAR and radar.

Off with ``--no-lane-change`` (``drive``, ``eval``), ``$DUALDRIVE_E2E_LANE_CHANGE=0`` or
``E2EAgent(lane_change=False)``, and in :func:`dualdrive.agents.e2e.agent.network_alone`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dualdrive.agents.base import Plan
from dualdrive.world.commands import JUNCTION_COMMANDS, Command
from dualdrive.world.geometry import wrap_angle

SIDES = {int(Command.CHANGE_LANE_LEFT): 1.0, int(Command.CHANGE_LANE_RIGHT): -1.0}
DEFAULT_DT_S = 0.1
STANDING_MPS = 0.05  # slower than this the car stands: that time does not count towards max_duration_s


@dataclass(frozen=True)
class LaneChangeConfig:
    enabled: bool = True
    lane_width_m: float = 3.5  # one lane across, where the route's geometry does not say (a town lane)
    length_s: float = 3.5  # the change takes this long at the speed it starts at (the expert's LANE_CHANGE_LENGTH_S)
    min_length_m: float = 12.0  # ... and at least this far (a lane across at walking pace: the expert's minimum)
    max_length_m: float = 60.0
    # the gap: the lane beside must be clear of LiDAR returns from behind_m + behind_s * v behind the car's centre to
    # ahead_m + ahead_s * v ahead of it. The LiDAR gives no speeds: a car 1.2 s behind at our speed is the expert's
    # margin for a follower at a similar speed; ahead, the expert's max(6, 0.6 v) gap plus half a car
    behind_m: float = 8.0
    behind_s: float = 1.2
    ahead_m: float = 8.0
    ahead_s: float = 0.6
    lane_inner_m: float = 1.5  # the lane beside starts this far across (our half width + the neighbour's offset)
    lane_outer_extra_m: float = 1.5  # ... and ends this far past the new lane's centre line
    min_height_m: float = 0.3  # returns below this are the ground
    max_height_m: float = 2.6  # ... above this they pass over the car
    min_shift_lanes: float = 0.5  # a change is made only when the new lane is at least this many lanes across
    max_shift_lanes: float = 1.5  # a shift further than this is taken one lane at a time
    finish_m: float = 5.0  # the change counts as done this far past the end of its easing
    # when: the route's switch starts at most half the change's length ahead (the change is then half done where the
    # route's own switch starts, and done before its end: the route switches in the middle of the road's section,
    # and a change started sooner can start before the section does, in the junction before it)
    start_before_frac: float = 0.5
    max_heading_rad: float = 0.15  # ... with the car along the road (not in a turn: the road's direction is unsure)
    max_yaw_rate_rps: float = 0.1
    straight_m: float = 0.7  # the targets before the switch lie this close to one straight line (else: in a turn)
    max_duration_s: float = 15.0  # a change not done after this long on the move is given up
    # a change still going on this close to a junction the route turns or goes straight at is let go: the car is where
    # the route's lane through the junction matters, and a path laid straight across does not turn (P2P 5002)
    junction_release_m: float = 5.0

    def __post_init__(self) -> None:
        positive = (self.lane_width_m, self.length_s, self.min_length_m, self.behind_m, self.ahead_m, self.finish_m)
        positive += (self.start_before_frac, self.max_heading_rad, self.max_yaw_rate_rps, self.straight_m,
                     self.max_duration_s, self.junction_release_m)
        if min(positive) <= 0 or self.max_length_m < self.min_length_m or min(self.behind_s, self.ahead_s) < 0 or \
                not 0 <= self.lane_inner_m or self.lane_outer_extra_m <= 0 or \
                self.min_height_m >= self.max_height_m or not 0 < self.min_shift_lanes < self.max_shift_lanes:
            raise ValueError("lane-change rule: widths, lengths and margins must be > 0 (behind_s, ahead_s >= 0), "
                             "max_length_m >= min_length_m, min_height_m < max_height_m and "
                             "0 < min_shift_lanes < max_shift_lanes")


def switch_end(route_xy: np.ndarray, route_command: np.ndarray, command: int,
               straight_m: float = LaneChangeConfig.straight_m) -> tuple[np.ndarray, np.ndarray] | None:
    """Where the route's lane change ends (ego frame) and the unit direction of the road there, or None.

    The route's targets carry the command of the polyline point they are taken at; the last ones with the lane-change
    command lie in the car's lane at the switch's start, the next one at its end (the polyline has no point in
    between). Once the car is past the switch's start no target carries it, and the first target is the end. The
    road's direction comes from the targets before the switch (they run along the car's lane), else from the end to
    the next target where that one is not in a junction yet, else it is the car's heading. Targets before the switch
    that do not lie on one straight line with the car (within ``straight_m``) say the road bends or turns there, or
    the car is not in the lane the switch starts from: None."""
    r = np.asarray(route_xy, float).reshape(-1, 2)
    c = np.asarray(route_command).reshape(-1).astype(int)
    if len(c) != len(r) or not len(r):
        return None
    finite = np.all(np.isfinite(r), axis=1)
    marked = np.where((c == int(command)) & finite)[0]
    if len(marked):
        k = int(marked[-1])
        after = [i for i in range(k + 1, len(r)) if finite[i] and np.linalg.norm(r[i] - r[k]) > 0.5]
        if not after:
            return None
        end = r[after[0]]
        before = r[[i for i in range(k + 1) if finite[i]]]
        start, last = before[0], r[k]
        if np.linalg.norm(last - start) > 5.0:
            u = (last - start) / np.linalg.norm(last - start)
            pts = np.vstack([[0.0, 0.0], before])  # the car too: it is in the lane the switch starts from
            across = np.abs(u[0] * (pts[:, 1] - start[1]) - u[1] * (pts[:, 0] - start[0]))
            return (end, u) if across.max() <= straight_m else None
        nxt = [i for i in after[1:] if np.linalg.norm(r[i] - end) > 0.5]
    else:
        first = np.where(finite)[0]
        if not len(first):
            return None
        end = r[first[0]]
        nxt = [i for i in first[1:] if np.linalg.norm(r[i] - end) > 0.5]
    straight = [i for i in nxt if c[i] in (int(Command.FOLLOW_LANE), int(command))]
    if straight and nxt and straight[0] == nxt[0]:
        u = r[nxt[0]] - end
        return end, u / np.linalg.norm(u)
    return end, np.array([1.0, 0.0])


def shift_needed(end_xy: np.ndarray, road_dir: np.ndarray) -> float:
    """The signed distance across the road (left > 0) from the car to the line along ``road_dir`` through the
    switch's end: how far over the new lane is."""
    return float(road_dir[0] * end_xy[1] - road_dir[1] * end_xy[0])


def next_lane_clear(points: np.ndarray | None, side: float, shift_m: float, speed_mps: float,
                    cfg: LaneChangeConfig) -> bool:
    """No LiDAR return above the ground in the lane beside on ``side`` (+1 left, -1 right) over the checked stretch
    (``points``: the LiDAR's (N, >=3) x, y, z in the ego frame; None without a LiDAR frame: not clear)."""
    if points is None:
        return False
    p = np.asarray(points, float)
    if not p.size:
        return True
    p = p.reshape(len(p), -1)
    p = p[np.all(np.isfinite(p[:, :3]), axis=1) & (p[:, 2] > cfg.min_height_m) & (p[:, 2] < cfg.max_height_m)]
    v = abs(float(speed_mps))
    lateral = side * p[:, 1]
    inside = (lateral > cfg.lane_inner_m) & (lateral < abs(shift_m) + cfg.lane_outer_extra_m) & \
        (p[:, 0] > -(cfg.behind_m + cfg.behind_s * v)) & (p[:, 0] < cfg.ahead_m + cfg.ahead_s * v)
    return not bool(inside.any())


def smooth_step(t: np.ndarray) -> np.ndarray:
    """0 -> 1 with zero slope and curvature at both ends (a quintic: the lateral jerk stays bounded)."""
    t = np.clip(t, 0.0, 1.0)
    return t**3 * (10.0 - 15.0 * t + 6.0 * t**2)


class LaneChange:
    """Call :meth:`update` once a decision; while :attr:`active`, :meth:`apply` lays a forward plan along the change."""

    def __init__(self, config: LaneChangeConfig | None = None) -> None:
        self.cfg = config or LaneChangeConfig()
        self.reset()

    def reset(self, dt_s: float | None = None) -> None:
        self.dt_s = float(dt_s) if dt_s and np.isfinite(dt_s) and dt_s > 0 else DEFAULT_DT_S
        self.active = False
        self.pose = np.zeros(3)  # the car in the change's road-aligned frame: x, y, heading
        self.shift_m = 0.0  # the lateral shift the change makes, in that frame
        self.length_m = 0.0  # ... eased in over this distance from x = 0
        self.elapsed_s = 0.0  # how long the change has gone on
        self.changes = 0  # changes started this episode
        self.waited = 0  # decisions a change was wanted and the lane beside was not clear
        self.debug: dict[str, Any] = {}

    def update(self, obs: dict[str, Any], speed_mps: float, lidar_points: np.ndarray | None) -> bool:
        """Advance the change by the odometry of the last tick, or start one the route asks for; whether the
        plan is to be laid along a change this decision."""
        if not self.cfg.enabled:
            return False
        if self.active:
            self._advance(obs, speed_mps)
            if _junction_near(obs, self.cfg.junction_release_m):
                self.active = False  # at the junction the route's lane through it is what counts (turn keeping's)
                self.debug = {}
                return False
            # the time counts driving only: a car held mid-change (a red light, the left-turn yield at the junction
            # the change leads to) finishes its change when it moves on (P2P 5015 gave up half way after a 15 s
            # wait and turned left from the wrong lane)
            self.elapsed_s += self.dt_s if np.isfinite(speed_mps) and abs(speed_mps) > STANDING_MPS else 0.0
            if self.pose[0] >= self.length_m + self.cfg.finish_m or self.elapsed_s > self.cfg.max_duration_s:
                self.active = False
                self.debug = {}
            return self.active
        command = int(np.asarray(obs.get("command", [-1])).reshape(-1)[0])
        side = SIDES.get(command)
        if side is None or "route_xy_ego_m" not in obs or "route_command" not in obs:
            return False
        v = abs(float(speed_mps)) if np.isfinite(speed_mps) else 0.0
        length = float(np.clip(self.cfg.length_s * v, self.cfg.min_length_m, self.cfg.max_length_m))
        if _scalar(obs, "command_distance_m") > self.cfg.start_before_frac * length or \
                abs(_scalar(obs, "yaw_rate_rps")) > self.cfg.max_yaw_rate_rps:
            return False
        found = switch_end(obs["route_xy_ego_m"], obs["route_command"], command, self.cfg.straight_m)
        if found is None:
            return False
        end, road = found
        shift = shift_needed(end, road)
        if not (np.all(np.isfinite(road)) and np.isfinite(shift)) or \
                abs(float(np.arctan2(road[1], road[0]))) > self.cfg.max_heading_rad:
            return False
        lanes = side * shift / self.cfg.lane_width_m
        if lanes < self.cfg.min_shift_lanes:
            return False  # already in the new lane (or the route says the other side: not ours to guess)
        if lanes > self.cfg.max_shift_lanes:
            shift = side * self.cfg.lane_width_m
        if not next_lane_clear(lidar_points, side, shift, speed_mps, self.cfg):
            self.waited += 1
            self.debug = {"phase": f"lane change {'left' if side > 0 else 'right'}: waiting for a gap"}
            return False
        self.active = True
        self.changes += 1
        self.shift_m, self.length_m, self.elapsed_s = shift, length, 0.0
        # the car at the origin of the road-aligned frame, heading as far off the road's direction as it is
        self.pose = np.array([0.0, 0.0, -float(np.arctan2(road[1], road[0]))])
        self.debug = {"phase": f"lane change {'left' if side > 0 else 'right'}: {abs(shift):.1f} m over "
                               f"{self.length_m:.0f} m"}
        return True

    def _advance(self, obs: dict[str, Any], speed_mps: float) -> None:
        yaw_rate = _scalar(obs, "yaw_rate_rps")
        v = float(speed_mps) if np.isfinite(speed_mps) else 0.0
        # the car's centre moves at the slip angle off its heading (a kinematic bicycle with the centre half way
        # between the axles): 0.1 rad at the 0.2 rad of steering a change takes, 0.8 m across over a town change
        slip = float(np.arctan(0.5 * np.tan(_scalar(obs, "steer_rad"))))
        h = self.pose[2] + 0.5 * yaw_rate * self.dt_s + slip  # the direction of travel half way through the tick
        self.pose = self.pose + np.array([v * np.cos(h) * self.dt_s, v * np.sin(h) * self.dt_s, yaw_rate * self.dt_s])

    def path(self, ahead_m: float) -> np.ndarray:
        """The change's path (road-aligned frame) from the car's station to ``ahead_m`` past it, every 0.5 m."""
        x = self.pose[0] + np.arange(0.0, ahead_m + 0.5, 0.5)
        return np.column_stack([x, self.shift_m * smooth_step(x / self.length_m)])

    def apply(self, plan: Plan) -> Plan:
        """The plan's poses laid along the change at the distances the network's plan drives (its speed kept)."""
        xy = plan.poses[:, :2]
        along = np.cumsum(np.linalg.norm(np.diff(np.vstack([[0.0, 0.0], xy]), axis=0), axis=1))
        path = self.path(float(along[-1]) + 5.0)
        # the path from the car: it starts where the car is across the road, and joins the change's curve within a
        # few metres (a plan never asks for a sideways jump)
        x0, y0, h0 = self.pose
        offset = y0 - path[0, 1]
        path[:, 1] += offset * np.clip(1.0 - (path[:, 0] - x0) / 6.0, 0.0, 1.0)
        seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        px, py = np.interp(along, s, path[:, 0]), np.interp(along, s, path[:, 1])
        heading = np.arctan2(np.gradient(path[:, 1]), np.gradient(path[:, 0]))
        ph = np.interp(along, s, heading)
        # into the car's frame
        c, sn = np.cos(h0), np.sin(h0)
        dx, dy = px - x0, py - y0
        return Plan(np.column_stack([c * dx + sn * dy, -sn * dx + c * dy, wrap_angle(ph - h0)]), plan.gear)


def _junction_near(obs: dict[str, Any], within_m: float) -> bool:
    """Whether the navigation's next manoeuvre is a junction (turn or straight on) at most ``within_m`` ahead."""
    command = int(np.asarray(obs.get("command", [-1])).reshape(-1)[0])
    return command in JUNCTION_COMMANDS and _scalar(obs, "command_distance_m") <= within_m


def _scalar(obs: dict[str, Any], key: str) -> float:
    try:
        value = float(np.asarray(obs[key]).reshape(-1)[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0.0
    return value if np.isfinite(value) else 0.0
