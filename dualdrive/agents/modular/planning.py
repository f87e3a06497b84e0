"""Planning for the modular baseline: the route's reference path, and a sampling-based (Frenet
lattice) trajectory planner over it with cost terms for progress, comfort and safety.

Everything is in the odometry frame. The reference path is the navigation route (sparse targets,
8 m apart, re-sent every tick in the ego frame) kept in the odometry frame, with the targets the
ego has passed kept as a short trail so the path reaches back to the ego.

A candidate trajectory is a lateral profile d(s) (a quintic from the ego's offset to a target
offset: the route's lane, or a lane beside it) and a speed profile found by rolling an intelligent
driver model (IDM) along that path against the space-time occupancy of the predicted objects: an
object that will stand in the path's corridor within the reaction window counts as a leader
standing there now, which makes the ego yield to crossing traffic and pedestrians as well as follow
a car ahead. Stop lines (a red light) and the end of the route are leaders that never move. The
cheapest candidate whose footprint stays clear of every prediction wins.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from dualdrive.agents.base import PLAN_DT_S, PLAN_POSES
from dualdrive.agents.modular.lanes import LaneEstimate
from dualdrive.agents.modular.perception import OdometryPose
from dualdrive.agents.modular.prediction import Prediction
from dualdrive.world.geometry import box_corners, boxes_overlap, resample_polyline, wrap_angle

EGO_LENGTH_M, EGO_WIDTH_M = 5.0, 2.0  # the car we drive (its own dimensions are known to it)
REAR_AXLE_M = EGO_LENGTH_M / 2  # highway-env's bicycle: the rear axle at the car's back
FRONT_FROM_REAR_M = REAR_AXLE_M + EGO_LENGTH_M / 2
PATH_STEP_M = 1.0
TRAIL_M = 25.0  # passed route targets kept behind the ego
CORRECTION_TIME_S, CORRECTION_MIN_M = 2.0, 8.0
BLOCKED_MPS = 2.0
STANDING_MPS = 1.0  # a new track's speed is uncertain: a stalled car can show this much for a while
FOLLOWER_COS = 0.5  # heading within 60 deg of the path's: moving our way
SLOPE_MAX = 1.0  # the path leaves the rear axle along the heading (up to 45 deg off the reference)


@dataclass
class PlannerConfig:
    lane_width_m: float = 3.5  # offset of a neighbouring lane's centre from ours, where no lane estimate says
    # lanes offered beside the route's (in lane widths) where no lane estimate is given: (0, -1, 1) with
    # ``neighbour_lanes`` lets it change lanes round blockers
    lateral_offsets: tuple[float, ...] = (0.0,)
    lane_change_time_s: float = 4.0
    evasive_change_time_s: float = 3.0  # round a blocker: a lane change at 25 m/s takes 75 m, the LiDAR sees 60
    corridor_margin_m: float = 0.45  # beside the ego's half width, an object closer than this is in the way
    react_window_s: float = 2.0  # an object entering the corridor within this is a leader now
    idm_time_gap_s: float = 1.4
    idm_accel_mps2: float = 1.6
    idm_decel_mps2: float = 2.2
    idm_s0_m: float = 2.5
    stop_s0_m: float = 1.0  # stand this far short of a stop line
    lat_accel_mps2: float = 2.0  # curve speed limit
    cruise_factor: float = 0.97
    w_progress: float = 1.0
    w_offset: float = 15.0  # metres of progress worth giving up to stay in the route's lane
    w_change: float = 10.0  # ... and to not change lanes at all
    w_blocked: float = 200.0  # a lane that ends in a standstill behind a static obstacle
    w_static: float = 100.0  # a lane with a static obstacle standing in it ahead (a stalled car, cones)
    collision_margin_m: float = 0.3
    # a car coming up from behind in the lane we change into keeps this gap, plus the distance it needs
    # to slow to our speed at rear_decel_mps2
    rear_gap_m: float = 4.0
    rear_gap_s: float = 0.5
    rear_decel_mps2: float = 2.0


@dataclass(frozen=True)
class Trajectory:
    xy: np.ndarray  # (T, 2) odometry frame, at the prediction times
    heading_rad: np.ndarray  # (T,)
    speed_mps: np.ndarray  # (T,)
    t_s: np.ndarray
    offset_lanes: float
    cost: float
    safe: bool
    static_ahead: bool = False  # a static obstacle stands in this trajectory's corridor ahead


class ReferencePath:
    """The route in the odometry frame: the trail of passed targets plus the current ones."""

    def __init__(self) -> None:
        self.trail: list[np.ndarray] = []
        self.xy = np.zeros((0, 2))

    def update(self, pose: OdometryPose, route_xy_ego: np.ndarray) -> np.ndarray:
        targets = pose.to_odom(np.asarray(route_xy_ego, float))
        first = targets[0]
        if not self.trail or np.linalg.norm(first - self.trail[-1]) > 0.5:
            self.trail.append(first)
        # the trail's points behind the current first target, within reach behind the ego
        keep = [p for p in self.trail[:-1] if np.linalg.norm(p - pose.xy) < TRAIL_M]
        self.trail = keep + [first]
        pts = np.vstack(keep + [targets]) if keep else targets
        # the path must reach back past the ego: with no trail yet (the first tick, or just after a
        # manoeuvre) it starts where the ego is, aimed at the first target
        if pose.to_ego(pts[0])[0] > -1.0:
            d = pts[0] - pose.xy
            u = d / max(np.linalg.norm(d), 1e-6)
            pts = np.vstack([pose.xy - 2.0 * u, pose.xy, pts])
        # drop doubled points (the route ends: every target is its last point)
        step = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        pts = pts[np.concatenate([[True], step > 0.2])]
        if len(pts) == 1:  # a route that has ended: a stub along the heading so the path has a direction
            pts = np.vstack([pts, pts[0] + 0.5 * np.array([np.cos(pose.heading_rad), np.sin(pose.heading_rad)])])
        self.xy = _smooth(pts, PATH_STEP_M)
        return self.xy


def _smooth(pts: np.ndarray, step_m: float) -> np.ndarray:
    """A cubic spline through the points (chord-length parameter), sampled every ``step_m``: the
    route's targets are 8 m apart, and the polygon through them has corners a car cannot follow."""
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    if len(pts) < 3:
        return resample_polyline(pts, step_m)
    spline = CubicSpline(chord, pts, bc_type="natural")
    dense = spline(np.linspace(0.0, chord[-1], max(int(chord[-1] / 0.25), 2) + 1))
    return resample_polyline(dense, step_m)


