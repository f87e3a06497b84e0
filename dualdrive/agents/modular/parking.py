"""Free-spot detection and the low-speed manoeuvres of the modular baseline, from LiDAR only.

A lot's spots form a row along each side of the aisle at a fixed pitch (the standard bay, 2.7 m
by 5.5 m: the agent knows the standard, not the lot). The parked cars LiDAR detects beside the
aisle fix each row: how far it lies from the aisle and the phase of its bays. A bay between two
detected cars of the same row whose footprint shows LiDAR ground returns and no return above the
ground is free, as a parking-assist system finds a gap between parked cars. Bays at a row's open
end are not offered: nothing says the row goes on there.

Manoeuvres (leaving the spot the ego starts in, reversing into a free bay) are Reeds-Shepp paths
from the shared planning library, checked against the detected boxes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dualdrive.agents.base import REVERSE
from dualdrive.agents.modular.perception import GROUND_CLEARANCE_M, Detection, OdometryPose
from dualdrive.agents.modular.planning import EGO_LENGTH_M, EGO_WIDTH_M, REAR_AXLE_M, project
from dualdrive.planning.manoeuvre import Segment, path_clear_of_points, path_is_free, plan_leave, plan_path
from dualdrive.world.geometry import ego_to_world, world_to_ego

BAY_PITCH_M = 2.7
BAY_DEPTH_M = 5.5
ROW_MIN_M, ROW_MAX_M = 4.5, 9.5  # a parked car's centre this far beside the aisle belongs to a row
CAR_MIN_LENGTH_M = 3.0
ROW_GAP_MAX_M = 3.2 * BAY_PITCH_M  # a bay is offered with a car of its row at most three bays away on each side
ACROSS_COS = 0.5  # |cos| of a parked car's axis against the aisle: within 60-120 degrees of it
SAME_CAR_M = 1.2  # detections of one parked car over time lie within this of each other
FREE_RADIUS_M = 1.8  # no parked car centre this close (along the row) to a free bay's centre
MIN_GROUND_RETURNS = 4
SENSE_RANGE_M = 14.0
ROW_WINDOW_M = 20.0  # cars this far along the aisle fix the row near the ego (the next aisle has its own)
SAME_BAY_M = 1.0
PARKED_HALF_WIDTH_M = 0.95  # a parked car's half width (LiDAR sees its side)  # a bay is judged only this close (the LiDAR sees into it)
PRE_POSE_OFFSETS_M = (6.0, 7.5, 9.0, 4.5, 10.5)
LEAVE_CLEARANCE_M = (0.35, 0.2)
# a car of the ego's row: its centre this far beside the ego (one or two bay pitches, give or take the
# error being measured: the bays next to the ego's can be free too) and within this along the bay
NEIGHBOUR_SIDE_M = (1.5, 7.0)
NEIGHBOUR_DEPTH_M = 4.0
# a car that reversed into a bay stands within this of its centre along it (ego frame, + towards the aisle): short of
# it by up to 2 m, or up to 3 m too deep (a reverse that overran until a contact stopped it: parking 10 stood 2.3 m
# too deep, and a 2 m limit kept it from correcting); a bay further behind is the row behind's
IN_BAY_DEPTH_M = (-2.0, 3.0)
MAX_CAR_LENGTH_M = 5.5  # a longer box is several cars merged
FACE_BAND_M = 0.4  # returns of a side face lie this close across to its nearest one
FACE_GAP_M = 0.4  # a gap this long along the face separates two cars
# the axes tried for side faces when no box gives one: a car stands at most this askew after reversing in
FACE_YAWS_RAD = tuple(np.radians(np.arange(-12.0, 12.1, 2.0)))
CORRECTION_OUT_M = (0.0, 3.0, 5.0, 7.0)  # drive this far out along the bay before reversing in again
CORRECTION_MAX_M = 25.0  # a correction longer than this is a detour, not a correction
LEAVE_STRAIGHT_M = (0.0, 1.5, 3.0, 4.5, 6.0)


# a parked car: its track stands still (a car driving out of the lot, or crawling along the aisle,
# leaves a trail of detections that would otherwise line up as a row with free bays between them)
PARKED_MAX_SPEED_MPS = 0.5
PARKED_MATCH_M = 1.5  # a detection this close to a moving track is that track


def moving_xy(tracks: list) -> np.ndarray:
    """(N, 2) odometry-frame centres of the tracks that move."""
    return np.array([t.xy for t in tracks if np.linalg.norm(t.velocity) > PARKED_MAX_SPEED_MPS], float).reshape(-1, 2)


def standing_detections(detections: list[Detection], tracks: list, pose: OdometryPose) -> list[Detection]:
    """The detections (ego frame) that are not a moving track (odometry frame)."""
    moving = moving_xy(tracks)
    if not len(moving) or not detections:
        return detections
    xy = pose.to_odom(np.array([d.xy for d in detections]).reshape(-1, 2))
    dist = np.linalg.norm(xy[:, None, :] - moving[None], axis=2).min(axis=1)
    return [d for d, m in zip(detections, dist) if m > PARKED_MATCH_M]


# the returns a park path is checked against (what the car would hit: above the kerb-high ground, below the roof)
OBSTACLE_Z_M = (GROUND_CLEARANCE_M, 2.5)
RETURN_CELL_M = 0.2  # one return kept per cell this size
RETURN_MEMORY_S = 30.0  # a cell not hit again for this long is forgotten (a car that drove off)
MOVING_CLEAR_M = 3.0  # returns this close to a moving track's centre are that car, not the lot


@dataclass
class ReturnMap:
    """The LiDAR returns of standing things seen in the last ``memory_s``, odometry frame, one per cell:
    the obstacle map park paths are checked against (the occupancy grid of a parking planner)."""

    cell_m: float = RETURN_CELL_M
    memory_s: float = RETURN_MEMORY_S
    cells: dict = field(default_factory=dict)  # (i, j) -> last time hit
    purge_at: int = 4096  # forget old cells once the map holds this many

    def add(self, points_ego: np.ndarray, pose: OdometryPose, moving: np.ndarray, t: float) -> None:
        """This scan's returns above the ground (ego frame), less those within MOVING_CLEAR_M of a moving track
        (``moving``: odometry-frame centres)."""
        p = np.asarray(points_ego, float).reshape(-1, 4) if np.asarray(points_ego).size else np.zeros((0, 4))
        p = p[(p[:, 2] > OBSTACLE_Z_M[0]) & (p[:, 2] < OBSTACLE_Z_M[1]) & np.all(np.isfinite(p[:, :3]), axis=1)]
        xy = pose.to_odom(p[:, :2]).reshape(-1, 2)
        if len(moving) and len(xy):
            xy = xy[np.linalg.norm(xy[:, None] - moving[None], axis=2).min(axis=1) > MOVING_CLEAR_M]
        for key in set(map(tuple, np.floor(xy / self.cell_m).astype(int).tolist())):
            self.cells[key] = t
        if len(self.cells) > self.purge_at:  # forget in batches: rebuilding the dict every tick costs more than it saves
            self.cells = {k: v for k, v in self.cells.items() if t - v <= self.memory_s}
            self.purge_at = max(4096, 2 * len(self.cells))

    def points(self, t: float) -> np.ndarray:
        """(N, 2) cell centres hit within the memory, odometry frame."""
        keys = [k for k, v in self.cells.items() if t - v <= self.memory_s]
        return (np.array(keys, float).reshape(-1, 2) + 0.5) * self.cell_m


@dataclass
class Bay:
    xy: np.ndarray  # centre, odometry frame
    heading_rad: float  # pointing out of the bay towards the aisle (the pose after reversing in)
    s_m: float  # along the aisle reference


@dataclass
class SpotFinder:
    """Accumulates parked cars beside the aisle and finds free bays between them. Everything is
    kept in the odometry frame (the reference path's arc length restarts every tick)."""

    cars: list[np.ndarray] = field(default_factory=list)  # odometry-frame centres of parked cars
    boxes: list[Detection] = field(default_factory=list)  # their best-seen boxes, odometry frame
    seen: list[list] = field(default_factory=list)  # [bay centre (odometry), frames seen free or -inf]
    rejected: list[np.ndarray] = field(default_factory=list)
    returns: ReturnMap = field(default_factory=ReturnMap)  # what park paths must keep clear of

    def add_cars(self, detections: list[Detection], pose: OdometryPose) -> None:
        for d in detections:
            if max(d.length_m, d.width_m) < CAR_MIN_LENGTH_M or d.height_m < 1.0:
                continue
            c = pose.to_odom(d.xy)
            box = Detection(c, d.length_m, d.width_m, d.yaw_rad + pose.heading_rad, d.height_m, d.n_points)
            k = next((i for i, p in enumerate(self.cars) if np.linalg.norm(p - c) < SAME_CAR_M), None)
            if k is None:
                self.cars.append(c)
                self.boxes.append(box)
            else:  # keep the best-seen box (most points): near faces seen closer are more exact
                self.cars[k] = 0.8 * self.cars[k] + 0.2 * c
                if d.n_points >= self.boxes[k].n_points:
                    self.boxes[k] = box

    def rows(self, path: np.ndarray, s_ego: float) -> dict[int, tuple[float, float, np.ndarray]]:
        """Per side (+1 left, -1 right) of the aisle near the ego: the row's offset from the aisle,
        its bay phase (arc length modulo the pitch) and the cars' arc lengths."""
        if not self.cars:
            return {}
        s, d = project(path, np.array(self.cars))
        # a car in a bay stands across the aisle; one along it (waiting at the lot's entrance, or
        # parked at the kerb) is not part of a row, and a row fixed by it would offer the road as bays
        seg = np.diff(path, axis=0)
        s_pts = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=1))])
        aisle = np.interp(s, s_pts[:-1], np.unwrap(np.arctan2(seg[:, 1], seg[:, 0])))
        across = np.abs(np.cos(np.array([b.yaw_rad for b in self.boxes]) - aisle)) < ACROSS_COS
        out = {}
        for side in (1, -1):
            sel = (side * d > ROW_MIN_M) & (side * d < ROW_MAX_M) & (np.abs(s - s_ego) < ROW_WINDOW_M) & (s > 0.5) & across
            if sel.sum() < 2:
                continue
            ang = 2 * np.pi * s[sel] / BAY_PITCH_M
            phase = float(np.angle(np.mean(np.exp(1j * ang)))) * BAY_PITCH_M / (2 * np.pi)
            out[side] = (float(np.median(side * d[sel])), phase, np.sort(s[sel]))
        return out

    def bays(self, path: np.ndarray, s_ego: float):
        """(arc length, centre, heading) of every bay between two cars of a row, with no car in it."""
        seg = np.diff(path, axis=0)
        s_pts = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=1))])
        head = np.unwrap(np.concatenate([np.arctan2(seg[:, 1], seg[:, 0]), [np.arctan2(seg[-1, 1], seg[-1, 0])]]))
        for side, (offset, phase, s_cars) in self.rows(path, s_ego).items():
            k0 = int(np.ceil((s_cars[0] - phase) / BAY_PITCH_M))
            k1 = int(np.floor((s_cars[-1] - phase) / BAY_PITCH_M))
            for k in range(k0, k1 + 1):
                s_bay = phase + k * BAY_PITCH_M
                if np.min(np.abs(s_cars - s_bay)) < FREE_RADIUS_M or not 0 <= s_bay <= s_pts[-1]:
                    continue
                before, after = s_cars[s_cars < s_bay], s_cars[s_cars > s_bay]
                if s_bay - before[-1] > ROW_GAP_MAX_M or after[0] - s_bay > ROW_GAP_MAX_M:
                    continue  # cars this far apart need not be one row: the gap may be a road
                h = float(np.interp(s_bay, s_pts, head))
                base = np.array([np.interp(s_bay, s_pts, path[:, 0]), np.interp(s_bay, s_pts, path[:, 1])])
                normal = np.array([-np.sin(h), np.cos(h)]) * side
                # reversed in, the car faces the aisle
                yield s_bay, base + offset * normal, float(np.arctan2(-normal[1], -normal[0]))

    def _entry(self, xy: np.ndarray) -> list:
        for e in self.seen:
            if np.linalg.norm(e[0] - xy) < SAME_BAY_M:
                return e
        e = [xy, 0, []]  # lattice centre, frames seen free, centres measured between the neighbours
        self.seen.append(e)
        return e

    def observe(self, path: np.ndarray, pose: OdometryPose, points_ego: np.ndarray) -> None:
        """Count, for bays near the ego, the frames in which LiDAR saw them empty."""
        pts = pose.to_odom(points_ego[:, :2]) if len(points_ego) else np.zeros((0, 2))
        ground = points_ego[:, 2] <= GROUND_CLEARANCE_M if len(points_ego) else np.zeros(0, bool)
        s_ego = float(project(path, pose.xy)[0][0])
        for s_bay, xy, heading in self.bays(path, s_ego):
            if abs(s_bay - s_ego) > SENSE_RANGE_M:
                continue
            inside = _in_box(pts, xy, heading, BAY_DEPTH_M - 1.0, BAY_PITCH_M - 0.9)
            e = self._entry(xy)
            if (inside & ~ground).any():
                e[1] = -np.inf  # something stands in it
            elif (inside & ground).sum() >= MIN_GROUND_RETURNS:
                e[1] += 1
                centre = _gap_centre(pts[~ground], xy, heading)
                if centre is not None:  # the neighbours' sides, seen from the aisle, bound the bay
                    e[2].append(centre)

    def free_bays(self, path: np.ndarray, s_ego: float, min_frames: int = 2) -> list[Bay]:
        out = []
        for s_bay, xy, heading in self.bays(path, s_ego):
            if any(np.linalg.norm(r - xy) < SAME_BAY_M for r in self.rejected):
                continue
            e = self._entry(xy)
            if e[1] >= min_frames:
                # the gap between the neighbours is measured better than the lattice's phase
                centre = np.median(np.array(e[2]), axis=0) if e[2] else xy
                out.append(Bay(centre, heading, s_bay))
        return sorted(out, key=lambda b: b.s_m)

    def reject(self, bay: Bay) -> None:
        self.rejected.append(bay.xy)



