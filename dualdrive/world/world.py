"""The world: map, traffic, lights, the ego vehicle and the monitor, advanced together at a fixed rate.

``World(config, seed)`` is a pure function of its arguments: every random draw comes from one
``numpy.random.Generator`` seeded with ``seed`` (PCG64, identical on every platform), and the
step order is fixed, so the same seed gives the same episode bit for bit.

The ego is a highway-env kinematic bicycle (``highway_env.vehicle.kinematics.Vehicle``) driven by
an action ``[acceleration_mps2, steering_rad, gear]``; it is not attached to the highway-env road
so that our vectorised traffic kernel, not highway-env's per-vehicle loop, moves everyone else.
"""
from __future__ import annotations

import numpy as np
from highway_env.vehicle.kinematics import Vehicle

from dualdrive.world.geometry import box_corners, wrap_angle, world_to_ego
from dualdrive.world.layouts import Layout, make_layout
from dualdrive.world.map import LaneKind
from dualdrive.world.monitor import Monitor, is_parked, parking_errors
from dualdrive.world.population import PendingEvent, populate
from dualdrive.world.route import Command, RoutePolyline, build_route
from dualdrive.world.scenarios import ScenarioConfig, check_seed
from dualdrive.world.signals import ALL_RED_S, AMBER_S, GREEN_S, LEFT_ARROW_S, SignalController
from dualdrive.world.traffic import STATIC_KINDS, Kind, Traffic

EGO_LENGTH_M, EGO_WIDTH_M = Vehicle.LENGTH, Vehicle.WIDTH
MAX_STEER_RAD = 0.7  # ~6.4 m turning radius with highway-env's bicycle model
MAX_STEER_RATE_RPS = 1.5  # a brisk steering-wheel rate
ACCEL_LIMITS_MPS2 = (-8.0, 4.0)
MAX_REVERSE_MPS = 5.0
ROUTE_TARGETS = 10  # target points given to the agent
ROUTE_TARGET_SPACING_M = 8.0
EGO_LANE_MATCH_M = 2.7  # the ego occupies every lane its body overlaps (centre line this close), for traffic
EGO_CORNER_MATCH_M = 1.5  # ... and every lane a corner of it pokes into by ~0.3 m
BLOCKED_S = 90.0  # an ego that has not moved for this long is reported as blocked
ROUTE_MATCH_M = 4.5  # the ego is on the route when this close to its polyline
PROGRESS_WINDOW_M = 40.0  # route progress is searched this far ahead of the last match (plus odometry)
ROUTE_MATCH_BESIDE_M = 8.5  # or this close and heading along it (up to two lanes beside it)
PED_SIZE_M = 0.6
AISLE_EXIT_M = 4.0  # a released aisle blocker this close to its aisle's end has left the lot
CUT_IN_HEADWAY_S = (0.4, 0.8)  # the time gap (at the ego's speed) a cut-in leaves in front of the ego
CUT_IN_MIN_GAP_M = 2.0
CUT_IN_SPEED_FACTOR = 0.85
CUT_IN_CLEAR_AHEAD_M = 80.0  # the cut-in's own lane must be free of blockers and queues this far ahead
CUT_IN_QUEUE_MPS = 2.0


