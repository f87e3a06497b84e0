"""Recorded human driving replayed as a gymnasium environment, with any recorded car as the ego.

A :class:`Clip` is one recorded car ("each human driver in turn") at one planning time ``t0``,
with enough recorded history before it and future after it. :class:`ReplayEnv` plays the scene
from ``t0 - history`` on:

- **ego**: ``ego_mode="log"`` puts the ego where the human was at every step (open-loop
  evaluation: the agent is shown the human's own history, as NAVSIM and nuPlan do);
  ``ego_mode="drive"`` holds it on the log through the history too, then moves it from ``t0`` on by
  the world's kinematic bicycle from the agent's actions (closed loop);
- **others**: ``others="log"``: every other recorded car at its logged pose (non-reactive, as
  NAVSIM); ``others="reactive"``: a car the driven ego gets in the way of is handed to IDM along
  its own recorded path (:mod:`dualdrive.human.reactive`, as nuPlan's reactive closed loop).

The observation has the keys and units of :meth:`dualdrive.world.world.World.observation`, so
every agent drives a replayed scene through its usual inputs: odometry (speed, acceleration, yaw
rate and the steering angle that the kinematic bicycle needs for that yaw rate), and the
navigation route, which is the human's own future path (what a navigation system showing the
way the driver went would give), continued along the lanelet graph beyond the end of the log.
The sensor suite renders camera, LiDAR and radar from :meth:`ReplayEnv.sensor_scene`.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from highway_env.vehicle.kinematics import Vehicle

from dualdrive.human.reactive import DEVIATION_M, ReactiveTraffic
from dualdrive.human.scene import HumanScene
from dualdrive.sensors.scene import (CAR_HEIGHT_M, SCENE_RANGE_M, TRUCK_HEIGHT_M, BoxClass, Boxes, LineStyle,
                                     SensorScene)
from dualdrive.world.env import observation_space
from dualdrive.world.geometry import box_corners, boxes_overlap, resample_polyline, world_to_ego, wrap_angle
from dualdrive.world.route import COMMAND_LOOKAHEAD_M, Command
from dualdrive.world.world import (ACCEL_LIMITS_MPS2, MAX_REVERSE_MPS, MAX_STEER_RAD, ROUTE_TARGET_SPACING_M,
                                   ROUTE_TARGETS)

HISTORY_S = 1.0  # what the agent sees of the human's past before it plans
FUTURE_S = 3.0  # how much recorded future a clip needs (the horizon open-loop errors are measured on)
ROUTE_STEP_M = 1.0
ROUTE_EXTENSION_M = 120.0  # the route goes on along the lanelets this far beyond the logged path
TURN_RAD = 0.6  # a route bending this much within TURN_WINDOW_M is announced as a turn
TURN_WINDOW_M = 25.0
TRUCK_LENGTH_M = 7.0
DEFAULT_SPEED_LIMIT_MPS = 29.06  # 65 mph: the US-101 limit; scenarios with speed signs override it
WHEELBASE_M = Vehicle.LENGTH  # highway-env's bicycle: rear and front axle at +-LENGTH/2 from the centre


@dataclass(frozen=True)
class Clip:
    """One recorded car as the ego at planning step ``t0`` (``history`` steps before, ``future`` after)."""

    scene: HumanScene
    ego: int  # index of the ego in the scene's log
    t0: int
    history: int
    future: int

    @property
    def start(self) -> int:
        return self.t0 - self.history

    @property
    def name(self) -> str:
        return f"{self.scene.log.name}/{int(self.scene.log.ids[self.ego])}@{self.t0}"


def cut_clips(scene: HumanScene, history_s: float = HISTORY_S, future_s: float = FUTURE_S,
              stride_s: float = 1.0) -> list[Clip]:
    """Every (car, t0) of ``scene`` with ``history_s`` of recorded past and ``future_s`` of future, t0 every ``stride_s``."""
    dt = scene.log.dt_s
    h, f = int(round(history_s / dt)), int(round(future_s / dt))
    stride = max(1, int(round(stride_s / dt)))
    clips = []
    for i in range(scene.log.vehicles):
        for a, b in scene.log.runs(i):  # no clip crosses a gap in a track (NGSIM tracks have none)
            clips += [Clip(scene, i, t0, h, f) for t0 in range(a + h, b - f + 1, stride)]
    return clips


def steer_for_yaw_rate(yaw_rate_rps: float, speed_mps: float) -> float:
    """The front-wheel angle at which highway-env's kinematic bicycle turns at ``yaw_rate_rps``."""
    if abs(speed_mps) < 0.5:
        return 0.0
    sin_beta = np.clip(yaw_rate_rps * (WHEELBASE_M / 2) / speed_mps, -0.99, 0.99)
    return float(np.clip(np.arctan(2 * np.tan(np.arcsin(sin_beta))), -MAX_STEER_RAD, MAX_STEER_RAD))


