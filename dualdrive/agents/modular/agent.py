"""The modular baseline ``modular``: perception -> prediction -> planning -> control, from the
sensor suite only (no map, no ground truth), as the traditional pipeline the seed contrasts with
end-to-end driving.

Each tick: dead-reckon the ego's pose (odometry frame), detect objects in the LiDAR scan and track
them, read the traffic light from the camera, predict every track, then plan on the navigation
route (a Frenet lattice with IDM speed profiles), or run a low-speed manoeuvre (leaving the spot,
reversing into a free bay). The shared trajectory follower turns the plan into controls.

Faults: a missing LiDAR frame keeps the tracks coasting on their prediction; after
``LIDAR_BLIND_S`` without LiDAR the agent stops, as it no longer knows what is ahead. A missing
camera frame keeps the last light reading for a moment, then counts the light as unknown, which
near a junction means stopping. NaN in the odometry or the route gives a stop plan and a warning.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from dualdrive.agents.base import FORWARD, PLAN_POSES, REVERSE, Agent, Plan
from dualdrive.agents.modular.lanes import LaneEstimate, LaneTracker, classify_pixels, frenet, ground_table, lane_evidence
from dualdrive.agents.modular.parking import (PRE_POSE_OFFSETS_M, Bay, SpotFinder, bay_from_neighbours, correction_obstacles,
                                              correction_path, leave_path, moving_xy, park_path, standing_detections)
from dualdrive.agents.modular.perception import (AMBER, GREEN, RED, OdometryPose, Tracker, detect_objects,
                                                 read_traffic_light)
from dualdrive.agents.modular.planning import EGO_LENGTH_M, LatticePlanner, PlannerConfig, ReferencePath, plan_poses, project
from dualdrive.agents.modular.prediction import constant_velocity, lane_aware
from dualdrive.planning.manoeuvre import ManoeuvreTracker, plan_path
from dualdrive.sensors.camera import CameraConfig
from dualdrive.world.commands import JUNCTION_COMMANDS, junction_entry_target
from dualdrive.world.route import Command

log = logging.getLogger(__name__)

DT_S = 0.1  # the policy rate of dualdrive's envs
LIDAR_BLIND_S = 0.5
CAMERA_HOLD_S = 1.0  # a light reading stays good this long without a camera frame
LIGHT_WATCH_M = 60.0  # lights matter this close to a junction on the route
AMBER_DECEL_MPS2 = 3.0  # amber: stop if this deceleration suffices, else go on
# the front camera (1.5 m up, pitched 6 deg down, 45 deg vertical field) loses a light head 4.5 m up
# within about 8 m: first in line at a red light, the car stands this far back so it sees the green
LIGHT_STOP_BACK_M = 6.0
JUNCTION_KEEP_LANE_M = 40.0  # no lane change round a blocker this close to a junction on the route
BAY_REFINE_M = 1.5  # a refined bay centre this close to the chosen one is the same bay
APPROACH_STOP_M = 0.5
PLAN_EGO_HALF_M = EGO_LENGTH_M / 2
# parked further than this from the bay its neighbours show, the car corrects (the world accepts 0.5 m;
# a neighbour stands within about 0.15 m of its bay's centre)
PARK_CORRECT_M = 0.3
PARK_CORRECT_YAW_RAD = np.radians(4.0)  # or askew by more than this (the world accepts 10 degrees; a neighbour
# stands within about 2 degrees of its bay's axis)
MAX_PARK_CORRECTIONS = 2
ROUTE_END_OVERRUN_M = 3.0  # the route is complete when the ego's centre reaches its end: stop a little beyond  # the pre-pose is reached when the ego stands this close to it


class Phase(Enum):
    LEAVE = "leave_spot"
    DRIVE = "drive"
    APPROACH = "approach_bay"
    PARK = "park"
    DONE = "done"


@dataclass
class ModularConfig:
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    lane_aware_prediction: bool = True
    camera: CameraConfig = field(default_factory=CameraConfig)  # the front camera's calibration
    lane_changes: bool = True  # round a static blocker, into a perceived lane of our direction


class ModularAgent(Agent):
    name = "modular"
    uses_sensors = True

    def __init__(self, config: ModularConfig | None = None) -> None:
        self.cfg = config or ModularConfig()

    def reset(self, info: dict[str, Any]) -> None:
        self.pose = OdometryPose()
        self.tracker = Tracker(dt_s=DT_S)
        self.lane_tracker = LaneTracker()
        self.lanes = LaneEstimate()
        self.ground = ground_table(self.cfg.camera)
        self.ref = ReferencePath()
        self.planner = LatticePlanner(self.cfg.planner)
        self.spots = SpotFinder()
        self.phase: Phase | None = None
        self.manoeuvre: ManoeuvreTracker | None = None
        self.bay: Bay | None = None
        self.corrections = 0
        self.pre_xy: np.ndarray | None = None
        self.t = 0.0
        self.first = True
        self.light: int | None = None
        self.red_latched = False
        self.light_t = -np.inf
        self.lidar_t = 0.0
        self.warned: set[str] = set()
        self.debug: dict = {}

    # -- the tick ------------------------------------------------------------------------------
    def act(self, obs: dict[str, np.ndarray]) -> Plan:
        bad = _bad_inputs(obs)
        if bad:
            self._warn(f"observation has NaN/inf or missing {bad}: stopping")
            return _stop_plan()
        speed = float(obs["speed_mps"][0])
        if not self.first:
            self.pose.advance_bicycle(speed, float(obs["accel_mps2"][0]), float(obs.get("steer_rad", [0.0])[0]),
                                      float(obs["yaw_rate_rps"][0]), DT_S)
        self.first = False
        self.t += DT_S
        detections = self._perceive(obs)
        command = int(obs["command"][0])
        if self.phase is None:
            self.phase = Phase.LEAVE if command == Command.LEAVE_SPOT else Phase.DRIVE
            if self.phase == Phase.LEAVE:
                # the spot we leave is not a destination: parking back in it is no trip at all
                self.spots.rejected.append(self.pose.xy.copy())
                boxes = _boxes(detections)
                self.manoeuvre = ManoeuvreTracker(leave_path(obs["route_xy_ego_m"], boxes))
        self.debug = {"phase": self.phase.value}
        if self.phase == Phase.LEAVE:
            plan = self._manoeuvre_plan(speed)
            if plan is not None:
                return plan
            self.phase = Phase.DRIVE
        if self.phase == Phase.PARK:
            plan = self._manoeuvre_plan(speed)
            if plan is not None:
                return plan
            self.phase = Phase.DONE
        if self.phase == Phase.DONE:
            plan = self._correct_parking(detections, speed)
            return plan if plan is not None else _stop_plan()
        return self._drive(obs, speed, detections, command)

    # -- perception ----------------------------------------------------------------------------
    def _perceive(self, obs) -> list:
        detections: list = []
        if int(obs.get("lidar_valid", [0])[0]):
            n = int(obs["lidar_num_points"][0])
            self.points = obs["lidar_points_m"][:n]
            detections = detect_objects(self.points)
            self.lidar_t = self.t
        else:
            self.points = np.zeros((0, 4), np.float32)
        self.tracks = self.tracker.update(detections, self.pose)
        if int(obs.get("radar_valid", [0])[0]) and np.isfinite(obs["speed_mps"][0]):
            returns = obs["radar_returns"][: int(obs["radar_num_returns"][0])]
            self.tracker.fuse_radar(returns[np.all(np.isfinite(returns), axis=1)], self.pose, float(obs["speed_mps"][0]))
        if int(obs.get("camera_front_valid", [0])[0]):
            self.light = read_traffic_light(obs["camera_front_rgb"])
            self.light_t = self.t
        elif self.t - self.light_t > CAMERA_HOLD_S:
            self.light = None
            self.light_t = -np.inf
        self.detections = detections
        return detections

    # -- driving on the route ------------------------------------------------------------------
    def _drive(self, obs, speed: float, detections, command: int) -> Plan:
        path = self.ref.update(self.pose, obs["route_xy_ego_m"])
        s_ego = float(project(path, self.pose.xy)[0][0])
        pred = lane_aware(self.tracks, path) if self.cfg.lane_aware_prediction else constant_velocity(self.tracks)
        stops = []
        command, dist = junction_ahead(obs, self.pose, path, s_ego)
        light_stop = self._light_stop(command, dist, speed)
        if light_stop:
            stops.append(s_ego + dist - LIGHT_STOP_BACK_M)
        if self.t - self.lidar_t > LIDAR_BLIND_S:
            self._warn("no LiDAR frame for a while: stopping until it is back")
            stops.append(s_ego)
        # the route's end: stand there (the last target stays put once the route runs out)
        stops.append(float(project(path, path[-1:])[0][0]) + ROUTE_END_OVERRUN_M)
        limit = float(obs.get("speed_limit_mps", [13.9])[0])
        ahead_limits = obs.get("route_speed_limit_mps")
        if ahead_limits is not None:  # slow down in time for a lower limit ahead (a ramp, the lot)
            d_ahead = 8.0 * np.arange(1, len(ahead_limits) + 1)
            limit = min(limit, float(np.min(np.sqrt(ahead_limits**2 + 2 * 1.5 * np.maximum(d_ahead - 8.0, 0.0)))))
        parking = command == Command.PARK or int(obs["route_command"][0]) == Command.PARK
        if self.phase == Phase.DRIVE and parking:
            self._search(path, s_ego)
        if self.phase == Phase.APPROACH:
            self._refine_bay(path, s_ego)
            pre_s = float(project(path, self.pre_xy[None])[0][0])
            # a stop is where the front stands: put the ego's centre on the pre-pose
            stops.append(pre_s + PLAN_EGO_HALF_M + self.planner.cfg.stop_s0_m)
            if abs(pre_s - s_ego) < APPROACH_STOP_M and abs(speed) < 0.05:
                return self._start_parking(speed)
        self.lanes = self._lanes(obs, path, s_ego)
        # no lane change towards a junction the route turns at, nor in a queue at a red light: the lane
        # the route takes through the junction is the one to be in
        may_change = (self.cfg.lane_changes and not light_stop
                      and not (command in JUNCTION_COMMANDS and dist < JUNCTION_KEEP_LANE_M))
        traj = self.planner.plan(self.pose, speed, path, pred, limit, stops, lanes=self.lanes, may_change=may_change)
        self.debug.update(light=self.light, light_stop=light_stop, safe=traj.safe, tracks=len(self.tracks),
                          lanes=np.round(self.lanes.centres_d_m, 2).tolist(), offset=traj.offset_lanes)
        return Plan(plan_poses(traj, self.pose), FORWARD)

    def _lanes(self, obs, path: np.ndarray, s_ego: float) -> LaneEstimate:
        """The lanes beside the route from the front camera (held while a frame is missing)."""
        key = f"camera_{self.cfg.camera.name}"
        if not int(obs.get(f"{key}_valid", [0])[0]) or len(path) < 2:
            return self.lane_tracker.update(None)
        xy = self.pose.to_odom(self.ground.xy_ego)
        frame = lane_evidence(classify_pixels(obs[f"{key}_rgb"]), self.ground, frenet(path, xy), s_ego)
        return self.lane_tracker.update(frame)

    def _light_stop(self, command: int, dist: float, speed: float) -> bool:
        """Stop for red, and for amber where a comfortable stop is possible. The camera loses our
        light's head (4.5 m up) within about 8 m of it, so a red seen stays red until a green is seen."""
        if command not in JUNCTION_COMMANDS or dist > LIGHT_WATCH_M:
            self.red_latched = False
            return False
        if self.light == GREEN:
            self.red_latched = False
        elif self.light == RED:
            self.red_latched = True
        elif self.light == AMBER and speed * speed / (2 * AMBER_DECEL_MPS2) < dist - 1.0:
            self.red_latched = True
        return self.red_latched

    # -- parking -------------------------------------------------------------------------------
    def _standing(self) -> list:
        return standing_detections(self.detections, self.tracks, self.pose)

    def _look_around(self, path: np.ndarray) -> None:
        """Parked cars, bays seen empty and the returns park paths must keep clear of, from this scan."""
        self.spots.add_cars(self._standing(), self.pose)
        self.spots.observe(path, self.pose, self.points)
        self.spots.returns.add(self.points, self.pose, moving_xy(self.tracks), self.t)

    def _search(self, path: np.ndarray, s_ego: float) -> None:
        self._look_around(path)
        obstacles = self.spots.returns.points(self.t)
        seg = np.diff(path, axis=0)
        s_pts = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=1))])
        head = np.unwrap(np.arctan2(seg[:, 1], seg[:, 0]))
        for bay in self.spots.free_bays(path, s_ego):
            for off in PRE_POSE_OFFSETS_M:
                s_pre = bay.s_m + off
                if s_pre - s_ego < 3.0 or s_pre > s_pts[-1]:
                    continue  # too close to stop there, or beyond what the route shows
                pre = OdometryPose(np.array([np.interp(s_pre, s_pts, path[:, 0]), np.interp(s_pre, s_pts, path[:, 1])]),
                                   float(np.interp(s_pre, s_pts[:-1], head)))
                if park_path(pre, bay, obstacles) is not None:
                    self.bay, self.pre_xy, self.phase = bay, pre.xy, Phase.APPROACH
                    return
            self.spots.reject(bay)

    def _refine_bay(self, path: np.ndarray, s_ego: float) -> None:
        """Passing the bay, LiDAR sees its neighbours' sides: their gap fixes the bay's centre."""
        self._look_around(path)
        near = [b for b in self.spots.free_bays(path, s_ego, min_frames=1)
                if np.linalg.norm(b.xy - self.bay.xy) < BAY_REFINE_M]
        if near:
            self.bay = min(near, key=lambda b: np.linalg.norm(b.xy - self.bay.xy))

    def _start_parking(self, speed: float) -> Plan:
        segs = park_path(self.pose, self.bay, self.spots.returns.points(self.t))
        if segs is None:  # the stop was a little off: take the path unchecked rather than give up
            segs = plan_path((*self.pose.xy, self.pose.heading_rad), (*self.bay.xy, self.bay.heading_rad), REVERSE)
        self.manoeuvre = ManoeuvreTracker(segs)
        self.phase = Phase.PARK
        plan = self._manoeuvre_plan(speed)
        return plan if plan is not None else _stop_plan()

    def _correct_parking(self, detections, speed: float) -> Plan | None:
        """Standing in the bay, its neighbours show where the bay really is: the estimate the car
        reversed in on can be a metre or two off (a bay's centre seen from the aisle, at an angle).
        Off by more than PARK_CORRECT_M or askew by more than PARK_CORRECT_YAW_RAD, the car drives out a little
        and reverses in again, squared up to the neighbours."""
        if self.corrections >= MAX_PARK_CORRECTIONS or abs(speed) > 0.05:
            return None
        fix = bay_from_neighbours(detections, self.points)
        if fix is None or (np.linalg.norm(fix.centre) < PARK_CORRECT_M and abs(fix.yaw_rad) < PARK_CORRECT_YAW_RAD):
            return None
        # squared up to the row as well: the goal's heading is the neighbours' axis, not the car's own (which
        # kept P2P 5002 7-10 degrees askew through two corrections)
        goal = Bay(self.pose.to_odom(fix.centre), self.pose.heading_rad + fix.yaw_rad, 0.0)
        xy, yaw, length, width = correction_obstacles(detections, self.points)
        obstacles = (self.pose.to_odom(xy).reshape(-1, 2), yaw + self.pose.heading_rad, length, width)
        segs = correction_path(self.pose, goal, obstacles)
        if segs is None:
            return None
        self.corrections += 1
        self.bay = goal
        self.manoeuvre = ManoeuvreTracker(segs)
        self.phase = Phase.PARK
        self.debug["correction"] = [*np.round(fix.centre, 2).tolist(), round(float(np.degrees(fix.yaw_rad)), 1)]
        return self._manoeuvre_plan(speed)

    def _manoeuvre_plan(self, speed: float) -> Plan | None:
        tr = self.manoeuvre
        if tr is None or tr.done:
            return None
        poses, gear = tr.plan(self.pose.xy, self.pose.heading_rad, speed)
        if tr.done:
            return None
        return Plan(poses, gear)

    def _warn(self, msg: str) -> None:
        if msg not in self.warned:
            self.warned.add(msg)
            log.warning("modular agent: %s", msg)


