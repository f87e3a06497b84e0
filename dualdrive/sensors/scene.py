"""What the sensors see: one frame of the world as 3-D boxes, ground markings and traffic lights.

The sensors never read a world's internals; they read a :class:`SensorScene`, built either from a
dualdrive :class:`~dualdrive.world.world.World` (:func:`scene_from_world`) or from any stock
highway-env environment (:func:`scene_from_highway_env`). World frame: x east, y north, z up,
metres; headings in radians from +x, counter-clockwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

CAR_HEIGHT_M = 1.5
TRUCK_HEIGHT_M = 3.2
PEDESTRIAN_HEIGHT_M = 1.75
CONE_HEIGHT_M = 0.8
WALL_HEIGHT_M = 1.2
LIGHT_POLE_M = 4.5  # height of a traffic light's head
MARKING_STEP_M = 1.0
SCENE_RANGE_M = 120.0  # everything beyond this from the ego is left out of the frame


class BoxClass(IntEnum):
    CAR = 0
    TRUCK = 1
    EMERGENCY = 2
    PEDESTRIAN = 3
    STATIC = 4  # parked or stalled car, wall
    CONE = 5


class LineStyle(IntEnum):
    DASHED = 0
    SOLID = 1
    KERB = 2  # the kerb stones along a street's edge (grey, wider)


KERB_OFFSET_M = 0.25  # beyond the edge line


@dataclass
class Boxes:
    """Oriented boxes standing on the ground (z from 0 to ``height_m``)."""

    xy: np.ndarray  # (N, 2) centre
    heading_rad: np.ndarray  # (N,)
    length_m: np.ndarray
    width_m: np.ndarray
    height_m: np.ndarray
    velocity_mps: np.ndarray  # (N, 2) world frame
    cls: np.ndarray  # (N,) BoxClass

    @classmethod
    def empty(cls) -> "Boxes":
        z = np.zeros(0)
        return cls(np.zeros((0, 2)), z, z, z, z, np.zeros((0, 2)), np.zeros(0, np.int64))

    @classmethod
    def concat(cls, parts: list["Boxes"]) -> "Boxes":
        parts = [p for p in parts if len(p.xy)]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("xy", "heading_rad", "length_m", "width_m", "height_m", "velocity_mps", "cls")))

    def __len__(self) -> int:
        return len(self.xy)

    def select(self, mask: np.ndarray) -> "Boxes":
        return Boxes(self.xy[mask], self.heading_rad[mask], self.length_m[mask], self.width_m[mask],
                     self.height_m[mask], self.velocity_mps[mask], self.cls[mask])


@dataclass
class SensorScene:
    ego_xy: np.ndarray
    ego_heading_rad: float
    ego_speed_mps: float
    ego_yaw_rate_rps: float
    ego_accel_mps2: float
    ego_gear: int
    ego_length_m: float
    ego_width_m: float
    boxes: Boxes
    markings: list[tuple[np.ndarray, int]] = field(default_factory=list)  # (polyline (n, 2), LineStyle)
    road: list[np.ndarray] = field(default_factory=list)  # drivable-surface polygons (n, 2)
    lights_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # heads of traffic lights
    lights_heading_rad: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the way the light faces
    lights_state: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # 0 red, 1 amber, 2 green
    spot_lines: list[np.ndarray] = field(default_factory=list)  # parking-spot outlines (5, 2) closed


def _near(xy: np.ndarray, centre: np.ndarray, r: float = SCENE_RANGE_M) -> np.ndarray:
    return np.linalg.norm(np.asarray(xy).reshape(-1, 2) - centre, axis=1) < r


def _lane_edges(lane, width: float, step: float = MARKING_STEP_M) -> tuple[np.ndarray, np.ndarray]:
    s = np.linspace(0.0, lane.length, max(2, int(np.ceil(lane.length / step)) + 1))
    left = np.array([lane.position(si, width / 2) for si in s])
    right = np.array([lane.position(si, -width / 2) for si in s])
    return left, right


# -- dualdrive worlds --------------------------------------------------------------------------
_STATIC_LAYERS: dict[int, tuple] = {}  # id(map) -> (markings, road, spot lines): the map never changes


def scene_from_world(world) -> SensorScene:
    """A frame of a dualdrive world (the sensors' only window on it)."""
    from dualdrive.world.traffic import Kind
    from dualdrive.world.world import EGO_LENGTH_M, EGO_WIDTH_M
    w, c = world, world.ego_xy
    acts = w.actors()
    xy, h, length, width, ids = acts["vehicle"]
    kind = w.traffic.veh.kind[ids]
    v = w.traffic.veh.v[ids]
    cls = np.select([kind == Kind.TRUCK, kind == Kind.EMERGENCY, kind == Kind.STALLED],
                    [BoxClass.TRUCK, BoxClass.EMERGENCY, BoxClass.STATIC], BoxClass.CAR)
    height = np.where(cls == BoxClass.TRUCK, TRUCK_HEIGHT_M, CAR_HEIGHT_M)
    vel = v[:, None] * np.column_stack([np.cos(h), np.sin(h)])
    veh = Boxes(xy, h, length, width, height, vel, cls.astype(np.int64)).select(_near(xy, c))
    pxy, ph, pl, pw, pids = acts["pedestrian"]
    # walking, and not standing still for the ego in its way
    ps = w.traffic.ped.speed[pids] * (w.traffic.ped.state[pids] == 1) * ~w.traffic.ped_halted[pids]
    ped = Boxes(pxy, ph, pl, pw, np.full(len(pxy), PEDESTRIAN_HEIGHT_M),
                ps[:, None] * np.column_stack([np.cos(ph), np.sin(ph)]), np.full(len(pxy), int(BoxClass.PEDESTRIAN)))
    sxy, sh, sl, sw, _ = acts["static"]
    cone = sl < 1.0
    st = Boxes(sxy, sh, sl, sw, np.where(cone, CONE_HEIGHT_M, CAR_HEIGHT_M), np.zeros((len(sxy), 2)),
               np.where(cone, int(BoxClass.CONE), int(BoxClass.STATIC)).astype(np.int64))
    boxes = Boxes.concat([veh, ped.select(_near(pxy, c)) if len(pxy) else ped, st.select(_near(sxy, c)) if len(sxy) else st])
    markings, road, spots = _world_static_layers(w.map)
    lxy, lh, ls = _world_lights(w)
    return SensorScene(c.copy(), w.ego_heading, w.ego_speed, w.yaw_rate, w.accel, w.gear, EGO_LENGTH_M, EGO_WIDTH_M,
                       boxes, markings, road, lxy, lh, ls, spots)


def _world_static_layers(m) -> tuple:
    key = id(m)
    if key not in _STATIC_LAYERS:
        from dualdrive.world.map import LaneKind
        markings, road = [], []
        for ln in m.lanes:
            hw = m.hw_lanes[ln.id]
            left, right = _lane_edges(hw, ln.width_m)
            road.append(np.concatenate([left, right[::-1]]))
            if ln.kind not in (LaneKind.ROAD, LaneKind.RAMP):
                continue  # no paint inside junctions, on the ring or in lots
            # each lane paints its right edge (dashed towards a neighbour) and, with no lane to its
            # left, its left edge (the centre line or the median)
            markings.append((right, int(LineStyle.DASHED if ln.right >= 0 else LineStyle.SOLID)))
            if ln.right < 0:  # the kerb beyond the outermost lane
                _, kerb = _lane_edges(hw, ln.width_m + 2 * KERB_OFFSET_M)
                markings.append((kerb, int(LineStyle.KERB)))
            if ln.left < 0:
                markings.append((left, int(LineStyle.SOLID)))
        for lot in m.lots.values():
            road.append(lot.polygon_xy)
        from dualdrive.world.geometry import box_corners
        spots = [np.vstack([b, b[:1]]) for b in (box_corners(sp.center_xy, sp.heading_rad, sp.length_m, sp.width_m)[0]
                                                  for sp in m.spots)]
        _STATIC_LAYERS.clear()  # one map at a time (a new episode builds a new map)
        _STATIC_LAYERS[key] = (m, markings, road, spots)  # the map is kept alive so its id stays unique
    return _STATIC_LAYERS[key][1:]


_LIGHT_HEADS: dict[int, tuple] = {}  # id(map) -> (xy, facing, signal group) of every light head


def _world_lights(w) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One light head per signalised approach lane, at its stop line on the kerb side."""
    m = w.map
    if id(m) not in _LIGHT_HEADS:
        xy, hd, grp = [], [], []
        for ln in m.lanes:
            if ln.signal_group < 0:
                continue
            p, h = m.pose(np.array([ln.id]), np.array([0.0]))
            xy.append(p[0] + 2.5 * np.array([np.sin(h[0]), -np.cos(h[0])]))  # right of the lane, facing back
            hd.append(float(h[0]) + np.pi)
            grp.append(ln.signal_group)
        xy, hd, grp = np.array(xy).reshape(-1, 2), np.array(hd), np.array(grp, np.int64)
        # lanes sharing a stop line (a left and a straight connector from one lane) give one head
        if len(xy):
            _, keep = np.unique(np.round(xy, 1), axis=0, return_index=True)
            keep = np.sort(keep)
            xy, hd, grp = xy[keep], hd[keep], grp[keep]
        _LIGHT_HEADS.clear()
        _LIGHT_HEADS[id(m)] = (m, xy, hd, grp)  # the map is kept alive so its id stays unique
    _, xy, hd, grp = _LIGHT_HEADS[id(m)]
    near = _near(xy, w.ego_xy) if len(xy) else np.zeros(0, bool)
    return xy[near], hd[near], w.lights[grp[near]].astype(np.int8)


# -- stock highway-env environments ------------------------------------------------------------
def scene_from_highway_env(env) -> SensorScene:
    """A frame of any highway-env environment (``highway-v0``, ``intersection-v0``, ``parking-v0``, ...)."""
    u = env.unwrapped
    road = getattr(u, "road", None)
    ego = getattr(u, "vehicle", None)
    if road is None or ego is None:
        raise ValueError(f"{type(u).__name__} has no highway-env road with a controlled vehicle; the sensor suite "
                         "needs env.unwrapped.road and env.unwrapped.vehicle")
    c = np.asarray(ego.position, float)
    rows, vel, cls = [], [], []
    for v in road.vehicles:
        if v is ego:
            continue
        rows.append((*v.position, v.heading, v.LENGTH, v.WIDTH, TRUCK_HEIGHT_M if v.LENGTH > 7 else CAR_HEIGHT_M))
        vel.append(np.asarray(v.velocity, float))
        cls.append(BoxClass.TRUCK if v.LENGTH > 7 else BoxClass.CAR)
    for o in road.objects:
        if not getattr(o, "solid", True) or not getattr(o, "collidable", True):
            continue  # goal landmarks are not physical
        rows.append((*o.position, o.heading, o.LENGTH, o.WIDTH, WALL_HEIGHT_M))
        vel.append(np.zeros(2))
        cls.append(BoxClass.STATIC)
    if rows:
        r = np.array(rows, float)
        boxes = Boxes(r[:, :2], r[:, 2], r[:, 3], r[:, 4], r[:, 5], np.array(vel), np.array(cls, np.int64))
        boxes = boxes.select(_near(boxes.xy, c))
    else:
        boxes = Boxes.empty()
    markings, surface = [], []
    for lane in road.network.lanes_list():
        width = float(lane.width_at(0))
        if getattr(lane, "length", 0) > 5000:  # an endless motorway lane: only the stretch around us
            left, right = _edges_near(lane, width, c)
        else:
            left, right = _lane_edges(lane, width)
        surface.append(np.concatenate([left, right[::-1]]))
        for edge, lt in ((left, lane.line_types[0]), (right, lane.line_types[1])):
            if int(lt) == 1:
                markings.append((edge, int(LineStyle.DASHED)))
            elif int(lt) in (2, 3):
                markings.append((edge, int(LineStyle.SOLID)))
    walls = [np.asarray(o.position, float) for o in road.objects if type(o).__name__ == "Obstacle"]
    if len(walls) >= 3:  # a walled area (parking-v0): paved from wall to wall
        w = np.array(walls)
        lo, hi = w.min(0), w.max(0)
        surface.insert(0, np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]]))
    h = float(ego.heading)
    return SensorScene(c.copy(), h, float(ego.speed), 0.0, 0.0, 1, float(ego.LENGTH), float(ego.WIDTH), boxes,
                       markings, surface)


def _edges_near(lane, width: float, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s0, _ = lane.local_coordinates(c)
    s = np.arange(max(0.0, s0 - SCENE_RANGE_M), min(lane.length, s0 + SCENE_RANGE_M), MARKING_STEP_M)
    return (np.array([lane.position(si, width / 2) for si in s]), np.array([lane.position(si, -width / 2) for si in s]))
