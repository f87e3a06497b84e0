"""Perception for the modular baseline, from the sensor suite only: objects from LiDAR, tracked
over time with a constant-velocity Kalman filter, and the traffic-light state from the camera.

Detection: points above the ground are clustered by Euclidean distance in the ground plane (a
KD-tree's close pairs, then connected components), and each cluster gets an oriented box fitted to the faces
the LiDAR saw (L-shape fitting), grown to a car's size away from the sensor when only its near faces
were seen. Tracking runs in the odometry frame (the ego's pose dead-reckoned from its speed and
yaw rate: the agent has no map and no GPS), so parked cars stay put while the ego moves. Tracks
are associated to detections by the Hungarian method (``scipy.optimize.linear_sum_assignment``)
and filtered by ``filterpy``'s Kalman filter.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from filterpy.kalman import KalmanFilter, update as kalman_update
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

GROUND_CLEARANCE_M = 0.3  # points below this are the road
RANGE_M = 64.0
CLUSTER_M = 1.5  # points of one object are closer than this (cars side by side are ~1.6 m apart)
MIN_POINTS = 3
CAR_LIKE_HEIGHT_M = 1.0  # a cluster this tall and this long is a vehicle: the size prior applies
CAR_LIKE_EXTENT_M = 1.2
PRIOR_LENGTH_M, PRIOR_WIDTH_M = 4.5, 1.9
FACE_MAX_M = 2.3  # a single face up to this wide is a vehicle's back or front
THIN_M = 0.6
SMALL_CLUSTER = 10  # points; fewer, lying on a bigger detection, are part of it
STRAGGLER_M = 3.5  # a small cluster this close to a big one belongs to it
ROOF_BAND_M = 0.1
CLOSENESS_D0_M = 0.05
FIT_ANGLES = np.deg2rad(np.arange(0.0, 90.0, 1.5))
MAX_BOX_M = 14.0  # longer clusters are walls or kerbs, not road users
GATE_M = 3.0  # a detection further than this from a track's prediction starts a new track
MAX_MISSES = 3  # frames a track survives without a detection
RADAR_GATE_M = 0.7  # a radar return this far outside a track's box is not that track's
RADAR_VELOCITY_NOISE_MPS = 0.3  # the Doppler measurement's standard deviation, as the filter sees it
LIGHT_MIN_PIXELS = 2
RED, AMBER, GREEN = 0, 1, 2  # read_traffic_light's states


@dataclass
class Detection:
    xy: np.ndarray  # box centre, ego frame (x forward, y left)
    length_m: float
    width_m: float
    yaw_rad: float  # ego frame
    height_m: float
    n_points: int


@dataclass
class Track:
    id: int
    kf: KalmanFilter  # state [x, y, vx, vy] in the odometry frame
    length_m: float
    width_m: float
    yaw_rad: float
    height_m: float
    age: int = 1
    misses: int = 0
    yaw_rate_rps: float = 0.0  # turn rate of the velocity's direction, smoothed (for constant-turn-rate prediction)

    @property
    def xy(self) -> np.ndarray:
        return self.kf.x[:2, 0].copy()

    @property
    def velocity(self) -> np.ndarray:
        return self.kf.x[2:, 0].copy()

    @property
    def covariance(self) -> np.ndarray:
        return self.kf.P.copy()


TURN_MIN_SPEED_MPS = 2.0  # slower, the velocity's direction is noise
TURN_SMOOTHING = 0.2  # weight of each new turn-rate measurement
MAX_TURN_RATE_RPS = 1.0


def _turn_rate(previous: float, v_before: np.ndarray, v_after: np.ndarray, dt_s: float) -> float:
    """The track's turn rate after one update: the change of its velocity's direction, smoothed;
    it decays to zero for a slow object."""
    if min(np.linalg.norm(v_before), np.linalg.norm(v_after)) < TURN_MIN_SPEED_MPS:
        return (1 - TURN_SMOOTHING) * previous
    dh = np.arctan2(v_after[1], v_after[0]) - np.arctan2(v_before[1], v_before[0])
    measured = float(np.clip(((dh + np.pi) % (2 * np.pi) - np.pi) / dt_s, -MAX_TURN_RATE_RPS, MAX_TURN_RATE_RPS))
    return (1 - TURN_SMOOTHING) * previous + TURN_SMOOTHING * measured


def detect_objects(points: np.ndarray) -> list[Detection]:
    """Oriented boxes of the objects in a LiDAR scan (ego frame, the sensor above the origin)."""
    p = points[(points[:, 2] > GROUND_CLEARANCE_M) & (np.abs(points[:, 0]) < RANGE_M) & (np.abs(points[:, 1]) < RANGE_M)]
    if len(p) < MIN_POINTS:
        return []
    # Euclidean clustering in the ground plane: points closer than CLUSTER_M are one object
    pairs = cKDTree(p[:, :2]).query_pairs(CLUSTER_M, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(p), len(p)))
    count, label = connected_components(graph, directed=False)
    # at a grazing angle a car's side gets a hit every few metres: such stragglers join the big
    # cluster they lie next to (two real cars are both big clusters, so they stay apart)
    sizes = np.bincount(label, minlength=count)
    big = sizes[label] >= SMALL_CLUSTER
    if big.any() and (~big).any():
        d, j = cKDTree(p[big, :2]).query(p[~big, :2])
        near = d < STRAGGLER_M
        small_idx = np.nonzero(~big)[0]
        label[small_idx[near]] = label[np.nonzero(big)[0][j[near]]]
    out = []
    for k in range(count):
        q = p[label == k]
        if len(q) < MIN_POINTS:
            continue
        d = _box(q)
        if d is not None:
            out.append(d)
    # a few roof hits beyond a car's near face form a cluster of their own: they belong to it
    big = [d for d in out if d.n_points >= SMALL_CLUSTER]
    return [d for d in out if d.n_points >= SMALL_CLUSTER or not any(_inside(d.xy, b, 1.0) for b in big)]


def _inside(xy: np.ndarray, d: Detection, margin_m: float) -> bool:
    c, s = np.cos(d.yaw_rad), np.sin(d.yaw_rad)
    rel = xy - d.xy
    return abs(rel[0] * c + rel[1] * s) <= d.length_m / 2 + margin_m and abs(-rel[0] * s + rel[1] * c) <= d.width_m / 2 + margin_m


def _box(q: np.ndarray) -> Detection | None:
    """An oriented box round one cluster. LiDAR sees only the faces turned to it, so a car-sized
    cluster shorter or narrower than a car is grown away from the sensor to the usual size."""
    height = float(q[:, 2].max())
    # beams from above also land on the roof, scattered over the footprint: fit the box to the faces
    faces = q[q[:, 2] < height - ROOF_BAND_M]
    xy = (faces if len(faces) >= MIN_POINTS else q)[:, :2]
    centre = xy.mean(0)
    # L-shape fitting by the closeness criterion (Zhang et al., 2017): the rectangle whose edges
    # run through the most points (the faces the LiDAR saw) fixes the orientation
    th = FIT_ANGLES
    e1 = (xy - centre) @ np.stack([np.cos(th), np.sin(th)])  # (n, angles)
    e2 = (xy - centre) @ np.stack([-np.sin(th), np.cos(th)])
    d1 = np.minimum(e1 - e1.min(0), e1.max(0) - e1)
    d2 = np.minimum(e2 - e2.min(0), e2.max(0) - e2)
    closeness = (1.0 / np.maximum(np.minimum(d1, d2), CLOSENESS_D0_M)).sum(0)
    yaw = float(th[int(np.argmax(closeness))])
    rot = np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])
    local = (xy - centre) @ rot.T
    lo, hi = local.min(0), local.max(0)
    if hi[1] - lo[1] > hi[0] - lo[0]:  # the first axis is the long one
        yaw += np.pi / 2
        rot = np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])
        local = (xy - centre) @ rot.T
        lo, hi = local.min(0), local.max(0)
    if max(hi - lo) > MAX_BOX_M:
        return None  # a wall, a kerb, a row of parked cars seen as one
    if height > CAR_LIKE_HEIGHT_M and hi[0] - lo[0] <= FACE_MAX_M and hi[1] - lo[1] < THIN_M:
        # one flat face no wider than a car: its back or front, so the car's length runs across it
        yaw += np.pi / 2
        rot = np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])
        local = (xy - centre) @ rot.T
        lo, hi = local.min(0), local.max(0)
    if height > CAR_LIKE_HEIGHT_M and max(hi - lo) > CAR_LIKE_EXTENT_M:
        sensor = (-centre) @ rot.T  # the sensor in the box frame
        for ax, prior in ((0, PRIOR_LENGTH_M), (1, PRIOR_WIDTH_M)):
            missing = prior - (hi[ax] - lo[ax])
            if missing > 0:
                if sensor[ax] < (lo[ax] + hi[ax]) / 2:
                    hi[ax] += missing
                else:
                    lo[ax] -= missing
    mid = centre + ((lo + hi) / 2) @ rot
    return Detection(mid, float(max(hi[0] - lo[0], 0.3)), float(max(hi[1] - lo[1], 0.3)), yaw, height, len(q))


@dataclass
class OdometryPose:
    """The ego's pose dead-reckoned from speed and yaw rate (the odometry frame)."""

    xy: np.ndarray = field(default_factory=lambda: np.zeros(2))
    heading_rad: float = 0.0

    def advance(self, speed_mps: float, yaw_rate_rps: float, dt_s: float) -> None:
        self.heading_rad += yaw_rate_rps * dt_s
        self.xy = self.xy + speed_mps * dt_s * np.array([np.cos(self.heading_rad), np.sin(self.heading_rad)])

    def advance_bicycle(self, speed_mps: float, accel_mps2: float, steer_rad: float, yaw_rate_rps: float,
                        dt_s: float) -> None:
        """Dead reckoning with the kinematic bicycle (wheel speed, steering angle, gyro): the centre
        moves at the slip angle beta = atan(tan(steer) / 2) off the heading, with the speed and heading
        from before the step (``speed_mps``, ``accel_mps2``: the odometry after it)."""
        v = speed_mps - accel_mps2 * dt_s
        h = self.heading_rad + np.arctan(0.5 * np.tan(steer_rad))
        self.xy = self.xy + v * dt_s * np.array([np.cos(h), np.sin(h)])
        self.heading_rad += yaw_rate_rps * dt_s

    def to_odom(self, xy_ego: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.heading_rad), np.sin(self.heading_rad)
        return self.xy + np.asarray(xy_ego) @ np.array([[c, s], [-s, c]])

    def to_ego(self, xy_odom: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.heading_rad), np.sin(self.heading_rad)
        return (np.asarray(xy_odom) - self.xy) @ np.array([[c, -s], [s, c]])


