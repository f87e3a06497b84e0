"""The privileged expert: the stand-in for the human demonstrator.

It reads the world's ground truth (HD map, every actor, the lights) through the handle the env
puts in its reset info under ``privileged_world``; no other driver may use that handle. It drives
in phases: leave the parking spot (Reeds-Shepp manoeuvre), follow the lane-level route, search
the target lot for a free spot it can see, stop beside it and reverse (or drive) in.
"""
from __future__ import annotations

from enum import Enum
from typing import Any

import numpy as np

from dualdrive.agents.base import FORWARD, PLAN_POSES, REVERSE, Agent, Plan
from dualdrive.agents.expert.driving import RouteDriver, gather_obstacles
from dualdrive.planning.manoeuvre import ManoeuvreTracker, Segment, path_is_free, plan_leave, plan_path
from dualdrive.world.map import LaneKind
from dualdrive.world.world import EGO_LENGTH_M, EGO_WIDTH_M, World

SPOT_SENSE_RANGE_M = 15.0  # the expert only knows a spot is free once it is this close
SPOT_FREE_RADIUS_M = 1.6  # no parked car centre this close to a spot's centre
PRE_POSE_OFFSETS_M = (6.0, 7.5, 9.0, 4.5, 10.5)
LEAVE_OFFSETS_M = (6.0, 8.0, 10.0, 12.0, 14.0, 16.0)
LEAVE_STRAIGHT_M = (0.0, 1.5, 3.0, 4.5, 6.0)  # first drive straight out of the spot this far
# the neighbours' corners pass close while swinging out of a spot, where full-lock steering lags
# the plan most: keep more room than when parking
LEAVE_CLEARANCE_M = (0.35, 0.2)
LEAVE_EXIT_ROAD_M = (3.0, 6.0, 9.0, 12.0)  # goals on the road out of the lot, for a spot near the aisle's end
OBSTACLE_RADIUS_M = 120.0


class Phase(Enum):
    LEAVE = "leave_spot"
    DRIVE = "drive"
    APPROACH = "approach_spot"
    PARK = "park"
    DONE = "done"