def junction_ahead(obs, pose: OdometryPose, path: np.ndarray, s_ego: float) -> tuple[int, float]:
    """The navigation's next command and the distance to it, looking past a lane change to the
    junction behind it. The announced ``command`` is only the next manoeuvre: a lane change just
    before a junction hides the junction's turn until the lane change is done, which can be a few
    metres before the stop line, too late to stop well back for a red (and a car standing at the
    line no longer sees the light). The route's per-target commands show the junction earlier: the
    distance to the last of its targets is the junction's entry, up to one target spacing short
    (stopping a little early is the safe side; the exact distance comes with the command)."""
    command, dist = int(obs["command"][0]), float(obs["command_distance_m"][0])
    if command in JUNCTION_COMMANDS:
        return command, dist
    route_cmd = np.asarray(obs.get("route_command", []), int).reshape(-1)
    k = junction_entry_target(route_cmd)
    if k is None:
        return command, dist
    s_junction = float(project(path, pose.to_odom(np.asarray(obs["route_xy_ego_m"][k], float)))[0][0])
    return int(route_cmd[k]), max(0.0, s_junction - s_ego)


def _boxes(detections) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (np.array([d.xy for d in detections]).reshape(-1, 2), np.array([d.yaw_rad for d in detections]),
            np.array([d.length_m for d in detections]), np.array([d.width_m for d in detections]))


def _stop_plan() -> Plan:
    return Plan(np.zeros((PLAN_POSES, 3)), FORWARD)


def _bad_inputs(obs) -> list[str]:
    bad = []
    for key in ("speed_mps", "accel_mps2", "yaw_rate_rps", "route_xy_ego_m", "command", "command_distance_m"):
        v = obs.get(key)
        if v is None or not np.all(np.isfinite(np.asarray(v, float))):
            bad.append(key)
    return bad
