"""Ground-truth bookkeeping of one episode: collisions, red lights, leaving the road, driving the
wrong way, route progress and parking. The world fills it every tick; the benchmark reads it."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dualdrive.world.geometry import box_corners, boxes_overlap, wrap_angle
from dualdrive.world.map import LaneKind, LaneMap
from dualdrive.world.signals import Light

PARK_POSITION_TOL_M = 0.5
PARK_HEADING_TOL_DEG = 10.0
PARKED_SPEED_MPS = 0.05
ROUTE_MATCH_M = 4.5  # the ego counts as on its route within about one lane of it
OFFROAD_MARGIN_M = 1.0  # the ego's centre may stray this far beyond a lane edge
COLLISION_RANGE_M = 15.0


@dataclass
class Infraction:
    kind: str  # collision_vehicle, collision_pedestrian, collision_static, red_light, off_road, wrong_lane
    t_s: float
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"type": self.kind, "t_s": round(self.t_s, 2), **self.detail}


@dataclass
class _Crossing:
    approach_lane: int
    t_s: float
    lights: np.ndarray


def inside_polygon(xy: np.ndarray, poly: np.ndarray) -> bool:
    """Point in convex counter-clockwise polygon."""
    d = np.roll(poly, -1, axis=0) - poly
    rel = xy - poly
    return bool(np.all(d[:, 0] * rel[:, 1] - d[:, 1] * rel[:, 0] >= 0))


class Monitor:
    def __init__(self, lane_map: LaneMap) -> None:
        self.map = lane_map
        self.infractions: list[Infraction] = []
        self._contacts: set[tuple[str, int]] = set()
        self._crossing: _Crossing | None = None
        self._last_road_lane = -1
        self._offroad = False
        self._wrong = False

    @property
    def off_road(self) -> bool:
        """The ego is off the drivable area now."""
        return self._offroad

    @property
    def wrong_lane(self) -> bool:
        """The ego is driving against the traffic of the lane it is in now."""
        return self._wrong

    # -- collisions ----------------------------------------------------------------------------
    def check_collisions(self, t_s: float, ego_box: np.ndarray, ego_xy: np.ndarray, actors: dict) -> None:
        now: set[tuple[str, int]] = set()
        for kind, (xy, h, length, width, ids) in actors.items():
            if len(xy) == 0:
                continue
            near = np.linalg.norm(xy - ego_xy, axis=1) < COLLISION_RANGE_M
            if not near.any():
                continue
            boxes = box_corners(xy[near], h[near], length[near], width[near])
            hit = boxes_overlap(ego_box, boxes)
            for obj in ids[near][hit]:
                key = (kind, int(obj))
                now.add(key)
                if key not in self._contacts:
                    self.infractions.append(Infraction(f"collision_{kind}", t_s, {
                        "id": int(obj), "xy": [round(float(v), 1) for v in ego_xy]}))
        self._contacts = now

    # -- traffic rules -------------------------------------------------------------------------
    def check_rules(self, t_s: float, ego_xy: np.ndarray, ego_heading: float, lights: np.ndarray,
                    lane_here: int) -> None:
        m = self.map
        in_box = any(inside_polygon(ego_xy, poly) for poly in m.intersections)
        if lane_here >= 0 and m.kind[lane_here] in (LaneKind.ROAD, LaneKind.RAMP):
            self._last_road_lane = lane_here
        if in_box and self._crossing is None and self._last_road_lane >= 0:
            self._crossing = _Crossing(self._last_road_lane, t_s, lights.copy())
        if not in_box and self._crossing is not None and lane_here >= 0 and m.kind[lane_here] == LaneKind.ROAD:
            self._resolve_crossing(self._crossing, lane_here)
            self._crossing = None
        in_lot = any(inside_polygon(ego_xy, lot.polygon_xy) for lot in m.lots.values())
        on_road = lane_here >= 0 or in_box or in_lot or self._near_any_lane(ego_xy)
        if not on_road and not self._offroad:
            self.infractions.append(Infraction("off_road", t_s, {"xy": [round(float(v), 1) for v in ego_xy]}))
        self._offroad = not on_road
        wrong = not in_box and not in_lot and lane_here < 0 and self._against_traffic(ego_xy, ego_heading)
        if wrong and not self._wrong:
            self.infractions.append(Infraction("wrong_lane", t_s, {"xy": [round(float(v), 1) for v in ego_xy]}))
        self._wrong = wrong

    def _resolve_crossing(self, c: _Crossing, exit_lane: int) -> None:
        """Which connector did the ego take? Judge its light at the moment the ego entered the box."""
        m = self.map
        for conn in m.lanes[c.approach_lane].successors:
            ln = m.lanes[conn]
            if exit_lane in ln.successors or any(exit_lane in (m.lanes[x].left, m.lanes[x].right) for x in ln.successors):
                if ln.signal_group >= 0 and c.lights[ln.signal_group] == Light.RED:
                    self.infractions.append(Infraction("red_light", c.t_s, {"lane": conn}))
                return

    def _near_any_lane(self, xy: np.ndarray) -> bool:
        """Within half a lane width (plus a margin) of the nearest lane point."""
        m = self.map
        d, _ = m._tree.query(xy)
        # every point as near as the nearest (lanes meet end to start): the lowest index decides, as argmin did
        idx = m.points_near(xy, float(d) + 1e-9)
        if len(idx) == 0:
            return False
        d2 = ((m.pts[idx] - xy) ** 2).sum(1)
        g = int(idx[int(np.argmin(d2))])
        return bool(np.sqrt(((m.pts[g] - xy) ** 2).sum()) < m.width[m.pt_lane[g]] / 2 + OFFROAD_MARGIN_M)

    def _against_traffic(self, xy: np.ndarray, heading: float) -> bool:
        m = self.map
        idx = m.points_near(xy, float(m.width.max()) / 2)
        d2 = ((m.pts[idx] - xy) ** 2).sum(1)
        close = idx[d2 < (m.width[m.pt_lane[idx]] / 2) ** 2]
        if len(close) == 0:
            return False
        dh = np.abs(wrap_angle(m.heads[close] - heading))
        return bool(np.all(dh > 2.3))


def parking_errors(ego_xy: np.ndarray, ego_heading: float, spot_xy: np.ndarray, spot_heading: float) -> tuple[float, float]:
    """Position error (m) and heading error (deg, either orientation: nose-in or reversed in)."""
    pos = float(np.linalg.norm(ego_xy - spot_xy))
    dh = abs(float(wrap_angle(ego_heading - spot_heading)))
    dh = min(dh, np.pi - dh)
    return pos, float(np.degrees(dh))


def is_parked(pos_err_m: float, heading_err_deg: float, speed_mps: float) -> bool:
    return pos_err_m <= PARK_POSITION_TOL_M and heading_err_deg <= PARK_HEADING_TOL_DEG and abs(speed_mps) < PARKED_SPEED_MPS