class ExpertAgent(Agent):
    name = "expert"
    privileged = True

    def reset(self, info: dict[str, Any]) -> None:
        w = info.get("privileged_world")
        if not isinstance(w, World):
            raise ValueError("the expert needs the privileged world handle (info['privileged_world']); "
                             "it only drives dualdrive scenarios")
        self.w = w
        self.m = w.map
        self.tracker: ManoeuvreTracker | None = None
        self.goal_spot = -1
        self.rejected: set[int] = set()
        self.driver = RouteDriver(w, w.layout.route_lanes)
        self.phase = Phase.DRIVE
        if w.layout.start_spot >= 0:
            self.phase = Phase.LEAVE
            self.tracker = self._leave_manoeuvre()

    @property
    def debug(self) -> dict:
        return {"phase": self.phase.value, "goal_spot": self.goal_spot}

    def act(self, observation: dict[str, np.ndarray]) -> Plan:
        w = self.w
        if self.phase == Phase.LEAVE:
            poses, gear = self.tracker.plan(w.ego_xy, w.ego_heading, w.ego_speed)
            if not self.tracker.done:
                return Plan(poses, gear)
            self.phase = Phase.DRIVE
        if self.phase == Phase.PARK:
            poses, gear = self.tracker.plan(w.ego_xy, w.ego_heading, w.ego_speed)
            if self.tracker.done:
                self.phase = Phase.DONE
            return Plan(poses, gear)
        if self.phase == Phase.DONE:
            return Plan(np.zeros((PLAN_POSES, 3)), FORWARD)
        obstacles = gather_obstacles(w, w.ego_xy, OBSTACLE_RADIUS_M)
        if self.phase == Phase.DRIVE:
            self._search()
        if self.phase == Phase.APPROACH and self.driver.finished:
            self._start_parking()
            return self.act(observation)
        self._extend_search_loop()
        self.driver.maybe_change_lane(obstacles)
        return Plan(self.driver.plan(obstacles), FORWARD)

    # -- leaving -------------------------------------------------------------------------------
    def _leave_manoeuvre(self) -> ManoeuvreTracker:
        w, m = self.w, self.m
        spot = m.spots[w.layout.start_spot]
        start = (*w.ego_xy, w.ego_heading)
        lot_area = _grow(m.lots[spot.lot].polygon_xy, 1.0)
        # goals along the aisle ahead, then (a spot near the aisle's end) on the road out of the lot
        goals = []
        for d in LEAVE_OFFSETS_M:
            s = min(spot.aisle_s_m + d, m.length[spot.aisle_lane] - 0.5)
            goals.append((spot.aisle_lane, s, lot_area))
        for nxt in m.lanes[spot.aisle_lane].successors:
            goals += [(nxt, s, None) for s in LEAVE_EXIT_ROAD_M if s < m.length[nxt]]
        for clearance in LEAVE_CLEARANCE_M:  # the roomiest path that exists
            best: list[Segment] | None = None
            best_len = np.inf
            for exit_m in LEAVE_STRAIGHT_M:
                for lane, s, area in goals:
                    xy, h = m.pose(np.array([lane]), np.array([s]))
                    segs = plan_leave(start, spot.heading_rad, (xy[0, 0], xy[0, 1], float(h[0])), exit_m)
                    length = sum(sg.s[-1] for sg in segs) + 3.0 * (len(segs) - 1)  # a gear change costs a few metres
                    if length < best_len and path_is_free(segs, self._static_boxes(), EGO_LENGTH_M, EGO_WIDTH_M,
                                                          area, clearance, exit_m):
                        best, best_len = segs, length
            if best is not None:
                return ManoeuvreTracker(best)
        # no free path: the shortest one; the monitor will report any contact
        xy, h = m.pose(np.array([spot.aisle_lane]), np.array([spot.aisle_s_m + LEAVE_OFFSETS_M[0]]))
        best = plan_leave(start, spot.heading_rad, (xy[0, 0], xy[0, 1], float(h[0])))
        return ManoeuvreTracker(best)

    # -- searching and parking -----------------------------------------------------------------
    def _static_boxes(self):
        st = self.w.statics
        return st.xy, st.heading_rad, st.length_m, st.width_m

    def _visible_free_spots(self, lane: int, s: float) -> list[int]:
        w, m = self.w, self.m
        lot = w.layout.target_lot
        st = w.statics.xy
        out = []
        for sid in m.lots[lot].spots:
            sp = m.spots[sid]
            if sid in self.rejected or sid == w.layout.start_spot or sp.aisle_lane != lane:
                continue
            if not (-1.0 <= sp.aisle_s_m - s <= SPOT_SENSE_RANGE_M):
                continue
            if len(st) and np.min(np.linalg.norm(st - sp.center_xy, axis=1)) < SPOT_FREE_RADIUS_M:
                continue
            out.append(sid)
        return sorted(out, key=lambda k: m.spots[k].aisle_s_m)

    def _search(self) -> None:
        w, m = self.w, self.m
        lot = w.layout.target_lot
        if lot is None or self.driver.i < w.layout.arrival_index:
            return
        lane, s, _ = self.driver.lane_s()
        if lane not in m.lots[lot].aisle_lanes:
            return
        v = max(w.ego_speed, 0.0)
        for sid in self._visible_free_spots(lane, s):
            sp = m.spots[sid]
            for d in PRE_POSE_OFFSETS_M:
                s_pre = sp.aisle_s_m + d
                if s_pre > m.length[lane] - 0.5 or s_pre - s < v * v / 2.0 + 1.0:
                    continue
                xy, h = m.pose(np.array([lane]), np.array([s_pre]))
                segs = self._park_path((xy[0, 0], xy[0, 1], float(h[0])), sid)
                if segs is not None:
                    self.goal_spot = sid
                    self.driver = RouteDriver(w, [lane], final_stop_s=s_pre)
                    self.phase = Phase.APPROACH
                    return
            self.rejected.add(sid)

    def _park_path(self, start: tuple[float, float, float], sid: int) -> list[Segment] | None:
        sp = self.m.spots[sid]
        lot_poly = _grow(self.m.lots[sp.lot].polygon_xy, 0.5)
        for heading, gear in ((sp.heading_rad + np.pi, REVERSE), (sp.heading_rad, FORWARD)):
            segs = plan_path(start, (sp.center_xy[0], sp.center_xy[1], heading), gear)
            if len(segs) <= 4 and path_is_free(segs, self._static_boxes(), EGO_LENGTH_M, EGO_WIDTH_M, lot_poly):
                return segs
        return None

    def _start_parking(self) -> None:
        w = self.w
        segs = self._park_path((*w.ego_xy, w.ego_heading), self.goal_spot)
        if segs is None:  # the stop was a little off: take the unchecked path rather than give up
            sp = self.m.spots[self.goal_spot]
            segs = plan_path((*w.ego_xy, w.ego_heading), (sp.center_xy[0], sp.center_xy[1], sp.heading_rad + np.pi),
                             REVERSE)
        self.tracker = ManoeuvreTracker(segs)
        self.phase = Phase.PARK

    def _extend_search_loop(self) -> None:
        """Still searching at the end of the route: drive another loop of the lot."""
        w, m, dr = self.w, self.m, self.driver
        if self.phase != Phase.DRIVE or w.layout.target_lot is None or dr.i < len(dr.route) - 1:
            return
        last = dr.route[-1]
        if m.kind[last] != LaneKind.AISLE:
            return
        aisles = m.lots[w.layout.target_lot].aisle_lanes
        other = [a for a in aisles if a != last] or aisles
        loop = m.route(last, [other[0]])[1:]
        loop += m.route(loop[-1] if loop else last, [last])[1:] if len(aisles) > 1 else []
        if loop:
            dr.route += loop
            self.rejected.clear()


def _grow(poly: np.ndarray, margin: float) -> np.ndarray:
    c = poly.mean(axis=0)
    d = poly - c
    return c + d * (1 + margin / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6))