class ReplayEnv(gym.Env):
    """A replayed human scene; see the module doc. Action ``[accel_mps2, steer_rad, gear]`` (used in ``drive`` mode)."""

    metadata = {"render_modes": [], "render_fps": 10}

    def __init__(self, clip: Clip, ego_mode: str = "log", others: str = "log") -> None:
        if ego_mode not in ("log", "drive"):
            raise ValueError(f"ego_mode must be 'log' or 'drive', got {ego_mode!r}")
        self.clip = clip
        self.ego_mode = ego_mode
        if others not in ("log", "reactive"):
            raise ValueError(f"others={others!r}: 'log' (replayed as recorded) or 'reactive' (handed to IDM "
                             "when the ego gets in their way)")
        self.others_mode = others
        self.scene = clip.scene
        self.log = clip.scene.log
        self.dt = self.log.dt_s
        self.observation_space = observation_space()
        self.action_space = spaces.Box(np.array([ACCEL_LIMITS_MPS2[0], -MAX_STEER_RAD, -1.0], np.float32),
                                       np.array([ACCEL_LIMITS_MPS2[1], MAX_STEER_RAD, 1.0], np.float32))
        self._route_xy, self._route_cmd = human_route(clip)
        self._route_s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(self._route_xy, axis=0), axis=1))])
        self._static = _static_layers(clip.scene)
        self._limit = _speed_limit(clip.scene)

    # -- gymnasium ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        c, i = self.clip, self.clip.ego
        self.step_index = c.start
        self.ego = Vehicle(None, self.log.xy[c.start, i].copy(), float(self.log.heading_rad[c.start, i]),
                           float(self.log.speed_mps[c.start, i]))
        self.accel = float(self.log.accel_mps2[c.start, i])
        self.yaw_rate = self._logged_yaw_rate(c.start)
        self.steer = steer_for_yaw_rate(self.yaw_rate, self.ego.speed)
        self.gear = 1
        self.progress_m = 0.0
        self.traffic = ReactiveTraffic(self.log, i) if self.others_mode == "reactive" else None
        self._update_others()
        return self.observation(), {"t_s": 0.0, "dt_s": self.dt, "clip": c.name}

    def step(self, action):
        a = np.asarray(action, float).reshape(-1)
        self.step_index += 1
        if self.ego_mode == "log" or self.step_index <= self.clip.t0:  # the history is the human's in both modes
            self._put_ego_on_log()
        else:
            self._drive_ego(float(a[0]), float(a[1]), 1 if a[2] >= 0 else -1)
        self._update_others()
        self._update_progress()
        over = self.step_index >= min(self.clip.t0 + self.clip.future, self.log.steps - 1)
        return self.observation(), 0.0, False, bool(over), {"t_s": (self.step_index - self.clip.start) * self.dt}

    # -- what the agent gets ------------------------------------------------------------------
    @property
    def ego_xy(self) -> np.ndarray:
        return np.asarray(self.ego.position, float)

    @property
    def ego_heading(self) -> float:
        return float(self.ego.heading)

    @property
    def speed_limit_mps(self) -> float:
        return float(self._limit)

    def observation(self) -> dict[str, np.ndarray]:
        s = self.progress_m + ROUTE_TARGET_SPACING_M * np.arange(1, ROUTE_TARGETS + 1)
        idx = np.minimum(np.searchsorted(self._route_s, s), len(self._route_xy) - 1)
        cmd, dist = self._command_ahead()
        return {
            "speed_mps": np.array([self.ego.speed], np.float32),
            "accel_mps2": np.array([self.accel], np.float32),
            "yaw_rate_rps": np.array([self.yaw_rate], np.float32),
            "steer_rad": np.array([self.steer], np.float32),
            "gear": np.array([self.gear], np.int8),
            "route_xy_ego_m": world_to_ego(self._route_xy[idx], self.ego_xy, self.ego_heading).astype(np.float32),
            "route_command": self._route_cmd[idx].astype(np.int8),
            "command": np.array([cmd], np.int8),
            "command_distance_m": np.array([dist], np.float32),
            "speed_limit_mps": np.array([self._limit], np.float32),
            "route_speed_limit_mps": np.full(ROUTE_TARGETS, self._limit, np.float32),
        }

    def sensor_scene(self) -> SensorScene:
        """This step as the sensors see it (the sensor suite's window on the replay)."""
        t, c = self.step_index, self.ego_xy
        all_xy, all_h, all_v, present = self.others
        others = present & (np.linalg.norm(np.nan_to_num(all_xy) - c, axis=1) < SCENE_RANGE_M)
        xy, h = all_xy[others], all_h[others]
        length, width = self.log.length_m[others], self.log.width_m[others]
        truck = length > TRUCK_LENGTH_M
        vel = all_v[others][:, None] * np.column_stack([np.cos(h), np.sin(h)])
        boxes = Boxes(xy, h, length, width, np.where(truck, TRUCK_HEIGHT_M, CAR_HEIGHT_M), vel,
                      np.where(truck, int(BoxClass.TRUCK), int(BoxClass.CAR)).astype(np.int64))
        lights = self.scene.lights
        near = np.linalg.norm(lights.xy - c, axis=1) < SCENE_RANGE_M if len(lights.xy) else np.zeros(0, bool)
        state = lights.at(t)
        on = near & (state >= 0) if len(state) else near
        markings, road = self._static
        return SensorScene(c.copy(), self.ego_heading, float(self.ego.speed), self.yaw_rate, self.accel, self.gear,
                           float(self.log.length_m[self.clip.ego]), float(self.log.width_m[self.clip.ego]), boxes,
                           markings, road, lights.xy[on], lights.facing_rad[on], state[on].astype(np.int8))

    def ego_collides(self) -> bool:
        """Whether the ego's box overlaps another car's at this step."""
        xy, h, _, others = self.others
        if not others.any():
            return False
        ego = box_corners(self.ego_xy, np.array([self.ego_heading]), self.log.length_m[self.clip.ego:self.clip.ego + 1],
                          self.log.width_m[self.clip.ego:self.clip.ego + 1])[0]
        b = box_corners(xy[others], h[others], self.log.length_m[others], self.log.width_m[others])
        return bool(boxes_overlap(ego, b).any())

    # -- internals -----------------------------------------------------------------------------
    def _update_others(self) -> None:
        """Every other car's (xy, heading, speed, present) at this step: the log, or reactive traffic."""
        t, i = self.step_index, self.clip.ego
        if self.traffic is None:
            present = self.log.valid[t].copy()
            present[i] = False
            self.others = (self.log.xy[t], self.log.heading_rad[t], self.log.speed_mps[t], present)
            return
        deviates = not self.log.valid[t, i] or float(np.linalg.norm(self.ego_xy - self.log.xy[t, i])) > DEVIATION_M
        self.others = self.traffic.state(t, self.ego_xy, self.ego_heading, float(self.ego.speed), deviates, self.dt)

    def _logged_yaw_rate(self, t: int) -> float:
        h = self.log.heading_rad[:, self.clip.ego]
        a, b = (t - 1, t) if t > 0 and np.isfinite(h[t - 1]) else (t, t + 1)
        if b >= len(h) or not np.isfinite(h[b]):
            return 0.0
        return float(wrap_angle(h[b] - h[a])) / self.dt

    def _put_ego_on_log(self) -> None:
        t, i = self.step_index, self.clip.ego
        v0 = self.ego.speed
        self.ego.position = self.log.xy[t, i].copy()
        self.ego.heading = float(self.log.heading_rad[t, i])
        self.ego.speed = float(self.log.speed_mps[t, i])
        self.accel = float(self.log.accel_mps2[t, i]) if np.isfinite(self.log.accel_mps2[t, i]) else (
            (self.ego.speed - v0) / self.dt)
        self.yaw_rate = self._logged_yaw_rate(t)
        self.steer = steer_for_yaw_rate(self.yaw_rate, self.ego.speed)

    def _drive_ego(self, accel: float, steer: float, gear: int) -> None:
        v, h0 = float(self.ego.speed), self.ego_heading
        self.gear = gear
        self.steer = float(np.clip(steer, -MAX_STEER_RAD, MAX_STEER_RAD))
        a = float(np.clip(accel, *ACCEL_LIMITS_MPS2)) * gear
        self.ego.action = {"steering": self.steer, "acceleration": a}
        self.ego.step(self.dt)
        if self.ego.speed * gear < 0 and v * gear >= 0:  # braking does not reverse the car
            self.ego.speed = 0.0
        self.ego.speed = float(np.clip(self.ego.speed, -MAX_REVERSE_MPS, Vehicle.MAX_SPEED))
        self.accel = (self.ego.speed - v) / self.dt
        self.yaw_rate = float(wrap_angle(self.ego_heading - h0)) / self.dt

    def _update_progress(self) -> None:
        # progress: the nearest route point within a window ahead of the last one (the route never loops)
        lo = int(np.searchsorted(self._route_s, self.progress_m))
        hi = int(np.searchsorted(self._route_s, self.progress_m + 40.0)) + 1
        d = np.linalg.norm(self._route_xy[lo:hi] - self.ego_xy, axis=1)
        self.progress_m = max(self.progress_m, float(self._route_s[lo + int(np.argmin(d))]))

    def _command_ahead(self) -> tuple[int, float]:
        ahead = (self._route_s >= self.progress_m) & (self._route_s <= self.progress_m + COMMAND_LOOKAHEAD_M)
        idx = np.where(ahead & (self._route_cmd != Command.FOLLOW_LANE))[0]
        if len(idx) == 0:
            return int(Command.FOLLOW_LANE), COMMAND_LOOKAHEAD_M
        return int(self._route_cmd[idx[0]]), max(0.0, float(self._route_s[idx[0]] - self.progress_m))