def project(path: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arc length and signed lateral offset (left positive) of points on a polyline."""
    xy = np.atleast_2d(xy)
    seg = np.diff(path, axis=0)
    seg_len = np.maximum(np.linalg.norm(seg, axis=1), 1e-9)
    s_pts = np.concatenate([[0.0], np.cumsum(seg_len)])
    rel = xy[:, None, :] - path[None, :-1, :]
    u = np.clip((rel * seg[None]).sum(-1) / seg_len**2, 0.0, 1.0)
    foot = path[None, :-1, :] + u[..., None] * seg[None]
    d2 = ((xy[:, None, :] - foot) ** 2).sum(-1)
    k = np.argmin(d2, axis=1)
    n = np.arange(len(xy))
    cross = seg[k, 0] * rel[n, k, 1] - seg[k, 1] * rel[n, k, 0]
    s = s_pts[k] + u[n, k] * seg_len[k]
    # before the path's start or beyond its end the offset is measured to the extended end segment
    return s, np.sign(cross) * np.sqrt(d2[n, k])


def offset_path(path: np.ndarray, s0: float, d0: float, d1: float, length_m: float,
                change_m: float, slope0: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points (x, y), headings and arc lengths of a path that starts at (s0, d0) on the reference
    with lateral slope ``slope0`` (dd/ds: the ego's heading relative to the reference) and reaches
    the offset d1 after ``change_m`` with a quintic (no curvature at the start, none at the end)."""
    seg = np.diff(path, axis=0)
    s_pts = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=1))])
    head = np.arctan2(seg[:, 1], seg[:, 0])
    head = np.concatenate([head, head[-1:]])
    s = s0 + np.arange(0.0, length_m + 1e-9, PATH_STEP_M)
    u = np.clip((s - s0) / max(change_m, 1e-6), 0.0, 1.0)
    a1 = slope0 * max(change_m, 1e-6)
    dd = d1 - d0
    d = d0 + a1 * u + (10 * dd - 6 * a1) * u**3 + (-15 * dd + 8 * a1) * u**4 + (6 * dd - 3 * a1) * u**5
    # beyond the known path the reference goes straight on along its last heading
    s_in = np.clip(s, 0.0, s_pts[-1])
    base = np.column_stack([np.interp(s_in, s_pts, path[:, 0]), np.interp(s_in, s_pts, path[:, 1])])
    h = np.interp(s_in, s_pts, np.unwrap(head))
    base += (s - s_in)[:, None] * np.column_stack([np.cos(h), np.sin(h)])
    xy = base + d[:, None] * np.column_stack([-np.sin(h), np.cos(h)])
    step = np.diff(xy, axis=0)
    hd = np.arctan2(step[:, 1], step[:, 0])
    hd = np.concatenate([hd, hd[-1:]])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(step, axis=1))])
    return xy, hd, arc