class Tracker:
    """Multi-object tracking of LiDAR detections with constant-velocity Kalman filters."""

    def __init__(self, dt_s: float = 0.1, accel_noise: float = 2.0, meas_noise_m: float = 0.6) -> None:
        self.dt = dt_s
        self.q = accel_noise
        self.r = meas_noise_m
        self.tracks: list[Track] = []
        self._next_id = 0

    def _new_filter(self, xy: np.ndarray) -> KalmanFilter:
        kf = KalmanFilter(dim_x=4, dim_z=2)
        dt = self.dt
        kf.F = np.array([[1, 0, dt, 0], [0, 1, 0, dt], [0, 0, 1, 0], [0, 0, 0, 1]], float)
        kf.H = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], float)
        g = np.array([[dt**2 / 2, 0], [0, dt**2 / 2], [dt, 0], [0, dt]])
        kf.Q = g @ g.T * self.q**2
        kf.R = np.eye(2) * self.r**2
        kf.P = np.diag([self.r**2, self.r**2, 10.0**2, 10.0**2])
        kf.x = np.array([[xy[0]], [xy[1]], [0.0], [0.0]])
        return kf

    def update(self, detections: list[Detection], pose: OdometryPose) -> list[Track]:
        """Predict every track one step, match the detections (ego frame) and correct; returns the
        tracks confirmed by at least two detections."""
        for t in self.tracks:
            t.kf.predict()
        z = np.array([pose.to_odom(d.xy) for d in detections]).reshape(-1, 2)
        matched_d: set[int] = set()
        if self.tracks and len(z):
            pred = np.array([t.xy for t in self.tracks])
            cost = np.linalg.norm(pred[:, None, :] - z[None, :, :], axis=2)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] > GATE_M:
                    continue
                t, d = self.tracks[r], detections[c]
                v_before = t.velocity
                t.kf.update(z[c].reshape(2, 1))
                t.yaw_rate_rps = _turn_rate(t.yaw_rate_rps, v_before, t.velocity, self.dt)
                t.length_m, t.width_m, t.height_m = d.length_m, d.width_m, d.height_m
                t.yaw_rad = d.yaw_rad + pose.heading_rad
                t.age += 1
                t.misses = -1  # incremented below to 0
                matched_d.add(c)
        for t in self.tracks:
            t.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= MAX_MISSES]
        for c, d in enumerate(detections):
            if c not in matched_d:
                self.tracks.append(Track(self._next_id, self._new_filter(z[c]), d.length_m, d.width_m,
                                         d.yaw_rad + pose.heading_rad, d.height_m))
                self._next_id += 1
        return [t for t in self.tracks if t.age >= 2]

    def fuse_radar(self, returns: np.ndarray, pose: OdometryPose, ego_speed_mps: float) -> int:
        """Radar fusion: each return's radial (Doppler) velocity is a linear measurement of the
        velocity of the track it falls on, along the line of sight, which LiDAR positions alone
        take several frames to estimate. Returns (range, azimuth, radial velocity relative to the
        ego, ...) rows in the ego frame; each track takes its nearest return. Returns the number
        of tracks updated."""
        if not len(returns) or not self.tracks:
            return 0
        r, az, vr = (returns[:, k].astype(float) for k in range(3))
        p = pose.to_odom(np.column_stack([r * np.cos(az), r * np.sin(az)]))
        los = np.column_stack([np.cos(az + pose.heading_rad), np.sin(az + pose.heading_rad)])
        ego_v = ego_speed_mps * np.array([np.cos(pose.heading_rad), np.sin(pose.heading_rad)])
        # a return lies on the near face of its object: match by the distance to each track's box
        # (in a parking row the neighbour's centre can be nearer than the own one), one to one
        dist = np.array([_box_distance(p, t) for t in self.tracks])  # (tracks, returns)
        rows, cols = linear_sum_assignment(np.minimum(dist, 1e6))
        n = 0
        for i, k in zip(rows, cols):
            if dist[i, k] > RADAR_GATE_M:
                continue
            t = self.tracks[i]
            z = vr[k] + float(ego_v @ los[k])  # the track's own velocity along the line of sight
            # filterpy's functional update: the filter object is sized for LiDAR's 2-D position
            t.kf.x, t.kf.P = kalman_update(t.kf.x, t.kf.P, np.array([[z]]), np.array([[RADAR_VELOCITY_NOISE_MPS**2]]),
                                           np.array([[0.0, 0.0, los[k, 0], los[k, 1]]]))
            n += 1
        return n