# -- the route a navigation system would show: where the human went ----------------------------
def human_route(clip: Clip) -> tuple[np.ndarray, np.ndarray]:
    """The human's path from the clip's start to the end of its track, continued along the lanelets,
    resampled every metre; and a :class:`Command` per point (turns where it bends, lane changes where
    it crosses into a neighbouring lanelet)."""
    log, i, lmap = clip.scene.log, clip.ego, clip.scene.map
    last = next(b for a, b in log.runs(i) if a <= clip.start <= b)  # the end of the clip's gap-free stretch
    path = log.xy[clip.start:last + 1, i]
    keep = np.concatenate([[True], np.linalg.norm(np.diff(path, axis=0), axis=1) > 0.05])
    path = path[keep]
    h_end = float(log.heading_rad[last, i])
    tail = _continue_on_lanelets(clip.scene, path[-1], h_end)
    pts = np.concatenate([path, tail]) if len(tail) else path
    if len(pts) < 2:  # a car that never moves: a stub straight ahead so the route has a direction
        pts = np.vstack([pts[:1], pts[:1] + np.array([np.cos(h_end), np.sin(h_end)])])
    xy = resample_polyline(pts, ROUTE_STEP_M)
    return xy, _route_commands(lmap, xy)


def _continue_on_lanelets(scene: HumanScene, xy: np.ndarray, heading: float) -> np.ndarray:
    lmap = scene.map
    k, s, _ = lmap.locate(xy, heading)
    if k < 0:  # off the map: straight on
        return xy + np.outer(np.arange(1, ROUTE_EXTENSION_M + 1), [np.cos(heading), np.sin(heading)])
    parts, total = [], 0.0
    c = lmap.centre[k]
    seg = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1))])
    rest = c[seg > s + 1.0]
    while True:
        parts.append(rest)
        total += float(np.linalg.norm(np.diff(rest, axis=0), axis=1).sum()) if len(rest) > 1 else 0.0
        if total >= ROUTE_EXTENSION_M or not lmap.successors[k]:
            break
        h_out = np.arctan2(*(c[-1] - c[-2])[::-1])
        # the successor that goes on most nearly straight (the human's own turn, if any, is in the log)
        k = min(lmap.successors[k], key=lambda j: abs(wrap_angle(
            np.arctan2(*(lmap.centre[j][1] - lmap.centre[j][0])[::-1]) - h_out)))
        c = rest = lmap.centre[k]
    out = np.concatenate([p for p in parts if len(p)]) if any(len(p) for p in parts) else np.zeros((0, 2))
    if len(out) == 0 or total < ROUTE_EXTENSION_M:  # the map ends: straight on from its last point
        end = out[-1] if len(out) else xy
        h = np.arctan2(*(out[-1] - out[-2])[::-1]) if len(out) > 1 else heading
        more = end + np.outer(np.arange(1, ROUTE_EXTENSION_M - total + 1), [np.cos(h), np.sin(h)])
        out = np.concatenate([out, more]) if len(out) else more
    return out


