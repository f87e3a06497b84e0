"""On-road driving for the privileged expert: lane-level route keeping, lane changes, car following,
traffic lights, yielding, and the speed profile along its own path.

Everything here reads the world's ground truth (the HD map, every actor's state, the lights):
that is what makes the expert privileged. It never moves anything; it only returns a plan.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dualdrive.agents.base import PLAN_DT_S, PLAN_POSES
from dualdrive.world.geometry import box_corners, boxes_overlap, wrap_angle, world_to_ego
from dualdrive.world.map import LaneKind, LaneMap, Movement
from dualdrive.world.signals import Light
from dualdrive.world.traffic import RB_LOOK_S, RB_SIBLING_M, Kind, idm
from dualdrive.world.world import EGO_LENGTH_M, EGO_WIDTH_M, World

PATH_STEP_M = 1.0
LANE_CHANGE_LENGTH_S = 3.5  # seconds of travel over which a lateral offset is taken out
MIN_LANE_CHANGE_M = 12.0  # a lane's width sideways within this at low speed (radius ~8 m)
A_LAT_MAX_MPS2 = 2.0  # comfortable cornering
IDM_T_S, IDM_A, IDM_B, IDM_S0 = 1.4, 1.6, 2.0, 2.5
STOP_S0_M = 0.8  # stand this far behind a stop line
STATIC_GAP_M = 9.0  # and this far behind a stalled car or cones, room to steer round it
STATIC_CLEARANCE_M = 0.35  # passing a static obstacle, keep at least this off it
CORRIDOR_MARGIN_M = 0.45
YIELD_HORIZON_S = 5.0
OBSTACLE_LOOKAHEAD_M = 70.0
BLOCKED_LANE_COST_M = 2000.0
MAX_DETOUR_M = 30.0
ROUTE_LOOKAHEAD_LANES = 8  # blockers this many route lanes ahead make the expert re-plan
EMERGENCY_RANGE_M = 90.0
EMERGENCY_LC_REST_M = 60.0  # lane left that making way for an emergency vehicle needs
EMERGENCY_MIN_MPS = 5.0  # make way for an emergency vehicle only when both are moving
LC_LAST_CHANCE_M = 8.0  # no lane change the route asks for starts this close to the end of a lane
QUEUE_MPS = 2.0  # below this both we and the follower are in a crawling queue
GAP_SEEK_FACTOR = 0.85  # waiting for a gap, drive this fraction of the limit so gaps pass by
LANE_CHANGE_CLEAR_S = 2.0  # a faster follower must still be this far off when our change is done
FAST_FOLLOWER_MPS = 5.0  # a follower closing faster than this must be clear of our whole change
MAX_CHANGE_S = 5.0  # from a standstill a lane change is done in about this (accelerating across)
RETURN_ROOM_M = 30.0  # room after a blocker needed to change back into its lane
# The path is planned for the rear axle (the follower pursues with it, and a rear axle on the lane
# centre is how a car is steered along a lane); plan poses are the matching centre poses.
REAR_AXLE_M = 2.5
FRONT_FROM_REAR_M = REAR_AXLE_M + EGO_LENGTH_M / 2
CRUISE_FACTOR = 0.97  # drive a little under the limit, as a careful driver does
GAP_LATERAL_M = 2.6  # a vehicle this close to the target lane's centre line is in the gap
TURN_IN_WATCH_M = 40.0  # this close after a junction, watch for traffic turning into the target lane
TURN_IN_HORIZON_S = 5.0
GIVE_WAY_MPS = 2.5  # a roundabout's give-way line is approached at this speed, from which a stop is gentle
GIVE_WAY_CREEP_M = 8.0  # over the last metres before the line (the driver looks for a gap)
HELD_MPS = 0.3  # below this a vehicle with priority counts as standing still
HELD_WAIT_S = 4.0  # traffic with priority standing still this long at its line lets us go
PED_WATCH_M = 9.0  # pedestrians this close to where our path crosses their crosswalk matter
PED_CLEAR_M = 1.8  # a pedestrian this far past our crossing point (walking away) no longer does
PED_ABOUT_TO_WALK_S = 3.0  # a pedestrian at the kerb with the walk signal steps off within this
PED_STOP_MARGIN_M = 2.5  # in a turn the front corner reaches the crosswalk before the path does


@dataclass
class Obstacles:
    xy: np.ndarray
    heading: np.ndarray
    speed: np.ndarray
    length: np.ndarray
    width: np.ndarray
    static: np.ndarray


def gather_obstacles(world: World, centre: np.ndarray, radius: float) -> Obstacles:
    """Every vehicle, pedestrian and static object within ``radius``, with predicted positions of
    moving ones appended (1 s and 2 s ahead), so a cut-in or a crossing pedestrian is seen early."""
    tr = world.traffic
    ve = tr.veh
    xy, h = tr.poses()
    sel = ve.active & (ve.kind != Kind.WORKZONE) & (np.linalg.norm(xy - centre, axis=1) < radius)
    p = tr.ped
    ped = (p.state == 1) & (np.linalg.norm(p.xy - centre, axis=1) < radius)
    st = world.statics
    sst = np.linalg.norm(st.xy - centre, axis=1) < radius if len(st.xy) else np.zeros(0, bool)
    parts = [
        (xy[sel], h[sel], ve.v[sel], ve.length[sel], ve.width[sel], np.isin(ve.kind[sel], (Kind.STALLED,)) | (ve.v0[sel] == 0)),
        (p.xy[ped], np.arctan2(p.dir[ped, 1], p.dir[ped, 0]), np.where(tr.ped_halted[ped], 0.0, p.speed[ped]),
         np.full(ped.sum(), 0.8),
         np.full(ped.sum(), 0.8), np.zeros(ped.sum(), bool)),
        (st.xy[sst], st.heading_rad[sst], np.zeros(sst.sum()), st.length_m[sst], st.width_m[sst], np.ones(sst.sum(), bool)),
    ]
    # predictions: vehicles 1 s ahead, pedestrians 1 s and 2 s ahead (shown as stationary there)
    for k, horizon in ((0, 1.0), (1, 1.0), (1, 2.0)):
        pxy, ph, pv, pl, pw, _ = parts[k]
        fut = pxy + horizon * pv[:, None] * np.column_stack([np.cos(ph), np.sin(ph)])
        parts.append((fut, ph, pv * 0.0 if k == 1 else pv, pl, pw, np.zeros(len(pxy), bool)))
    cat = [np.concatenate([pt[i] for pt in parts]) for i in range(6)]
    cat[0] = cat[0].reshape(-1, 2)
    return Obstacles(*cat)


class RouteDriver:
    """Keeps a lane-level route (lane ids, lane changes as neighbour steps) and produces plans."""

    def __init__(self, world: World, route: list[int], final_stop_s: float | None = None,
                 speed_cap_mps: float | None = None) -> None:
        self.w = world
        self.m: LaneMap = world.map
        self.route = list(route)
        self.i = 0
        self.final_stop_s = final_stop_s  # stop at this s on the last route lane (None: drive on)
        self.speed_cap = speed_cap_mps
        self.last_change_t = -1e9
        self._last_replan = -1e9
        self.gap_wait_t = -1e9  # when a lane change the route needs last found no gap
        self._held_since: dict[int, float] = {}  # per connector: since when the traffic we yield to stood still
        self.preds: dict[int, list[int]] = {ln.id: [] for ln in self.m.lanes}
        for ln in self.m.lanes:
            for x in ln.successors:
                self.preds[x].append(ln.id)

    # -- localisation --------------------------------------------------------------------------
    def rear_xy(self) -> np.ndarray:
        h = self.w.ego_heading
        return self.w.ego_xy - REAR_AXLE_M * np.array([np.cos(h), np.sin(h)])

    def lane_s(self) -> tuple[int, float, float]:
        """(lane, s, lateral offset) of the rear axle on the current route lane."""
        m = self.m
        rear = self.rear_xy()
        while True:
            lane = self.route[self.i]
            s, lat = m.hw_lanes[lane].local_coordinates(rear)
            if s > m.length[lane] - 0.05 and self.i + 1 < len(self.route):
                if self.route[self.i + 1] in m.lanes[lane].successors:
                    self.i += 1
                    continue
                if m.lanes[lane].successors and self._reroute_past(lane, rear):
                    continue
            return lane, float(s), float(lat)

    def _reroute_past(self, lane: int, rear: np.ndarray) -> bool:
        """A lane change the route asked for did not happen before the lane ended (no gap came):
        carry on into the lane we are on and plan again from it, as a driver's navigation does."""
        m = self.m
        on = min(m.lanes[lane].successors, key=lambda x: abs(m.hw_lanes[x].local_coordinates(rear)[1]))
        try:
            new = m.route(on, [self.route[-1]])
        except ValueError:
            new = [on]  # the goal is out of reach from here: drive on, off the route, rather than swerve
        self.route = self.route[:self.i + 1] + new
        self.i += 1
        return True

    @property
    def finished(self) -> bool:
        if self.final_stop_s is None:
            return False
        lane, s, _ = self.lane_s()
        return (self.i == len(self.route) - 1 and abs(s + REAR_AXLE_M - self.final_stop_s) < 0.6
                and abs(self.w.ego_speed) < 0.1)

    # -- the path ahead ------------------------------------------------------------------------
    def path_lanes(self) -> list[int]:
        """Lanes the path follows from the current one: route lanes up to a pending lane change,
        then the successors that lead back towards the route."""
        m = self.m
        lanes = [self.route[self.i]]
        j = self.i + 1
        pending = False
        while len(lanes) < 8:
            cur = lanes[-1]
            succ = m.lanes[cur].successors
            if not pending and j < len(self.route) and self.route[j] in succ:
                lanes.append(self.route[j])
                j += 1
                continue
            if j < len(self.route) and m.is_lane_change(cur, self.route[j]):
                pending = True
            if not succ:
                break
            later = set(self.route[j:])
            pick = next((x for x in succ if x in later), succ[0])
            lanes.append(pick)
        return lanes

    def build_path(self, length_m: float) -> tuple[np.ndarray, np.ndarray, list[tuple[int, float]]]:
        """World-frame path points from the ego forward, the lateral offset easing to the lane centre.
        Also returns the (lane, distance-from-ego to lane start) of each lane on the path."""
        m = self.m
        lane, s, lat = self.lane_s()
        # a smaller offset is taken out over a shorter distance (the same path curvature)
        ease = max(MIN_LANE_CHANGE_M * np.sqrt(min(abs(lat) / 3.5, 1.0)), LANE_CHANGE_LENGTH_S * abs(self.w.ego_speed), 3.0)
        lanes = self.path_lanes()
        lane_pts, lane_ids, lane_starts = [], [], []
        d0 = -s
        for k, ln in enumerate(lanes):
            lane_starts.append((ln, d0))
            a = min(s, m.length[ln] - 1.0) if k == 0 else 0.0  # past the end of a sink: keep a stub
            b = m.length[ln]
            if d0 + b > length_m:
                b = length_m - d0
            if b > a:
                n = max(2, int(np.ceil((b - a) / PATH_STEP_M)) + 1)
                lane_pts.append(np.linspace(a, b, n))
                lane_ids.append(np.full(n, ln))
            d0 += m.length[ln]
            if d0 >= length_m:
                break
        ss = np.concatenate(lane_pts)
        ll = np.concatenate(lane_ids)
        # distance along the path of every sample
        d = np.empty(len(ss))
        off = 0
        for k, pts in enumerate(lane_pts):
            start = lane_starts[k][1]
            d[off:off + len(pts)] = start + pts
            off += len(pts)
        lat_d = lat * np.clip(1.0 - d / ease, 0.0, 1.0)
        xy, h = m.pose(ll, ss, lat_d)
        keep = np.concatenate([[True], np.linalg.norm(np.diff(xy, axis=0), axis=1) > 0.05])
        return xy[keep], d[keep], lane_starts

    # -- decisions -----------------------------------------------------------------------------
    def maybe_change_lane(self, obstacles: Obstacles) -> None:
        """Lane changes the route asks for, around a blocked lane, and out of an emergency vehicle's way."""
        w, m = self.w, self.m
        self._avoid_blocked_lanes()
        lane, s, lat = self.lane_s()
        if (abs(lat) > 0.8 and w.ego_speed > QUEUE_MPS) or w.t - self.last_change_t < 2.0:
            return  # finish the current change first (unless it stalled: then decide afresh)
        want = -1
        if self.i + 1 < len(self.route) and m.is_lane_change(lane, self.route[self.i + 1]):
            want = self.route[self.i + 1]
        blocked = self._blocked_ahead(lane, s)
        # make way for an emergency vehicle only with room left to come back before the lane ends
        # (a lane change just before an intersection loses the turn the route needs)
        yield_ev = m.length[lane] - s > EMERGENCY_LC_REST_M and self._emergency_behind(lane, s)
        if blocked is not None or yield_ev:
            options = self._escape_lanes(lane, prefer_right=blocked is None)
            for want, new_route in options:  # the best side first; the other if only it has a gap
                if self._gap_ok(want, s):
                    self.route = [lane] + new_route
                    self.i = 1
                    self._switch(want)
                    return
            if options:
                return
        if want >= 0 and self._blocked_ahead(want, float(m.hw_lanes[want].local_coordinates(self.rear_xy())[0])) is not None:
            return  # not into a lane closed ahead: pass the blocker first
        if want >= 0 and m.lanes[lane].successors and m.length[lane] - s < LC_LAST_CHANCE_M:
            return  # too late: no swerve across the stop line into an intersection; re-route past it
        if want >= 0 and m.kind[lane] in (LaneKind.ROAD, LaneKind.RAMP):
            if self._gap_ok(want, s):
                self.i += 1
                self._switch(want)
            else:
                self.gap_wait_t = w.t  # no gap: ease off so that the target lane's gaps slide by

    def _avoid_blocked_lanes(self) -> None:
        """Once a second: if a lane ahead on the route holds a stalled car or a work zone, re-plan the
        route (up to the parking lot, if any) round it, so lanes are chosen before the intersection
        rather than swerved out of behind the blocker."""
        w, m = self.w, self.m
        if w.t - self._last_replan < 1.0:
            return
        self._last_replan = w.t
        ve = w.traffic.veh
        static = ve.active & np.isin(ve.kind, (Kind.STALLED, Kind.WORKZONE))
        ahead = set(self.route[self.i + 1:self.i + ROUTE_LOOKAHEAD_LANES])
        hit = {int(x) for x in ve.lane[static]} & ahead
        if not hit:
            return
        j = next((k for k in range(self.i, len(self.route)) if m.kind[self.route[k]] in (LaneKind.ACCESS, LaneKind.AISLE)),
                 len(self.route))
        target = self.route[j - 1]
        if target in hit or j - 1 <= self.i:
            return
        try:
            new = m.route(self.route[self.i], [target], blocked={x: BLOCKED_LANE_COST_M for x in hit})
        except ValueError:
            return
        old_len = sum(m.length[x] for x in self.route[self.i:j])
        # a way round on the same roads (another lane); a detour round the block is not worth it
        if not hit & set(new) and sum(m.length[x] for x in new) < old_len + MAX_DETOUR_M:
            self.route = self.route[:self.i] + new + self.route[j:]

    def _switch(self, lane: int) -> None:
        self.route[self.i] = lane if self.route[self.i] == lane else self.route[self.i]
        if self.route[self.i] != lane:
            self.route.insert(self.i, lane)
        self.last_change_t = self.w.t
        # traffic behind sees us on the new lane from now on (the world derives it from our position)

    def _escape_lanes(self, lane: int, prefer_right: bool) -> list[tuple[int, list[int]]]:
        m = self.m
        goal = self.route[-1]
        options = []
        # with room to come back after the blocker (a turn lane, say), pass it and return; else
        # plan as if the lane were closed
        closed = {} if self._room_after_blocker(lane) >= RETURN_ROOM_M else {lane: BLOCKED_LANE_COST_M}
        for nb in (m.right[lane], m.left[lane]) if prefer_right else (m.left[lane], m.right[lane]):
            if nb < 0 or m.length[nb] - 0 < 1:
                continue
            try:
                r = m.route(int(nb), [goal], blocked=closed)
            except ValueError:
                continue
            if not prefer_right and lane in r and m.lanes[int(nb)].dead_end:
                continue  # an acceleration lane that only leads back into the blocked lane
            # (otherwise coming back to the blocked lane later is fine: the change back waits until
            # the blocker is passed, see "not into a lane closed ahead")
            cost = sum(m.length[x] for x in r)
            options.append((cost + (0 if prefer_right and nb == m.right[lane] else 1.0), int(nb), r))
        options.sort(key=lambda o: o[0])
        return [(o[1], o[2]) for o in options]

    def _room_after_blocker(self, lane: int) -> float:
        """Metres of ``lane`` left after its last static blocker (the whole lane if it has none)."""
        ve = self.w.traffic.veh
        on = ve.active & (ve.lane == lane) & np.isin(ve.kind, (Kind.STALLED, Kind.WORKZONE))
        if not on.any():
            return float(self.m.length[lane])
        end = ve.s[on] + ve.length[on] / 2
        return float(self.m.length[lane] - end.max())

    def _blocked_ahead(self, lane: int, s: float) -> float | None:
        """Distance to a stopped obstacle (stalled car, work zone) ahead in our lane, if any."""
        ve = self.w.traffic.veh
        mask = ve.active & (ve.lane == lane) & (ve.s > s) & (ve.s - s < OBSTACLE_LOOKAHEAD_M) & (
            np.isin(ve.kind, (Kind.STALLED, Kind.WORKZONE)))
        if mask.any():
            return float((ve.s[mask] - s).min())
        return None

    def _emergency_behind(self, lane: int, s: float) -> bool:
        ve = self.w.traffic.veh
        ev = ve.active & (ve.kind == Kind.EMERGENCY)
        if not ev.any():
            return False
        xy, _ = self.w.traffic.poses()
        rel = world_to_ego(xy[ev], self.w.ego_xy, self.w.ego_heading)
        # in a queue nobody can pull over and the emergency vehicle is not getting through faster
        # anyway: a crawling lane change into free-flowing traffic is the dangerous move
        moving = (ve.v[ev] > EMERGENCY_MIN_MPS) & (self.w.ego_speed > EMERGENCY_MIN_MPS)
        return bool(np.any(moving & (rel[:, 0] < 0) & (rel[:, 0] > -EMERGENCY_RANGE_M) & (np.abs(rel[:, 1]) < 2.0)))

    def _gap_ok(self, target: int, s: float) -> bool:
        """Accept a gap on ``target`` when the new leader is far enough and the new follower need not brake hard."""
        w, m = self.w, self.m
        ve = w.traffic.veh
        v = max(w.ego_speed, 0.0)
        # by where vehicles physically are, not by lane ids: an NPC mid-change, or one just past a
        # section boundary, still occupies the gap we want
        _, lat_t = m.hw_lanes[target].local_coordinates(w.ego_xy)
        on = np.where(ve.active)[0]
        xy, _ = w.traffic.poses()
        rel = world_to_ego(xy[on], w.ego_xy, w.ego_heading) if len(on) else np.zeros((0, 2))
        # ... and by intent: a vehicle that has begun changing into the target lane is in the gap too
        target_lanes = [target, *m.lanes[target].successors, *self.preds[target]]
        sel = (np.abs(rel[:, 1] + lat_t) < GAP_LATERAL_M) | np.isin(ve.lane[on], target_lanes)
        on, ds = on[sel], rel[sel, 0]
        if self._turning_in(target):
            return False
        half = (ve.length[on] + EGO_LENGTH_M) / 2
        ahead = ds >= 0
        gap_l = (ds[ahead] - half[ahead]).min() if ahead.any() else 1e4
        queue = v < QUEUE_MPS  # zipper merging in a standing queue: closer gaps are normal
        if gap_l < max(3.0 if queue else 6.0, 0.6 * v):
            return False
        behind = ~ahead
        if behind.any():
            k = np.argmax(ds[behind])
            gap_f = -ds[behind][k] - half[behind][k]
            vf = ve.v[on][behind][k]
            if queue and vf < QUEUE_MPS / 2 and gap_f > 1.0:
                return True  # a standing follower lets us in ahead of it (and then follows us)
            a_f = idm(np.array([vf]), np.array([max(vf, 1.0) * 1.1]), np.array([max(gap_f, 0.1)]),
                      np.array([vf - v]), np.array([1.2]), np.array([1.5]), np.array([2.0]), np.array([2.0]))[0]
            if gap_f < max(5.0, 0.3 * vf) or a_f < -2.5:
                return False
            # a slow change beside a fast lane takes long: the follower must not close the gap before
            # we are across (a slow follower in a queue just adapts, as the IDM check above says)
            t_change = min(max(MIN_LANE_CHANGE_M, LANE_CHANGE_LENGTH_S * v) / max(v, 1.0), MAX_CHANGE_S)
            if vf > v + FAST_FOLLOWER_MPS and gap_f - (vf - v) * t_change < LANE_CHANGE_CLEAR_S * vf:
                return False
        return True

    def _turning_in(self, target: int) -> bool:
        """Just past a junction, traffic turning into ``target`` arrives from round the corner: no
        change while a car on (or about to take) a connector into it would reach us within a few
        seconds. The gap check by position cannot see it coming: it is not behind us yet."""
        w, m = self.w, self.m
        s_t, _ = m.hw_lanes[target].local_coordinates(w.ego_xy)
        feeders = [x for x in self.preds[target] if m.kind[x] == LaneKind.CONNECTOR]
        if s_t > TURN_IN_WATCH_M or not feeders:
            return False
        ve = w.traffic.veh
        on = np.where(ve.active & np.isin(ve.lane, feeders))[0]
        nxt = np.where(ve.active & np.isin(ve.next_lane, feeders))[0]
        dist = np.concatenate([m.length[ve.lane[on]] - ve.s[on],
                               m.length[ve.lane[nxt]] - ve.s[nxt] + m.length[ve.next_lane[nxt]]]) + max(s_t, 0.0)
        speed = np.maximum(np.concatenate([ve.v[on], ve.v[nxt]]), 1.0)
        return bool(np.any(dist / speed < TURN_IN_HORIZON_S))

    # -- longitudinal --------------------------------------------------------------------------
    def plan(self, obstacles: Obstacles) -> np.ndarray:
        w, m = self.w, self.m
        v = max(w.ego_speed, 0.0)
        horizon = max(40.0, v * PLAN_POSES * PLAN_DT_S + 30.0)
        path, d, lane_starts = self.build_path(horizon)
        v_max = self._speed_limits(path, d, lane_starts)
        lead_gap, lead_v = self._leader(path, d, obstacles)
        stop_d = self._stop_distance(lane_starts, v, obstacles)
        # roll the speed forward with IDM against the leader (constant speed) and the stop point
        s_t, v_t, out = 0.0, v, []
        for _ in range(PLAN_POSES):
            for _ in range(5):
                dt = PLAN_DT_S / 5
                v0 = max(float(np.interp(s_t, d, v_max)), 0.1)
                a = idm(np.array([v_t]), np.array([v0]), np.array([lead_gap - s_t + lead_v * 0]),
                        np.array([v_t - lead_v]), IDM_T_S, IDM_A, IDM_B, IDM_S0)[0]
                if stop_d is not None:
                    a = min(a, idm(np.array([v_t]), np.array([v0]), np.array([max(stop_d - s_t, 0.05)]),
                                   np.array([v_t]), IDM_T_S, IDM_A, IDM_B, STOP_S0_M)[0])
                a = float(np.clip(a, -7.0, IDM_A))
                v_new = max(v_t + a * dt, 0.0)
                s_t += (v_t + v_new) / 2 * dt
                v_t = v_new
                lead_gap += lead_v * dt
            out.append(min(s_t, d[-1]))
        s_arr = np.array(out)
        xy = np.column_stack([np.interp(s_arr, d, path[:, 0]), np.interp(s_arr, d, path[:, 1])])
        nxt = np.column_stack([np.interp(s_arr + 0.5, d, path[:, 0]), np.interp(s_arr + 0.5, d, path[:, 1])])
        hd = np.arctan2(nxt[:, 1] - xy[:, 1], nxt[:, 0] - xy[:, 0])
        xy = xy + REAR_AXLE_M * np.column_stack([np.cos(hd), np.sin(hd)])  # rear axle -> centre
        xy_ego = world_to_ego(xy, w.ego_xy, w.ego_heading)
        return np.column_stack([xy_ego, wrap_angle(hd - w.ego_heading)])

    def _speed_limits(self, path: np.ndarray, d: np.ndarray, lane_starts) -> np.ndarray:
        m = self.m
        limit = np.full(len(d), 0.0)
        for ln, start in lane_starts:
            limit[d >= start - 1e-6] = m.speed_limit[ln] * CRUISE_FACTOR
        for ln, start in lane_starts:
            if m.lanes[ln].give_way_s >= 0:
                # a give-way line: arrive slowly enough to stop there if the ring is not clear
                line = start + m.lanes[ln].give_way_s - FRONT_FROM_REAR_M
                near = (d > line - GIVE_WAY_CREEP_M) & (d <= line)
                limit[near] = np.minimum(limit[near], GIVE_WAY_MPS)
        if self.speed_cap is not None:
            limit = np.minimum(limit, self.speed_cap)
        if self.w.t - self.gap_wait_t < 1.0:
            limit = limit * GAP_SEEK_FACTOR
        # curvature from the heading change over a few metres
        hd = np.unwrap(np.arctan2(np.gradient(path[:, 1]), np.gradient(path[:, 0])))
        kappa = np.abs(np.gradient(hd) / np.maximum(np.gradient(d), 1e-3))
        if len(kappa) >= 5:
            kappa = np.convolve(kappa, np.ones(5) / 5, mode="same")
        v_curve = np.sqrt(A_LAT_MAX_MPS2 / np.maximum(kappa, 1e-4))
        v_max = np.minimum(limit, v_curve)
        # brake in time for slower stretches ahead: v(d) <= sqrt(v_ahead^2 + 2 b (d_ahead - d))
        b = 1.5
        v_rev = v_max.copy()
        for k in range(len(d) - 2, -1, -1):
            v_rev[k] = min(v_rev[k], np.sqrt(v_rev[k + 1] ** 2 + 2 * b * max(d[k + 1] - d[k], 0.0)))
        return v_rev

    def _leader(self, path: np.ndarray, d: np.ndarray, ob: Obstacles) -> tuple[float, float]:
        if len(ob.xy) == 0:
            return 1e4, 0.0
        sel = np.where(np.linalg.norm(ob.xy - path[0], axis=1) < d[-1] + 10.0)[0]
        if len(sel) == 0:
            return 1e4, 0.0
        diff = ob.xy[sel, None, :] - path[None, :, :]
        dist = np.linalg.norm(diff, axis=2)
        k = np.argmin(dist, axis=1)
        lat = dist[np.arange(len(sel)), k]
        rel_h = ob.heading[sel] - np.arctan2(np.gradient(path[:, 1])[k], np.gradient(path[:, 0])[k])
        # lateral half-extent of the obstacle as seen across our path
        half_w = 0.5 * (np.abs(np.sin(rel_h)) * ob.length[sel] + np.abs(np.cos(rel_h)) * ob.width[sel])
        half_l = 0.5 * (np.abs(np.cos(rel_h)) * ob.length[sel] + np.abs(np.sin(rel_h)) * ob.width[sel])
        inside = (lat < EGO_WIDTH_M / 2 + half_w + CORRIDOR_MARGIN_M) & (d[k] > REAR_AXLE_M) & (k < len(d) - 1)
        # a static obstacle beside a swerving path: the corridor test is coarse there, so test the
        # ego's own boxes along the path against it
        for j in np.where(inside & ob.static[sel])[0]:
            inside[j] = self._path_hits_box(path, d, int(k[j]), sel[j], ob)
        if not inside.any():
            return 1e4, 0.0
        gaps = d[k] - FRONT_FROM_REAR_M - half_l
        gaps = np.where(inside, gaps, 1e4)
        j = int(np.argmin(gaps))
        lead_v = max(0.0, float(ob.speed[sel][j] * np.cos(rel_h[j])))
        # stand well back from something that will not move, with room to steer round it
        margin = STATIC_GAP_M - IDM_S0 if ob.static[sel][j] else 0.0
        return float(gaps[j]) - margin, lead_v

    @staticmethod
    def _path_hits_box(path: np.ndarray, d: np.ndarray, k: int, i: int, ob: Obstacles) -> bool:
        near = np.where(np.abs(d - d[k]) < (EGO_LENGTH_M + ob.length[i]) / 2 + REAR_AXLE_M + 2.0)[0]
        nxt = np.minimum(near + 1, len(path) - 1)
        prv = np.maximum(near - 1, 0)
        hd = np.arctan2(path[nxt, 1] - path[prv, 1], path[nxt, 0] - path[prv, 0])
        centre = path[near] + REAR_AXLE_M * np.column_stack([np.cos(hd), np.sin(hd)])
        obstacle = box_corners(ob.xy[i], ob.heading[i], ob.length[i] + 2 * STATIC_CLEARANCE_M,
                               ob.width[i] + 2 * STATIC_CLEARANCE_M)
        egos = box_corners(centre, hd, np.full(len(near), EGO_LENGTH_M), np.full(len(near), EGO_WIDTH_M))
        return bool(boxes_overlap(obstacle[0], egos).any())

    def _stop_distance(self, lane_starts, v: float, ob: Obstacles) -> float | None:
        """Distance (front bumper) to where we must stop: a red/amber light, a yield, a dead end, the final stop."""
        w, m = self.w, self.m
        cur_lane, s_cur, _ = self.lane_s()
        for k, (ln, start) in enumerate(lane_starts):
            info = m.lanes[ln]
            line = start - FRONT_FROM_REAR_M  # front bumper at the lane's start (= previous lane's end)
            if k > 0 and info.kind == LaneKind.CONNECTOR and line > -0.5:
                g = info.signal_group
                light = w.lights[g] if g >= 0 else Light.GREEN
                if light == Light.RED:
                    return line
                if light == Light.AMBER and v * v / (2 * 3.0) < line + 0.5:
                    return line
                if self._must_yield(ln, line, v) or self._crosswalk_busy(ln):
                    return line
            if info.give_way_s >= 0:
                if k > 0 and line > -0.5 and self._entry_taken(ln, line):
                    return line
                gw_line = start + info.give_way_s - FRONT_FROM_REAR_M
                if gw_line > -0.3 and self._ring_busy(ln):
                    return max(gw_line, 0.0)
            if k == 0 and info.crosswalks:
                # already past the line (turning in the box): wait short of a busy crosswalk ahead
                for cw, s_cw in info.crosswalks:
                    before = start + s_cw - m.crosswalks[cw].width_m / 2 - PED_STOP_MARGIN_M - FRONT_FROM_REAR_M
                    if before > 0.3 and self._crosswalk_busy(ln, cw):
                        return before
            if k == len(lane_starts) - 1 or line > 150:
                break
        last = lane_starts[-1][0]
        if not m.lanes[last].successors and not m.lanes[last].is_sink and m.kind[last] != LaneKind.AISLE:
            return lane_starts[-1][1] + m.length[last] - FRONT_FROM_REAR_M - 2.0
        if self.final_stop_s is not None:
            for ln, start in lane_starts:
                if ln == self.route[-1] and self.i >= len(self.route) - 3:
                    # IDM halts about s0 short of the point; the point is the centre's, we plan the rear axle
                    return start + self.final_stop_s - REAR_AXLE_M + STOP_S0_M
        return None

    def _crosswalk_busy(self, lane: int, only: int | None = None) -> bool:
        """A pedestrian is on a crosswalk this lane crosses, heading for (or at) our crossing point,
        or stands at its kerb with the walk signal and is about to step off."""
        w, m = self.w, self.m
        p = w.traffic.ped
        if len(p.state) == 0:
            return False
        for cw, s_cw in m.lanes[lane].crosswalks:
            if only is not None and cw != only:
                continue
            cross, _ = m.pose(np.array([lane]), np.array([s_cw]))
            on = p.crosswalk == cw
            rel = cross[0] - p.xy
            dist = np.linalg.norm(rel, axis=1)
            coming = (p.state == 1) & (np.einsum("ij,ij->i", rel, p.dir) > -PED_CLEAR_M) & (dist < PED_WATCH_M)
            g = m.crosswalks[cw].signal_group
            walk = g >= 0 and w.lights[g] == Light.GREEN
            about = (p.state == 0) & walk & (p.wait_s < PED_ABOUT_TO_WALK_S) & (dist < PED_WATCH_M)
            if np.any(on & (coming | about)):
                return True
        return False

    def _ring_busy(self, entry: int) -> bool:
        """At a roundabout's give-way line: circulating traffic is on (or about to enter) the arc
        arriving at our merge point (the NPCs' rule too)."""
        w, m = self.w, self.m
        ve = w.traffic.veh
        arc = m.lanes[entry].merge_arc
        if np.any(ve.active & (ve.lane == arc)):
            return True
        cand = np.where(ve.active & (ve.next_lane == arc))[0]
        rest = m.length[ve.lane[cand]] - ve.s[cand] - ve.length[cand] / 2
        return bool(np.any(rest / np.maximum(ve.v[cand], 0.5) < RB_LOOK_S))

    def _entry_taken(self, entry: int, to_entry_m: float) -> bool:
        """A roundabout leg's two entry lanes converge: take ours only when the other is empty and
        no car arriving at it has priority (the outer lane's, unless clearly further back)."""
        w, m = self.w, self.m
        ve = w.traffic.veh
        sib = m.lanes[entry].sibling
        if sib < 0:
            return False
        if np.any(ve.active & (ve.lane == sib)):
            return True
        cand = np.where(ve.active & (ve.next_lane == sib))[0]
        rest = m.length[ve.lane[cand]] - ve.s[cand] - ve.length[cand] / 2
        margin = RB_SIBLING_M if m.lanes[sib].movement == Movement.RIGHT else -RB_SIBLING_M
        return bool(np.any(rest < to_entry_m + margin))

    def _must_yield(self, conn: int, dist_to_line: float, v: float) -> bool:
        """Yield when a conflicting connector is occupied, or claimed by someone with priority who arrives soon."""
        w, m = self.w, self.m
        mine = m.lanes[conn]
        if not mine.conflicts:
            return False
        ve = w.traffic.veh
        act = ve.active
        conf = np.array(mine.conflicts)
        if np.any(act & np.isin(ve.lane, conf)):
            return True
        prio = {0: 0, 2: 1, 1: 2}[int(mine.movement)]  # straight > right > left
        cand = act & np.isin(ve.next_lane, conf)
        if not cand.any():
            return False
        idx = np.where(cand)[0]
        rest = m.length[ve.lane[idx]] - ve.s[idx]
        eta = rest / np.maximum(ve.v[idx], 0.5)
        their = np.array([int(m.lanes[x].movement) for x in ve.next_lane[idx]])
        their_prio = np.select([their == 0, their == 2], [0, 1], 2)
        grp = m.signal_group[ve.next_lane[idx]]
        green = (grp < 0) | (w.lights[np.maximum(grp, 0)] == Light.GREEN)
        my_eta = max(dist_to_line, 0.0) / max(v, 0.5)
        threat = green & (eta < YIELD_HORIZON_S) & ((their_prio < prio) | ((their_prio == prio) & (eta < my_eta)))
        if not threat.any():
            self._held_since.pop(conn, None)
            return False
        # the cars with priority stand still at their line (held by pedestrians, say): after a while
        # go, as a driver waiting to turn does; once we claim the box they yield to us
        if np.all(ve.v[idx[threat]] < HELD_MPS) and v < HELD_MPS:
            since = self._held_since.setdefault(conn, w.t)
            return w.t - since < HELD_WAIT_S
        self._held_since.pop(conn, None)
        return True