def curve_speed(heading: np.ndarray, arc: np.ndarray, lat_accel: float) -> np.ndarray:
    """The speed at which each point of a path can be driven at the given lateral acceleration."""
    if len(arc) < 3:
        return np.full(len(arc), np.inf)
    kappa = np.abs(np.gradient(np.unwrap(heading), arc, edge_order=1))
    kappa = np.convolve(kappa, np.ones(5) / 5, mode="same")  # a 5 m window: one kink is not a curve
    return np.sqrt(lat_accel / np.maximum(kappa, 1e-4))


@dataclass(frozen=True)
class _Context:
    """What every candidate of one planning tick shares."""

    path: np.ndarray
    s0: float  # the rear axle's arc length and offset on the reference
    d0: float
    v0: float
    pred: Prediction
    v_limit: float
    stops_s: list[float]
    slope0: float
    lane_width_m: float


class LatticePlanner:
    def __init__(self, config: PlannerConfig | None = None) -> None:
        self.cfg = config or PlannerConfig()
        self.current_offset = 0.0  # lanes; the lateral target we hold

    def plan(self, pose: OdometryPose, speed_mps: float, path: np.ndarray, pred: Prediction,
             v_limit_mps: float, stops_s: list[float], neighbour_lanes: tuple[bool, bool] = (False, False),
             lanes: LaneEstimate | None = None, may_change: bool = True) -> Trajectory:
        """The best trajectory. ``stops_s``: arc lengths on the reference where the ego must stand
        (a red light's stop line, the route's end). The lanes beside the route's come from ``lanes``
        (the perceived lanes) or, without it, from ``neighbour_lanes``: (left, right) exist. A lane
        beside ours is tried only when a static obstacle stands in ours ahead (``may_change``: the
        caller allows lane changes now), and the route's lane whenever we are beside it."""
        cfg = self.cfg
        # the path is planned for the rear axle, as a car is steered (and as the follower pursues):
        # a centre path turning from straight into a tight curve has no rear-axle path a car can drive
        rear = pose.xy - REAR_AXLE_M * np.array([np.cos(pose.heading_rad), np.sin(pose.heading_rad)])
        s0, d0 = project(path, rear)
        s0, d0 = float(s0[0]), float(d0[0])
        v0 = max(speed_mps, 0.0)
        seg = np.diff(path, axis=0)
        s_pts = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=1))])
        h_ref = float(np.interp(s0, s_pts[:-1], np.unwrap(np.arctan2(seg[:, 1], seg[:, 0]))))
        slope0 = float(np.clip(np.tan(wrap_angle(pose.heading_rad - h_ref)), -SLOPE_MAX, SLOPE_MAX))
        width, allowed = self._lanes(lanes, neighbour_lanes)
        ctx = _Context(path, s0, d0, v0, pred, v_limit_mps, stops_s, slope0, width)
        cur = self.current_offset
        best = self._candidate(ctx, cur, cfg.lane_change_time_s)
        tries = [] if cur == 0.0 else [(0.0, cfg.lane_change_time_s)]  # back to the route's lane
        if may_change and best.static_ahead:
            tries += [(cur + k, cfg.evasive_change_time_s) for k in (1.0, -1.0) if cur + k in allowed]
        for off, change_s in tries:
            traj = self._candidate(ctx, off, change_s)
            if (traj.safe, -traj.cost) > (best.safe, -best.cost):
                best = traj
        self.current_offset = best.offset_lanes
        return best

    def _lanes(self, lanes: LaneEstimate | None, neighbour_lanes: tuple[bool, bool]) -> tuple[float, set[float]]:
        """The lane width and the lane offsets (in lane widths, 0 the route's lane) a trajectory may
        end in: perceived lanes of our direction on drivable ground with room for the car."""
        cfg = self.cfg
        if lanes is None:
            return cfg.lane_width_m, {0.0} | {float(k) for k in cfg.lateral_offsets
                                              if (k > 0 and neighbour_lanes[0]) or (k < 0 and neighbour_lanes[1])}
        if not lanes.valid:
            return cfg.lane_width_m, {0.0}
        width = lanes.lane_width_m
        lo, hi = lanes.drivable_d_m
        allowed = {0.0}
        for c in lanes.centres_d_m:
            k = float(np.rint(c / width))
            if abs(c - k * width) < width / 4 and lo <= c - EGO_WIDTH_M / 2 and c + EGO_WIDTH_M / 2 <= hi:
                allowed.add(k)
        return width, allowed

    def _candidate(self, ctx: "_Context", off: float, change_time_s: float) -> Trajectory:
        cfg = self.cfg
        path, s0, d0, v0, pred, v_limit, stops_s, slope0 = (ctx.path, ctx.s0, ctx.d0, ctx.v0, ctx.pred, ctx.v_limit,
                                                            ctx.stops_s, ctx.slope0)
        d1 = off * ctx.lane_width_m
        # a lane change takes change_time_s; a small correction is spread over at least the
        # distance of the pursuit horizon (a short blend is a kink the car cannot follow)
        change_m = max(abs(d1 - d0) / ctx.lane_width_m * change_time_s * max(v0, 3.0),
                       CORRECTION_TIME_S * v0, CORRECTION_MIN_M)
        length = max(v_limit * 4.5 + 20.0, 30.0)
        xy, hd, arc = offset_path(path, s0, d0, d1, length, change_m, slope0)
        v_curve = curve_speed(hd, arc, cfg.lat_accel_mps2)
        occ = self._occupancy(xy, hd, arc, pred)
        t = pred.t_s
        dt = float(t[1] - t[0]) if len(t) > 1 else 0.25
        # stops on the reference map onto this path's arc length (same s, offsets are parallel)
        stop_arcs = [s - s0 for s in stops_s if s - s0 > -2.0]  # from the rear axle
        s, v = 0.0, v0
        out_s, out_v = [], []
        hard_brake = False
        for i, ti in enumerate(t):
            out_s.append(s)
            out_v.append(v)
            v_des = min(v_limit * cfg.cruise_factor, float(np.interp(s + v * 1.5, arc, v_curve)))
            # leaders: objects in the corridor now or within the reaction window; stops
            gap, v_lead, lead_static = np.inf, 0.0, False
            w = (t >= ti - 1e-9) & (t <= ti + cfg.react_window_s + 1e-9)
            if occ.size:
                ahead = occ[:, w]
                s_occ = np.where(ahead > s + FRONT_FROM_REAR_M - 1.0, ahead, np.inf)
                j = np.unravel_index(np.argmin(s_occ), s_occ.shape)
                if np.isfinite(s_occ[j]):
                    gap = s_occ[j] - s - FRONT_FROM_REAR_M
                    lead_static = bool(pred.static[j[0]])
                    # a leader moving along our path keeps its speed; one crossing it counts as standing
                    v_lead = pred.speed_mps[j[0]] * max(0.0, self._along(pred, j[0], xy, hd, arc, s_occ[j]))
            for st in stop_arcs:
                g = st - s - FRONT_FROM_REAR_M - cfg.stop_s0_m + cfg.idm_s0_m
                if g < gap:
                    gap, v_lead = g, 0.0
            a = _idm(v, v_des, gap, v_lead, cfg)
            if a < -6.0:
                hard_brake = True
            v = max(0.0, v + a * dt)
            s = s + v * dt
        s_t, v_t = np.array(out_s), np.array(out_v)
        px = np.interp(s_t, arc, xy[:, 0])
        py = np.interp(s_t, arc, xy[:, 1])
        ph = np.interp(s_t, arc, np.unwrap(hd))
        px, py = px + REAR_AXLE_M * np.cos(ph), py + REAR_AXLE_M * np.sin(ph)  # centre poses
        safe = not hard_brake and self._clear(px, py, ph, pred)
        if safe and abs(d1 - d0) > ctx.lane_width_m / 2:  # changing lanes: mind who comes from behind there
            safe = self._rear_clear(ctx, d1)
        # a lane that ends in a standstill behind something that does not move is blocked
        blocked = lead_static and v_t[-1] < BLOCKED_MPS
        standing = pred.static | (pred.speed_mps < STANDING_MPS)
        static_ahead = bool(occ.size and np.isfinite(occ[standing, 0]).any())
        cost = (-cfg.w_progress * s_t[-1] + cfg.w_offset * abs(off) + cfg.w_change * (abs(off - self.current_offset) > 1e-6)
                + cfg.w_blocked * blocked + cfg.w_static * static_ahead)
        return Trajectory(np.column_stack([px, py]), ph, v_t, t, off, float(cost), safe, static_ahead)

    def _rear_clear(self, ctx: "_Context", d1: float) -> bool:
        """No moving object behind us in the target lane closer than it needs to slow to our speed
        (it cannot stop for a car that cuts in at arm's length)."""
        pred, cfg = ctx.pred, self.cfg
        if len(pred.xy) == 0:
            return True
        s, d = project(ctx.path, pred.xy[:, 0])
        rear_s = ctx.s0  # the ego's rear axle: near enough its back
        for i in np.nonzero(~pred.static)[0]:
            in_target = abs(d[i] - d1) < ctx.lane_width_m / 2 + 0.5
            in_ours = abs(d[i] - ctx.d0) < ctx.lane_width_m / 2
            if not in_target or in_ours or s[i] > rear_s + EGO_LENGTH_M:
                continue
            gap = rear_s - (s[i] + pred.length_m[i] / 2)
            closing = max(pred.speed_mps[i] - ctx.v0, 0.0)
            if gap < cfg.rear_gap_m + cfg.rear_gap_s * pred.speed_mps[i] + closing**2 / (2 * cfg.rear_decel_mps2):
                return False
        return True

    def _occupancy(self, xy, hd, arc, pred: Prediction) -> np.ndarray:
        """(N, T) arc length on this path at which each object stands in its corridor, inf if not."""
        n, T = pred.xy.shape[:2]
        out = np.full((n, T), np.inf)
        if n == 0:
            return out
        half = EGO_WIDTH_M / 2 + self.cfg.corridor_margin_m
        pts = pred.xy.reshape(-1, 2)
        s, d = project(xy, pts)
        s, d = s.reshape(n, T), d.reshape(n, T)
        # the object's own half extent across the path (its box is oriented by its heading)
        rel = np.abs(np.sin(pred.heading_rad[:, None] - np.interp(s, arc, np.unwrap(hd))))
        across = pred.width_m[:, None] / 2 * (1 - rel) + pred.length_m[:, None] / 2 * rel
        along = pred.length_m[:, None] / 2 * (1 - rel) + pred.width_m[:, None] / 2 * rel
        inside = (np.abs(d) < half + across) & (s < arc[-1]) & (s > 0.0)
        # a car now behind our front moving our way is a follower, not a leader: braking for where it
        # will be once it has passed us makes it run into us (it is braking for us meanwhile)
        h_now = np.interp(s[:, 0], arc, np.unwrap(hd))
        follower = (~pred.static & (s[:, 0] < FRONT_FROM_REAR_M - 1.0)
                    & (np.cos(pred.heading_rad - h_now) > FOLLOWER_COS))
        inside &= ~follower[:, None]
        out[inside] = (s - along)[inside]
        return out

    @staticmethod
    def _along(pred: Prediction, i: int, xy, hd, arc, s_at: float) -> float:
        h_path = float(np.interp(s_at, arc, np.unwrap(hd)))
        return float(np.cos(wrap_angle(pred.heading_rad[i] - h_path)))

    def _clear(self, px, py, ph, pred: Prediction) -> bool:
        """The ego's footprint along the trajectory stays clear of every predicted object (objects
        behind the ego's front at the start are the followers' business)."""
        if len(pred.xy) == 0:
            return True
        m = self.cfg.collision_margin_m
        c, s = np.cos(ph[0]), np.sin(ph[0])
        rel0 = pred.xy[:, 0] - np.array([px[0], py[0]])
        ahead = rel0 @ np.array([c, s]) > -EGO_LENGTH_M / 2
        for k in range(1, len(px)):
            ego = box_corners(np.array([px[k], py[k]]), np.array([ph[k]]), np.array([EGO_LENGTH_M + 2 * m]),
                              np.array([EGO_WIDTH_M + 2 * m]))[0]
            near = ahead & (np.linalg.norm(pred.xy[:, k] - np.array([px[k], py[k]]), axis=1) < 10.0)
            if not near.any():
                continue
            obs = box_corners(pred.xy[near, k], pred.heading_rad[near], pred.length_m[near], pred.width_m[near])
            if boxes_overlap(ego, obs).any():
                return False
        return True