def _gap_centre(obstacle_pts: np.ndarray, xy: np.ndarray, heading: float) -> np.ndarray | None:
    """The centre of the gap a free bay leaves between its neighbours: the middle between the
    nearest returns on either side across the bay, over the bay's depth."""
    if not len(obstacle_pts):
        return None
    c, s = np.cos(heading), np.sin(heading)
    rel = obstacle_pts - xy
    depth, across = rel @ np.array([c, s]), rel @ np.array([-s, c])
    band = (np.abs(depth) < BAY_DEPTH_M / 2 - 0.5) & (np.abs(across) < BAY_PITCH_M + 1.0)
    lo, hi = across[band & (across < 0)], across[band & (across > 0)]
    if not len(lo) or not len(hi):
        return None
    left, right = lo.max(), hi.min()
    if right - left < 1.6:
        return None
    # a neighbour's side stands half a bay plus the car's half width short of a bay's centre;
    # in a gap of several bays, the side nearer to the lattice's guess fixes which one
    side_to_centre = BAY_PITCH_M - PARKED_HALF_WIDTH_M
    if right - left < BAY_PITCH_M + 1.5:
        mid = (left + right) / 2
    else:
        mid = left + side_to_centre if -left < right else right - side_to_centre
    return xy + mid * np.array([-s, c])


