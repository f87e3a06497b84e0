"""Low-speed manoeuvres (the expert and the modular planner share them): Reeds-Shepp paths (``rsplan``) checked against
the parked cars, and a tracker that turns the current gear segment into a plan.

Reeds-Shepp curves describe the rear axle (the point whose velocity is along the heading), so
paths are planned for the rear axle and converted to centre poses only for plans and collision
checks (highway-env's bicycle has its rear axle half a car length behind the centre).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rsplan
from scipy.spatial import cKDTree

from dualdrive.agents.base import PLAN_DT_S, PLAN_POSES
from dualdrive.world.geometry import box_corners, boxes_overlap, world_to_ego

REAR_AXLE_M = 2.5  # from the car's centre back to its rear axle
TURN_RADIUS_M = 6.5  # rear-axle radius; the tightest is 5.9 m, the margin leaves steering to correct errors
PATH_STEP_M = 0.1
FINAL_STRAIGHT_M = 3.0  # every manoeuvre ends with a straight approach, for precision
SPOT_EXIT_M = 4.0  # leaving a spot starts straight out along its axis, clear of the neighbours
MANOEUVRE_SPEED_MPS = 1.6
MANOEUVRE_DECEL_MPS2 = 0.8
CLEARANCE_M = 0.25  # inflation of the ego box when checking a path against parked cars
CUSP_REACHED_M = 0.12


def to_rear(x: float, y: float, h: float) -> tuple[float, float, float]:
    return x - REAR_AXLE_M * np.cos(h), y - REAR_AXLE_M * np.sin(h), h


def centre_of(xy_rear: np.ndarray, heading: np.ndarray) -> np.ndarray:
    return xy_rear + REAR_AXLE_M * np.column_stack([np.cos(heading), np.sin(heading)])


@dataclass
class Segment:
    xy: np.ndarray  # (N, 2) rear-axle positions
    heading: np.ndarray  # (N,)
    gear: int
    s: np.ndarray  # cumulative arc length


def plan_path(start: tuple[float, float, float], goal: tuple[float, float, float], goal_gear: int) -> list[Segment]:
    """Reeds-Shepp path between two centre poses whose last metre and a half is a straight approach
    in ``goal_gear`` (reversing into a spot or driving forward out of one)."""
    start = to_rear(*start)
    gx, gy, gh = to_rear(*goal)
    back = -goal_gear * FINAL_STRAIGHT_M
    pre = (gx + back * np.cos(gh), gy + back * np.sin(gh), gh)
    path = rsplan.path(tuple(map(float, start)), tuple(map(float, pre)), TURN_RADIUS_M, 0.0, PATH_STEP_M)
    wps = [w for w in path.waypoints()]
    pts = np.array([[w.x, w.y, w.yaw] for w in wps])
    gears = np.array([w.driving_direction for w in wps])
    n = int(np.ceil(FINAL_STRAIGHT_M / PATH_STEP_M))
    t = np.linspace(0, 1, n + 1)[1:, None]
    tail = np.array(pre[:2]) * (1 - t) + np.array([gx, gy]) * t
    pts = np.vstack([pts, np.column_stack([tail, np.full(n, gh)])])
    gears = np.concatenate([gears, np.full(n, goal_gear)])
    return _split(pts, gears)


def plan_leave(start: tuple[float, float, float], spot_heading: float, goal: tuple[float, float, float],
               exit_m: float = SPOT_EXIT_M) -> list[Segment]:
    """Straight out of the spot along its axis, then a Reeds-Shepp path to ``goal`` on the aisle."""
    x, y, h = start
    out_dir = spot_heading + np.pi  # from the spot towards the aisle
    gear = 1 if np.cos(h - out_dir) > 0 else -1
    if exit_m <= 0:
        return plan_path(start, goal, 1)
    n = int(np.ceil(exit_m / PATH_STEP_M))
    t = np.linspace(0, exit_m, n + 1)[:, None]
    centre = np.array([x, y]) + t * np.array([np.cos(out_dir), np.sin(out_dir)])
    rear = centre - REAR_AXLE_M * np.array([np.cos(h), np.sin(h)])
    straight = np.column_stack([rear, np.full(n + 1, h)])
    rest = plan_path((centre[-1, 0], centre[-1, 1], h), goal, 1)
    pts = np.vstack([straight] + [np.column_stack([sg.xy, sg.heading]) for sg in rest])
    gears = np.concatenate([np.full(n + 1, gear)] + [np.full(len(sg.xy), sg.gear) for sg in rest])
    return _split(pts, gears)


def _split(pts: np.ndarray, gears: np.ndarray) -> list[Segment]:
    segs = []
    cut = np.where(np.diff(gears) != 0)[0] + 1
    for a, b in zip(np.concatenate([[0], cut]), np.concatenate([cut, [len(pts)]])):
        a0 = max(a - 1, 0)  # segments share their cusp point
        p = pts[a0:b]
        if len(p) < 2:
            continue
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p[:, :2], axis=0), axis=1))])
        if s[-1] < 0.05:
            continue
        segs.append(Segment(p[:, :2], p[:, 2], int(gears[b - 1]), s))
    # merge neighbours that ended up with the same gear after dropping tiny pieces
    merged: list[Segment] = []
    for sg in segs:
        if merged and merged[-1].gear == sg.gear:
            prev = merged[-1]
            xy = np.vstack([prev.xy, sg.xy[1:]])
            hd = np.concatenate([prev.heading, sg.heading[1:]])
            s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
            merged[-1] = Segment(xy, hd, sg.gear, s)
        else:
            merged.append(sg)
    return merged


def path_is_free(segments: list[Segment], obstacles: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                 ego_length: float, ego_width: float, area: np.ndarray | None = None,
                 clearance_m: float = CLEARANCE_M, skip_first_m: float = 0.0) -> bool:
    """No ego box along the path overlaps an obstacle; with ``area`` every box corner stays inside it.
    ``skip_first_m``: the path's first metres are not checked (driving straight out of the spot the
    ego stands in, between its neighbours, is free by construction and narrower than the margin)."""
    xy, h, length, width = obstacles
    for n, sg in enumerate(segments):
        idx = np.arange(0, len(sg.xy), 3)
        if n == 0:
            idx = idx[sg.s[idx] >= skip_first_m]
        boxes = box_corners(centre_of(sg.xy[idx], sg.heading[idx]), sg.heading[idx], np.full(len(idx), ego_length + 2 * clearance_m),
                            np.full(len(idx), ego_width + 2 * clearance_m))
        if len(xy):
            for k, box in enumerate(boxes):
                near = np.linalg.norm(xy - box.mean(axis=0), axis=1) < 9.0
                if near.any() and boxes_overlap(box, box_corners(xy[near], h[near], length[near], width[near])).any():
                    return False
        if area is not None and not _inside_all(boxes.reshape(-1, 2), area):
            return False
    return True


def path_clear_of_points(segments: list[Segment], points_xy: np.ndarray, ego_length: float, ego_width: float,
                         clearance_m: float = CLEARANCE_M) -> bool:
    """No obstacle point (LiDAR returns above the ground, the path's frame) inside the ego box, inflated by
    ``clearance_m``, anywhere along the path. Points, not boxes: a box fitted to a few returns of a
    parked car can stand askew into the next bay, and one fitted to cars merged by the clustering
    covers the gaps between them; the returns are where something is."""
    pts = np.asarray(points_xy, float).reshape(-1, 2)
    if not len(pts):
        return True
    tree = cKDTree(pts)
    half = np.array([ego_length / 2 + clearance_m, ego_width / 2 + clearance_m])
    radius = float(np.hypot(*half))
    for sg in segments:
        idx = np.arange(0, len(sg.xy), 3)
        centres, heads = centre_of(sg.xy[idx], sg.heading[idx]), sg.heading[idx]
        for c, h, near in zip(centres, heads, tree.query_ball_point(centres, radius)):
            if not near:
                continue
            rel = pts[near] - c
            along = rel @ np.array([np.cos(h), np.sin(h)])
            across = rel @ np.array([-np.sin(h), np.cos(h)])
            if np.any((np.abs(along) < half[0]) & (np.abs(across) < half[1])):
                return False
    return True


def _inside_all(pts: np.ndarray, poly: np.ndarray) -> bool:
    d = np.roll(poly, -1, axis=0) - poly
    rel = pts[:, None, :] - poly[None, :, :]
    cross = d[None, :, 0] * rel[:, :, 1] - d[None, :, 1] * rel[:, :, 0]
    return bool(np.all(cross >= -1e-6))


class ManoeuvreTracker:
    """Follows a list of gear segments: plans along the current one, stops at its cusp, flips gear."""

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = segments
        self.k = 0
        self.s = 0.0

    @property
    def done(self) -> bool:
        return self.k >= len(self.segments)

    def remaining_m(self) -> float:
        sg = self.segments[self.k]
        return float(sg.s[-1] - self.s)

    def plan(self, ego_xy: np.ndarray, ego_heading: float, speed: float) -> tuple[np.ndarray, int]:
        sg = self.segments[self.k]
        ego_rear = np.array(to_rear(ego_xy[0], ego_xy[1], ego_heading)[:2])
        # progress: nearest path point a little ahead of where we were (never backwards)
        win = np.where((sg.s >= self.s - 0.3) & (sg.s <= self.s + 3.0))[0]
        d = np.linalg.norm(sg.xy[win] - ego_rear, axis=1)
        self.s = max(self.s, float(sg.s[win[int(np.argmin(d))]]))
        rest = sg.s[-1] - self.s
        if rest < CUSP_REACHED_M and abs(speed) < 0.05:
            self.k += 1
            self.s = 0.0
            if self.done:
                return np.zeros((PLAN_POSES, 3)), sg.gear
            return self.plan(ego_xy, ego_heading, speed)
        # speed profile: cruise, then a comfortable stop at the cusp
        v = abs(speed)
        s_t, out = self.s, []
        for _ in range(PLAN_POSES):
            for _ in range(5):
                left = sg.s[-1] - s_t
                v_cap = min(MANOEUVRE_SPEED_MPS, np.sqrt(2 * MANOEUVRE_DECEL_MPS2 * max(left, 0.0)))
                v = min(v + 1.0 * PLAN_DT_S / 5, v_cap)
                s_t = min(s_t + v * PLAN_DT_S / 5, sg.s[-1])
            out.append(s_t)
        s_arr = np.array(out)
        xy = np.column_stack([np.interp(s_arr, sg.s, sg.xy[:, 0]), np.interp(s_arr, sg.s, sg.xy[:, 1])])
        hd = np.interp(s_arr, sg.s, np.unwrap(sg.heading))
        xy = centre_of(xy, hd)
        xy_ego = world_to_ego(xy, ego_xy, ego_heading)
        # the plan's path starts where we are: its first pose keeps its own offset from the ego
        return np.column_stack([xy_ego, hd - ego_heading]), sg.gear