def _idm(v: float, v_des: float, gap: float, v_lead: float, cfg: PlannerConfig) -> float:
    v_des = max(v_des, 0.1)
    free = cfg.idm_accel_mps2 * (1 - (v / v_des) ** 4)
    if not np.isfinite(gap):
        return max(free, -cfg.idm_decel_mps2 * 2)
    s_star = cfg.idm_s0_m + max(0.0, v * cfg.idm_time_gap_s + v * (v - v_lead) / (2 * np.sqrt(cfg.idm_accel_mps2 * cfg.idm_decel_mps2)))
    a = free - cfg.idm_accel_mps2 * (s_star / max(gap, 0.1)) ** 2
    return float(max(a, -9.0))


def plan_poses(traj: Trajectory, pose: OdometryPose) -> np.ndarray:
    """The trajectory as the Plan's 8 poses at 0.5 s in the current ego frame."""
    tq = PLAN_DT_S * np.arange(1, PLAN_POSES + 1)
    x = np.interp(tq, traj.t_s, traj.xy[:, 0])
    y = np.interp(tq, traj.t_s, traj.xy[:, 1])
    h = np.interp(tq, traj.t_s, traj.heading_rad)
    xy_ego = pose.to_ego(np.column_stack([x, y]))
    return np.column_stack([xy_ego, wrap_angle(h - pose.heading_rad)])