def _in_box(pts: np.ndarray, xy: np.ndarray, heading: float, length: float, width: float) -> np.ndarray:
    if not len(pts):
        return np.zeros(0, bool)
    c, s = np.cos(heading), np.sin(heading)
    rel = pts - xy
    return (np.abs(rel @ np.array([c, s])) <= length / 2) & (np.abs(rel @ np.array([-s, c])) <= width / 2)


def park_path(pose: OdometryPose, bay: Bay, obstacle_xy: np.ndarray) -> list[Segment] | None:
    """A Reeds-Shepp path reversing into the bay, clear of the standing returns (odometry frame), or None."""
    start = (float(pose.xy[0]), float(pose.xy[1]), float(pose.heading_rad))
    segs = plan_path(start, (float(bay.xy[0]), float(bay.xy[1]), bay.heading_rad), REVERSE)
    if len(segs) <= 4 and path_clear_of_points(segs, obstacle_xy, EGO_LENGTH_M, EGO_WIDTH_M):
        return segs
    return None


@dataclass(frozen=True)
class BayFix:
    """The bay the ego stands in, as its parked neighbours show it (ego frame)."""

    centre: np.ndarray  # (2,) the bay's centre
    yaw_rad: float  # the bay's axis against the ego's heading: the turn that squares the car up in it