class World:
    def __init__(self, config: ScenarioConfig, seed: int) -> None:
        self.config = config
        self.seed = check_seed(seed)
        self.dt = float(config.dt_s)
        self.rng = np.random.default_rng(seed)
        self.layout: Layout = make_layout(config, self.rng)
        self.map = self.layout.map
        pop = populate(config, self.layout, self.rng)
        self.traffic = Traffic(self.map, pop.vehicles, pop.pedestrians, self.rng)
        self.statics = pop.statics
        self.pending: list[PendingEvent] = pop.pending
        self.event_log = pop.event_log
        cycle = 2 * (LEFT_ARROW_S + GREEN_S + AMBER_S + ALL_RED_S)
        self.signals = SignalController(self.map.n_signal_groups, self.map.signal_plans,
                                        self.rng.uniform(0, cycle, len(self.map.signal_plans)))
        self.route: RoutePolyline = build_route(self.map, self.layout.route_lanes, self.layout.arrival_index,
                                                self._start_s())
        self.ego = Vehicle(None, np.array(self.layout.ego_xy, float), self.layout.ego_heading_rad,
                           self.layout.ego_speed_mps)
        self.steer = 0.0
        self.gear = 1
        self.accel = 0.0
        self.yaw_rate = 0.0
        self.gear_changes = 0
        self.t = 0.0
        self.steps = 0
        self.progress_m = 0.0
        self._unmatched_m = 0.0  # distance driven since the ego was last matched to its route
        self.left_spot = self.layout.start_spot < 0
        self.parked_spot = -1
        self.still_s = 0.0
        self.monitor = Monitor(self.map)
        self.lights = self.signals.states(0.0)
        self.free_target_spots = self._free_spots()
        self.lane_here = -1
        self._road_pts = np.isin(self.map.kind[self.map.pt_lane], (LaneKind.ROAD, LaneKind.RAMP))
        self._update_progress()

    # -- public API ----------------------------------------------------------------------------
    @property
    def ego_xy(self) -> np.ndarray:
        return np.asarray(self.ego.position, float)

    @property
    def ego_heading(self) -> float:
        return float(self.ego.heading)

    @property
    def ego_speed(self) -> float:
        return float(self.ego.speed)

    def step(self, action: np.ndarray) -> None:
        accel, steer, gear = _check_action(action)
        self.lights = self.signals.states(self.t)
        rows, claims = self._ego_rows()
        self.traffic.ego_xy = self.ego_xy
        self.traffic.ego_pose = (self.ego_xy, self.ego_heading, EGO_LENGTH_M, EGO_WIDTH_M)
        self.traffic.ego_claims = claims
        self.traffic.step(self.dt, self.t, self.lights, rows)
        self._step_ego(accel, steer, gear)
        self.t = round(self.t + self.dt, 9)
        self.steps += 1
        self.lights = self.signals.states(self.t)
        self._trigger_events()
        self._check()

    @property
    def terminated(self) -> bool:
        if self.config.family in ("parking", "p2p"):
            return self.parked_spot >= 0
        return self.arrived

    @property
    def truncated(self) -> bool:
        return not self.terminated and (self.t >= self.config.time_limit_s - 1e-9 or self.blocked)

    @property
    def arrived(self) -> bool:
        return self.progress_m >= self.route.arrival_m - 2.0

    @property
    def blocked(self) -> bool:
        return self.still_s >= BLOCKED_S

    def observation(self) -> dict[str, np.ndarray]:
        """What a mapless driving agent may know: odometry and the sparse navigation route (ego frame)."""
        targets = self.progress_m + ROUTE_TARGET_SPACING_M * np.arange(1, ROUTE_TARGETS + 1)
        idx = np.minimum(np.searchsorted(self.route.progress_m, targets), len(self.route.xy) - 1)
        here = min(int(np.searchsorted(self.route.progress_m, self.progress_m)), len(self.route.xy) - 1)
        cmd, dist = self.route.commands_ahead(self.progress_m)
        if not self.left_spot:
            cmd, dist = int(Command.LEAVE_SPOT), 0.0
        return {
            "speed_mps": np.array([self.ego_speed], np.float32),
            "accel_mps2": np.array([self.accel], np.float32),
            "yaw_rate_rps": np.array([self.yaw_rate], np.float32),
            "steer_rad": np.array([self.steer], np.float32),
            "gear": np.array([self.gear], np.int8),
            "route_xy_ego_m": world_to_ego(self.route.xy[idx], self.ego_xy, self.ego_heading).astype(np.float32),
            "route_command": self.route.command[idx].astype(np.int8),
            "command": np.array([cmd], np.int8),
            "command_distance_m": np.array([dist], np.float32),
            # speed limits along the route, as a navigation map (SD map) provides them
            "speed_limit_mps": np.array([self.map.speed_limit[self.route.lane[here]]], np.float32),
            "route_speed_limit_mps": self.map.speed_limit[self.route.lane[idx]].astype(np.float32),
        }

    def summary(self) -> dict:
        inf = [i.to_dict() for i in self.monitor.infractions]
        collisions = sum(i["type"].startswith("collision") for i in inf)
        red = sum(i["type"] == "red_light" for i in inf)
        rc = 100.0 * min(1.0, self.progress_m / max(self.route.arrival_m, 1e-6))
        out = {
            "family": self.config.family, "seed": self.seed, "success": False,
            "route_completion": round(rc, 2), "collisions": collisions, "infractions": inf,
            "duration_s": round(self.t, 2), "steps": self.steps, "timeout": self.truncated,
            "blocked": self.blocked, "gear_changes": self.gear_changes, "events": self.event_log,
        }
        if self.config.family in ("parking", "p2p"):
            pos, head = self._parking_error()
            out.update(left_spot=self.left_spot, parked=self.parked_spot >= 0, parking_position_error_m=round(pos, 3),
                       parking_heading_error_deg=round(head, 2))
            if self.config.family == "parking":
                out["route_completion"] = 100.0 if self.parked_spot >= 0 else min(rc, 99.0)
            out["success"] = bool(self.left_spot and self.parked_spot >= 0 and collisions == 0 and red == 0
                                  and (self.config.family == "parking" or self.arrived))
        else:
            out["success"] = bool(self.arrived and collisions == 0 and red == 0)
        return out

    def actors(self) -> dict:
        """Ground-truth boxes of everything the ego can hit: (xy, heading, length, width, ids) per kind."""
        ve = self.traffic.veh
        xy, h = self.traffic.poses()
        vis = ve.active & (ve.kind != Kind.WORKZONE)  # the work zone is marked by its cones
        p = self.traffic.ped
        on = p.state == 1
        on |= (p.state == 0) & (p.crosswalk >= 0)  # waiting at the kerb still takes space
        st = self.statics
        return {
            "vehicle": (xy[vis], h[vis], ve.length[vis], ve.width[vis], np.where(vis)[0]),
            "pedestrian": (p.xy[on], np.arctan2(p.dir[on, 1], p.dir[on, 0]), np.full(on.sum(), PED_SIZE_M),
                           np.full(on.sum(), PED_SIZE_M), np.where(on)[0]),
            "static": (st.xy, st.heading_rad, st.length_m, st.width_m, np.arange(len(st.xy))),
        }

    def ego_box(self) -> np.ndarray:
        return box_corners(self.ego_xy, self.ego_heading, EGO_LENGTH_M, EGO_WIDTH_M)[0]

    # -- internals -----------------------------------------------------------------------------
    def _start_s(self) -> float:
        lane = self.layout.route_lanes[0]
        if self.layout.start_spot >= 0:
            return float(self.map.spots[self.layout.start_spot].aisle_s_m)
        return float(self.map.hw_lanes[lane].local_coordinates(self.layout.ego_xy)[0])

    def _free_spots(self) -> list[int]:
        lot = self.layout.target_lot
        if lot is None:
            return []
        return [s for s in self.map.lots[lot].spots
                if s not in self.layout.occupied_spots and s != self.layout.start_spot]

    def _step_ego(self, accel: float, steer: float, gear: int) -> None:
        if gear != self.gear:
            self.gear_changes += 1
            self.gear = gear
        max_dsteer = MAX_STEER_RATE_RPS * self.dt
        self.steer = float(np.clip(np.clip(steer, -MAX_STEER_RAD, MAX_STEER_RAD), self.steer - max_dsteer,
                                   self.steer + max_dsteer))
        v = self.ego_speed
        a = float(np.clip(accel, *ACCEL_LIMITS_MPS2)) * gear
        if v * gear < -1e-6:  # rolling against the selected gear: brake to a stop first
            a = -np.sign(v) * min(abs(v) / self.dt, -ACCEL_LIMITS_MPS2[0])
        h0 = self.ego_heading
        self.ego.action = {"steering": self.steer, "acceleration": a}
        self.ego.step(self.dt)
        v1 = self.ego_speed
        if v1 * gear < 0 and (v * gear >= 0 or v * v1 < 0):  # braking does not reverse the car
            self.ego.speed = 0.0
        self.ego.speed = float(np.clip(self.ego.speed, -MAX_REVERSE_MPS, Vehicle.MAX_SPEED))
        self.accel = (self.ego_speed - v) / self.dt
        self.yaw_rate = float(wrap_angle(self.ego_heading - h0)) / self.dt

    def _ego_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The ego as seen by the traffic kernel: one (lane, s, speed, length) row per lane it occupies,
        and the connectors it is about to enter (NPCs turning across them yield)."""
        m = self.map
        xy, h, v = self.ego_xy, self.ego_heading, self.ego_speed
        reach = np.hypot(EGO_LENGTH_M, EGO_WIDTH_M) / 2 + EGO_CORNER_MATCH_M
        pts = m.points_near(xy, max(EGO_LANE_MATCH_M, reach))  # every point the tests below can accept
        d2 = ((m.pts[pts] - xy) ** 2).sum(1)
        along = np.abs(wrap_angle(m.heads[pts] - h)) < 0.8
        near = pts[(d2 < EGO_LANE_MATCH_M**2) & along]
        # a corner poking into the next lane (a slow lane change, a car angled in a queue) already
        # claims it: drivers there brake for it, not only for a car whose centre has crossed the line
        c = np.cos(h), np.sin(h)
        # (only road lanes: at a stop line the nose over a connector's first metre is not in the box)
        # corners lie within half the diagonal of the centre: test only the points that close to it
        cand = pts[(d2 < reach**2) & along & self._road_pts[pts]]
        for end, side in ((1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)):
            corner = xy + end * EGO_LENGTH_M / 2 * np.array(c) + side * EGO_WIDTH_M / 2 * np.array([-c[1], c[0]])
            near = np.union1d(near, cand[((m.pts[cand] - corner) ** 2).sum(1) < EGO_CORNER_MATCH_M**2])
        rows, claims = [], []
        if len(near):
            lanes = np.unique(m.pt_lane[near])
            for lane in lanes:
                lane_pts = m.pts[m.offset[lane]: m.offset[lane] + m.count[lane]]
                s = int(np.argmin(((lane_pts - xy) ** 2).sum(1))) * m.step[lane]
                rows.append((lane, s, abs(v), EGO_LENGTH_M))
                rest = m.length[lane] - s
                # (on a roundabout's entry or ring too: cars at the next entry wait for the ego)
                entering = m.kind[lane] in (LaneKind.ROAD, LaneKind.RAMP) or m.lanes[lane].roundabout >= 0
                if entering and abs(v) > 1.0 and rest < max(8.0, abs(v) * 4.5):
                    for c in m.lanes[lane].successors:
                        g_c = m.signal_group[c]
                        if m.kind[c] == LaneKind.CONNECTOR and (g_c < 0 or self.lights[g_c] != 0):
                            claims.append(c)
        return np.array(rows, float).reshape(-1, 4), np.array(claims, np.int64)

    def _trigger_events(self) -> None:
        for ev in self.pending:
            if ev.done and ev.name == "blocked_aisle":
                self._drive_out_of_lot(ev.vehicle)
            if ev.done or self.t < ev.at_time_s:
                continue
            if ev.name == "emergency_vehicle":
                ev.done = self._spawn_behind(ev.vehicle)
            elif ev.name == "cut_in":
                ev.done = self._spawn_cut_in(ev.vehicle)
            elif ev.name == "blocked_aisle":
                ev.done = self._release_blocker(ev)
            if not ev.done:
                ev.at_time_s = self.t + 1.0  # conditions not met yet: try again in a second
            else:
                self.event_log.append({"event": ev.name, "t_s": round(self.t, 2), "vehicle": ev.vehicle})

    def _ego_road_lane(self) -> tuple[int, float]:
        lane, s, lat = self.map.locate(self.ego_xy, self.ego_heading, max_dist_m=2.0)
        if lane < 0 or self.map.kind[lane] not in (LaneKind.ROAD, LaneKind.RAMP):
            return -1, 0.0
        return lane, s

    def _spawn_behind(self, i: int) -> bool:
        lane, s = self._ego_road_lane()
        if lane < 0 or s < 80.0 or self.ego_speed < 3.0:
            return False
        ve = self.traffic.veh
        s_ev = s - 75.0
        if np.any(ve.active & (ve.lane == lane) & (np.abs(ve.s - s_ev) < 12.0)):
            return False
        limit = self.map.speed_limit[lane]
        ve.lane[i], ve.s[i], ve.lat[i], ve.lc_from[i] = lane, s_ev, 0.0, -1
        ve.v[i], ve.v0[i], ve.T[i], ve.a_max[i], ve.b_comf[i], ve.s0[i], ve.polite[i] = (
            limit * 1.1, limit * 1.4, 0.8, 2.5, 3.0, 2.0, 0.0)
        ve.length[i], ve.width[i], ve.kind[i], ve.active[i] = 5.5, 2.1, int(Kind.EMERGENCY), True
        ve.next_lane[i] = self.traffic._pick_next(lane)
        return True

    def _spawn_cut_in(self, i: int) -> bool:
        lane, s = self._ego_road_lane()
        if lane < 0 or self.ego_speed < 5.0:
            return False
        m, ve = self.map, self.traffic.veh
        for nb in (int(m.left[lane]), int(m.right[lane])):
            if nb < 0 or s + 30.0 > m.length[nb]:
                continue
            # aggressive but physically fair: it cuts in with a short time gap that a driver braking
            # firmly can still handle (a cut-in a bumper's length ahead at speed is a crash scenario)
            headway = float(self.rng.uniform(*CUT_IN_HEADWAY_S))
            s_c = s + EGO_LENGTH_M + CUT_IN_MIN_GAP_M + headway * self.ego_speed
            on_nb = ve.active & ((ve.lane == nb) | (ve.lc_from == nb))
            if np.any(on_nb & (np.abs(ve.s - s_c) < 15.0)):
                continue
            # nor out of a lane that is closed or queued ahead: it could not get going again
            ahead = on_nb & (ve.s > s_c) & (ve.s - s_c < CUT_IN_CLEAR_AHEAD_M)
            if np.any(ahead & (np.isin(ve.kind, STATIC_KINDS) | (ve.v < CUT_IN_QUEUE_MPS))):
                continue
            ve.lane[i], ve.s[i], ve.lat[i], ve.lc_from[i] = nb, s_c, 0.0, -1
            ve.v[i], ve.v0[i], ve.T[i], ve.a_max[i], ve.b_comf[i], ve.s0[i], ve.polite[i] = (
                self.ego_speed * CUT_IN_SPEED_FACTOR, self.ego_speed * CUT_IN_SPEED_FACTOR, 1.0, 1.5, 2.5, 2.0, 0.0)
            ve.length[i], ve.width[i], ve.kind[i], ve.active[i] = 4.6, 1.9, int(Kind.CUTIN), True
            ve.forced_lane[i] = lane
            ve.next_lane[i] = self.traffic._pick_next(nb)
            return True
        return False

    def _drive_out_of_lot(self, i: int) -> None:
        """The released aisle blocker leaves the lot at the end of its aisle (NPCs do not drive the
        lot's loop, so it would otherwise stand there and block the aisle again)."""
        ve = self.traffic.veh
        if ve.active[i] and ve.s[i] > self.map.length[ve.lane[i]] - AISLE_EXIT_M:
            ve.active[i] = False

    def _release_blocker(self, ev: PendingEvent) -> bool:
        ve = self.traffic.veh
        xy, _ = self.map.pose(ve.lane[ev.vehicle:ev.vehicle + 1], ve.s[ev.vehicle:ev.vehicle + 1])
        if np.linalg.norm(xy[0] - self.ego_xy) < 30.0:
            ev.data["waited_s"] = ev.data.get("waited_s", 0.0) + 1.0
        if ev.data.get("waited_s", 0.0) >= ev.data["wait_s"]:
            ve.release_t[ev.vehicle] = self.t
            # it drives off down the aisle at the lot's speed (with v0 = 0 it would stop again)
            ve.v0[ev.vehicle] = float(self.map.speed_limit[ve.lane[ev.vehicle]])
            return True
        return False

    def _check(self) -> None:
        self.monitor.check_collisions(self.t, self.ego_box(), self.ego_xy, self.actors())
        lane, _, _ = self.map.locate(self.ego_xy, self.ego_heading, max_dist_m=2.5)
        self.lane_here = lane
        self.monitor.check_rules(self.t, self.ego_xy, self.ego_heading, self.lights, lane)
        self._update_progress()
        if self.layout.start_spot >= 0 and not self.left_spot:
            spot = self.map.spots[self.layout.start_spot]
            self.left_spot = float(np.linalg.norm(self.ego_xy - spot.center_xy)) > spot.length_m / 2 + 1.0
        self.still_s = self.still_s + self.dt if abs(self.ego_speed) < 0.1 else 0.0
        if self.parked_spot < 0 and self.left_spot:
            for sid in self.free_target_spots:
                sp = self.map.spots[sid]
                pos, head = parking_errors(self.ego_xy, self.ego_heading, sp.center_xy, sp.heading_rad)
                if is_parked(pos, head, self.ego_speed):
                    self.parked_spot = sid
                    break

    def _update_progress(self) -> None:
        r = self.route
        self._unmatched_m += abs(self.ego_speed) * self.dt
        # look ahead as far as the ego has driven since its last match: after a stretch beside the
        # route (a parallel turn lane through an intersection) progress picks up where the ego is
        ahead = PROGRESS_WINDOW_M + self._unmatched_m
        win = (r.progress_m >= self.progress_m - 10.0) & (r.progress_m <= self.progress_m + ahead)
        idx = np.where(win)[0]
        if len(idx) == 0:
            return
        d = np.linalg.norm(r.xy[idx] - self.ego_xy, axis=1)
        # a lane change may be made anywhere along a section, not where the route polyline jumps:
        # a car up to two lanes beside the route, heading along it, is still following it
        head = np.arctan2(np.gradient(r.xy[idx, 1]), np.gradient(r.xy[idx, 0])) if len(idx) > 1 else np.zeros(1)
        along = np.abs(wrap_angle(head - self.ego_heading)) < 0.5
        ok = (d < ROUTE_MATCH_M) | (along & (d < ROUTE_MATCH_BESIDE_M))
        if ok.any():
            k = int(np.argmin(np.where(ok, d, np.inf)))
            self.progress_m = max(self.progress_m, float(r.progress_m[idx[k]]))
            self._unmatched_m = 0.0

    def _parking_error(self) -> tuple[float, float]:
        """Errors to the spot parked in, else to the nearest free target spot."""
        cands = [self.parked_spot] if self.parked_spot >= 0 else self.free_target_spots
        best = (float("inf"), 180.0)
        for sid in cands:
            sp = self.map.spots[sid]
            e = parking_errors(self.ego_xy, self.ego_heading, sp.center_xy, sp.heading_rad)
            if e[0] < best[0]:
                best = e
        return best


def _check_action(action) -> tuple[float, float, int]:
    a = np.asarray(action, dtype=float).reshape(-1)
    if a.shape[0] not in (2, 3):
        raise ValueError(f"action must be [acceleration_mps2, steering_rad(, gear)], got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action contains NaN or inf: {a.tolist()}")
    gear = 1 if a.shape[0] == 2 or a[2] >= 0 else -1
    return float(a[0]), float(a[1]), gear