def _box_distance(points: np.ndarray, t: Track) -> np.ndarray:
    """Distance of points (odometry frame) to a track's box, 0 inside it."""
    c, s = np.cos(t.yaw_rad), np.sin(t.yaw_rad)
    rel = points - t.xy
    local = np.abs(np.column_stack([rel @ np.array([c, s]), rel @ np.array([-s, c])]))
    return np.linalg.norm(np.maximum(local - np.array([t.length_m / 2, t.width_m / 2]), 0.0), axis=1)


def read_traffic_light(image: np.ndarray) -> int | None:
    """The state of a lit traffic lamp in the upper half of a camera image: 0 red, 1 amber, 2 green,
    None when no lamp is visible. (The sky is blue, the road grey: a saturated red, amber or green
    pixel above the horizon is a lamp.)"""
    top = image[: image.shape[0] // 2].astype(int)
    r, g, b = top[..., 0], top[..., 1], top[..., 2]
    counts = {RED: int(((r > 200) & (g < 80) & (b < 80)).sum()),
              AMBER: int(((r > 200) & (g > 150) & (b < 60)).sum()),
              GREEN: int(((g > 180) & (r < 100) & (b < 120)).sum())}
    state, n = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))
    return state if n >= LIGHT_MIN_PIXELS else None