ORIGIN = np.zeros(2)  # the ego, in its own frame: the row's frame is the ego's turned by the row's yaw


def _fold(yaw: float) -> float:
    """An axis angle (a car parked either way round) folded into [-pi/2, pi/2)."""
    return float((yaw + np.pi / 2) % np.pi - np.pi / 2)


def bay_from_neighbours(detections: list[Detection], points_ego: np.ndarray | None = None) -> BayFix | None:
    """The bay the ego stands in, measured from the parked cars beside it; None when no neighbour is seen.

    Reversed in on an estimate, the ego can stand a metre or two off the bay and a few degrees askew;
    standing in it, LiDAR sees the neighbours' whole inner sides. Parked cars stand centred in their
    bays and square to the row, so the neighbours' axis gives the bay's heading, a neighbour's centre
    its depth, and its centre a whole number of bay pitches over its centre across (the mean over the
    nearest car on either side). All of it is measured in the row's frame, not the ego's: a car 9
    degrees askew sees a neighbour two bays over (5.4 m) 0.8 m off in depth in its own frame, which
    sent P2P 5002's second correction the wrong way. Neighbours come from the detected boxes, or,
    where the clustering merged them with the row behind into one blob, from the LiDAR returns of
    their inner side faces (whose slope gives the axis when no box does)."""
    boxes: dict[int, Detection] = {}
    for d in detections:
        along = abs(np.cos(d.yaw_rad)) > 0.8  # parked parallel to the ego
        if (max(d.length_m, d.width_m) < CAR_MIN_LENGTH_M or d.length_m > MAX_CAR_LENGTH_M or d.height_m < 1.0
                or not along or not NEIGHBOUR_SIDE_M[0] < abs(d.xy[1]) < NEIGHBOUR_SIDE_M[1]
                or abs(d.xy[0]) > NEIGHBOUR_DEPTH_M):
            continue
        side = 1 if d.xy[1] > 0 else -1
        if side not in boxes or abs(d.xy[1]) < abs(boxes[side].xy[1]):
            boxes[side] = d
    yaw = float(np.mean([_fold(d.yaw_rad) for d in boxes.values()])) if boxes else 0.0
    faces: dict[int, tuple[np.ndarray, float, int]] = {}
    if points_ego is not None and len(boxes) < 2:
        want = [side for side in (1, -1) if side not in boxes]
        if not boxes:  # no axis from a box: the frame in which the faces lie thinnest (most returns in the band)
            yaw = max(FACE_YAWS_RAD, key=lambda y: sum(f[2] for side in want
                                                       if (f := _side_face(points_ego, side, y)) is not None))
        faces = {side: f for side in want if (f := _side_face(points_ego, side, yaw)) is not None}
        if faces and not boxes:  # then their own slope squares the frame up, and they are measured again in it
            yaw += float(np.mean([f[1] for f in faces.values()]))
            faces = {side: f for side in faces if (f := _side_face(points_ego, side, yaw)) is not None}
    sides = {side: world_to_ego(d.xy, ORIGIN, yaw) for side, d in boxes.items()}  # the row's frame
    sides.update({side: f[0] for side, f in faces.items()})
    if not sides:
        return None
    depth = float(np.mean([xy[0] for xy in sides.values()]))
    if not IN_BAY_DEPTH_M[0] <= depth <= IN_BAY_DEPTH_M[1]:  # not the bay the car stands in: a face of the row
        return None  # behind (P2P 5014, modular, reversed 3.9 m back into it)
    across = float(np.mean([xy[1] - side * BAY_PITCH_M * max(1, round(abs(xy[1]) / BAY_PITCH_M))
                            for side, xy in sides.items()]))
    return BayFix(ego_to_world(np.array([depth, across]), ORIGIN, yaw), yaw)