def _route_commands(lmap, xy: np.ndarray) -> np.ndarray:
    cmd = np.full(len(xy), int(Command.FOLLOW_LANE))
    if len(xy) < 3:
        return cmd
    d = np.diff(xy, axis=0)
    head = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
    head = np.concatenate([head, head[-1:]])
    w = int(TURN_WINDOW_M / ROUTE_STEP_M)
    for k in range(0, len(xy) - w):
        turn = head[k + w] - head[k]
        if abs(turn) > TURN_RAD:
            cmd[k:k + w] = int(Command.TURN_LEFT if turn > 0 else Command.TURN_RIGHT)
    # lane changes: the lanelet under the route switches to its same-direction neighbour
    prev = -1
    for k in range(0, len(xy), 5):
        lane, _, _ = lmap.locate(xy[k], float(head[k]))
        if prev >= 0 and lane >= 0 and lane != prev:
            if lane == lmap.adj_left[prev]:
                cmd[max(0, k - 10):k + 1] = int(Command.CHANGE_LANE_LEFT)
            elif lane == lmap.adj_right[prev]:
                cmd[max(0, k - 10):k + 1] = int(Command.CHANGE_LANE_RIGHT)
        prev = lane if lane >= 0 else prev
    return cmd


def _static_layers(scene: HumanScene) -> tuple[list, list]:
    """Paint and drivable surface of the lanelets, built once per scene (the camera caches them by identity)."""
    cached = getattr(scene, "_sensor_layers", None)
    if cached is not None:
        return cached
    m = scene.map
    markings: list[tuple[np.ndarray, int]] = []
    road = [np.concatenate([m.left[k], m.right[k][::-1]]) for k in range(len(m))]
    for k in range(len(m)):
        markings.append((m.right[k], int(m.right_style[k])))
        if m.adj_left[k] < 0:  # a neighbour's right bound already paints the shared line
            markings.append((m.left[k], int(m.left_style[k])))
    markings = [(p, s) for p, s in markings if s in (LineStyle.DASHED, LineStyle.SOLID)]
    object.__setattr__(scene, "_sensor_layers", (markings, road))
    return markings, road


def _speed_limit(scene: HumanScene) -> float:
    return float(scene.speed_limit_mps or DEFAULT_SPEED_LIMIT_MPS)