def _side_face(points_ego: np.ndarray, side: int, yaw: float = 0.0) -> tuple[np.ndarray, float, int] | None:
    """The centre of the nearest parked car on one side from its inner side face, in the frame turned by
    ``yaw`` from the ego's (the row's frame), the face's slope in that frame (rad) and its number of returns:
    the returns nearest across, split along the axis where they leave a gap (the row behind)."""
    p = points_ego[points_ego[:, 2] > GROUND_CLEARANCE_M]
    p = np.column_stack([world_to_ego(p[:, :2], ORIGIN, yaw), p[:, 2:]]) if yaw else p
    lat = side * p[:, 1]
    # beside the ego only: a car of the row behind (or the aisle's far side) stands across our own width
    p = p[(lat > EGO_WIDTH_M / 2 + 0.1) & (lat < NEIGHBOUR_SIDE_M[1])
          & (np.abs(p[:, 0]) < NEIGHBOUR_DEPTH_M + MAX_CAR_LENGTH_M / 2)]
    if not len(p):
        return None
    face = p[side * p[:, 1] < np.min(side * p[:, 1]) + FACE_BAND_M]
    x = np.sort(face[:, 0])
    runs = np.split(x, np.nonzero(np.diff(x) > FACE_GAP_M)[0] + 1)
    run = min(runs, key=lambda r: 0.0 if r[0] <= 0.0 <= r[-1] else min(abs(r[0]), abs(r[-1])))
    if (not CAR_MIN_LENGTH_M <= run[-1] - run[0] <= MAX_CAR_LENGTH_M
            or abs((run[0] + run[-1]) / 2) > NEIGHBOUR_DEPTH_M):  # longer: a car and more, its centre is no car's
        return None
    on = face[(face[:, 0] >= run[0]) & (face[:, 0] <= run[-1])]
    slope = float(np.arctan(np.polyfit(on[:, 0], on[:, 1], 1)[0])) if len(on) > 2 else 0.0
    y_face = float(np.median(on[:, 1]))
    return np.array([(run[0] + run[-1]) / 2, y_face + side * PARKED_HALF_WIDTH_M]), slope, len(on)


def _side_face_centre(points_ego: np.ndarray, side: int) -> np.ndarray | None:
    """The centre (ego frame) of the nearest parked car on one side, from its inner side face."""
    face = _side_face(points_ego, side)
    return None if face is None else face[0]


PARKED_LENGTH_M = 4.6  # a neighbour measured from its side face is taken as a car this long


def correction_obstacles(detections: list[Detection], points_ego: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """The boxes (ego frame: xy, yaw, length, width) a correction must keep clear of. A box longer
    than a car is several parked cars merged by the clustering, and it can reach over the ego's own
    bay, so no path would ever be free of it: it is replaced by the neighbours measured from their
    side faces (a car centred on each face's centre, parallel to the ego)."""
    cars = [d for d in detections if d.length_m <= MAX_CAR_LENGTH_M]
    xy = [d.xy for d in cars]
    yaw = [d.yaw_rad for d in cars]
    length = [d.length_m for d in cars]
    width = [d.width_m for d in cars]
    if len(cars) < len(detections) and points_ego is not None:
        for side in (1, -1):
            centre = _side_face_centre(points_ego, side)
            if centre is not None:
                xy.append(centre)
                yaw.append(0.0)
                length.append(PARKED_LENGTH_M)
                width.append(2 * PARKED_HALF_WIDTH_M)
    return (np.array(xy, float).reshape(-1, 2), np.array(yaw, float), np.array(length, float), np.array(width, float))


def correction_path(pose: OdometryPose, goal: Bay, obstacles) -> list[Segment] | None:
    """From a parked pose that is off the bay back into it: straight out along the bay (not at all,
    or a few metres, so the Reeds-Shepp path has room to shift across), then reversing in; the
    first path free of the parked cars and short enough, or None."""
    c, s = np.cos(pose.heading_rad), np.sin(pose.heading_rad)
    for out_m in CORRECTION_OUT_M:
        start = (float(pose.xy[0] + out_m * c), float(pose.xy[1] + out_m * s), float(pose.heading_rad))
        segs = plan_path(start, (float(goal.xy[0]), float(goal.xy[1]), goal.heading_rad), REVERSE)
        if out_m > 0:
            n = int(np.ceil(out_m / 0.1))
            t = np.linspace(0.0, out_m, n + 1)
            rear = pose.xy - REAR_AXLE_M * np.array([c, s]) + t[:, None] * np.array([c, s])
            out = Segment(rear, np.full(n + 1, pose.heading_rad), 1, t)
            if segs and segs[0].gear == 1:  # one forward segment, not a stop between two
                first = segs[0]
                step = np.linalg.norm(np.diff(first.xy, axis=0), axis=1)
                segs[0] = Segment(np.vstack([rear, first.xy[1:]]), np.concatenate([out.heading, first.heading[1:]]), 1,
                                  np.concatenate([t, out_m + np.cumsum(step)]))
            else:
                segs = [out] + segs
        if (len(segs) <= 4 and sum(sg.s[-1] for sg in segs) < CORRECTION_MAX_M
                and path_is_free(segs, obstacles, EGO_LENGTH_M, EGO_WIDTH_M, None, 0.15, 0.0)):
            return segs
    return None


def leave_path(route_xy_ego: np.ndarray, obstacles) -> list[Segment]:
    """Out of the spot the ego stands in (the ego frame: the ego at the origin, heading 0) to the aisle.

    The spot's axis is the ego's; the aisle lies where the route starts, ahead of the car if it
    reversed in, behind it if it drove in nose first."""
    route = np.asarray(route_xy_ego, float)
    spot_heading = np.pi if route[0, 0] > 0 else 0.0  # from the aisle into the spot
    goals = []
    for a, b in ((0, 1), (1, 2)):
        for f in (0.0, 0.5):
            p = route[a] + f * (route[b] - route[a])
            d = route[b] - route[a]
            goals.append((float(p[0]), float(p[1]), float(np.arctan2(d[1], d[0]))))
    for clearance in LEAVE_CLEARANCE_M:
        best, best_len = None, np.inf
        for exit_m in LEAVE_STRAIGHT_M:
            for g in goals:
                segs = plan_leave((0.0, 0.0, 0.0), spot_heading, g, exit_m)
                length = sum(sg.s[-1] for sg in segs) + 3.0 * (len(segs) - 1)
                if length < best_len and path_is_free(segs, obstacles, EGO_LENGTH_M, EGO_WIDTH_M, None, clearance, exit_m):
                    best, best_len = segs, length
        if best is not None:
            return best
    return plan_leave((0.0, 0.0, 0.0), spot_heading, goals[0])
