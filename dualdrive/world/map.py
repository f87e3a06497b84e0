"""The HD map: highway-env lanes baked into arrays, the lane graph and lane-level routing.

Builders add highway-env lane objects (StraightLane, CircularLane, PolyLaneFixedWidth) to a
``highway_env.road.road.RoadNetwork``; :meth:`MapBuilder.build` then samples every lane
into one flat polyline table so the traffic kernel can place hundreds of vehicles with a
single vectorised interpolation instead of a Python call per vehicle.

This map is privileged: only the world, the benchmark and the expert read it. Driving
agents get the sparse route (see ``route.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import networkx as nx
import numpy as np
from scipy.spatial import cKDTree
from highway_env.road.lane import AbstractLane, PolyLaneFixedWidth, StraightLane
from highway_env.road.road import RoadNetwork

from dualdrive.world.geometry import connector_points

SAMPLE_STEP_M = 1.0  # lane polyline resolution: fine enough for 0.1 s steps at 30 m/s
LANE_CHANGE_COST_M = 25.0  # route cost of one lane change, in metres of driving
ENTRY_CLEARANCE_M = 15.0  # free space needed at a source lane before a vehicle spawns there


class LaneKind(IntEnum):
    ROAD = 0
    CONNECTOR = 1  # inside an intersection
    RAMP = 2
    AISLE = 3  # parking-lot aisle
    ACCESS = 4  # link between a lot and a street


class Movement(IntEnum):
    STRAIGHT = 0
    LEFT = 1
    RIGHT = 2


@dataclass
class LaneInfo:
    id: int
    key: tuple[str, str, int]
    kind: LaneKind
    length_m: float
    width_m: float
    speed_limit_mps: float
    successors: list[int] = field(default_factory=list)
    left: int = -1  # same-direction neighbour sharing the same arc-length parametrisation
    right: int = -1
    signal_group: int = -1  # for connectors: the signal group that governs entering it
    intersection: int = -1
    roundabout: int = -1  # ring, entry and exit lanes of a roundabout
    # a roundabout entry: where its give-way line is, the ring arc whose traffic has priority there,
    # and the entry beside it (both merge at the same point; the one nearer the merge goes first)
    give_way_s: float = -1.0
    merge_arc: int = -1
    sibling: int = -1
    movement: Movement = Movement.STRAIGHT
    conflicts: list[int] = field(default_factory=list)  # connectors whose paths cross this one
    crosswalks: list[tuple[int, float]] = field(default_factory=list)  # (crosswalk id, s where crossed)
    is_source: bool = False  # vehicles may spawn at its start
    dead_end: bool = False  # the lane ends with no way on (lane drop, acceleration lane): merge before it

    @property
    def is_sink(self) -> bool:
        """Traffic leaves the map at the end of this lane."""
        return not self.successors and not self.dead_end and self.kind != LaneKind.AISLE


@dataclass
class Crosswalk:
    id: int
    start_xy: np.ndarray
    end_xy: np.ndarray
    width_m: float
    signal_group: int  # pedestrians walk while this vehicle group is green (parallel traffic)


@dataclass
class ParkingSpot:
    id: int
    center_xy: np.ndarray
    heading_rad: float  # pointing from the aisle into the spot
    length_m: float
    width_m: float
    aisle_lane: int
    aisle_s_m: float  # where the spot's axis meets the aisle centreline
    lot: str


@dataclass
class ParkingLot:
    name: str
    polygon_xy: np.ndarray  # drivable area of the lot (convex, counter-clockwise)
    aisle_lanes: list[int]
    spots: list[int]
    entrance_lane: int


class MapBuilder:
    """Collects highway-env lanes plus dualdrive's metadata, then bakes a :class:`LaneMap`."""

    def __init__(self) -> None:
        self.network = RoadNetwork()
        self.lanes: list[LaneInfo] = []
        self.hw_lanes: list[AbstractLane] = []
        self.crosswalks: list[Crosswalk] = []
        self.spots: list[ParkingSpot] = []
        self.lots: dict[str, ParkingLot] = {}
        self.intersections: list[np.ndarray] = []  # box polygons
        self.roundabouts: list[tuple[np.ndarray, float, float]] = []  # (centre, ring radius, ring width)
        self.n_signal_groups = 0
        self.signal_plans: list[dict] = []
        self.kerb_parking: list[tuple[np.ndarray, float]] = []  # (centre, heading) of kerb-side bays
        self.landmarks: dict[str, object] = {}

    def add_lane(self, frm: str, to: str, lane: AbstractLane, kind: LaneKind = LaneKind.ROAD, **meta) -> int:
        idx = len(self.network.graph.get(frm, {}).get(to, []))
        self.network.add_lane(frm, to, lane)
        lane_id = len(self.lanes)
        info = LaneInfo(lane_id, (frm, to, idx), kind, float(lane.length), float(lane.width_at(0)),
                        float(lane.speed_limit), **meta)
        self.lanes.append(info)
        self.hw_lanes.append(lane)
        return lane_id

    def add_straight(self, frm: str, to: str, start, end, width: float, speed: float,
                     kind: LaneKind = LaneKind.ROAD, **meta) -> int:
        lane = StraightLane(np.asarray(start, float), np.asarray(end, float), width=width, speed_limit=speed)
        return self.add_lane(frm, to, lane, kind, **meta)

    def add_poly(self, frm: str, to: str, points: np.ndarray, width: float, speed: float,
                 kind: LaneKind = LaneKind.CONNECTOR, **meta) -> int:
        lane = PolyLaneFixedWidth([tuple(p) for p in points], width=width, speed_limit=speed)
        return self.add_lane(frm, to, lane, kind, **meta)

    def connect(self, a: int, b: int, frm: str, to: str, speed: float, kind: LaneKind = LaneKind.CONNECTOR,
                **meta) -> int:
        """Add a smooth connector from the end of lane ``a`` to the start of lane ``b``."""
        la, lb = self.hw_lanes[a], self.hw_lanes[b]
        p0, h0 = la.position(la.length, 0), la.heading_at(la.length)
        p1, h1 = lb.position(0, 0), lb.heading_at(0)
        c = self.add_poly(frm, to, connector_points(p0, h0, p1, h1), self.lanes[a].width_m, speed, kind, **meta)
        self.link(a, c)
        self.link(c, b)
        return c

    def link(self, a: int, b: int) -> None:
        if b not in self.lanes[a].successors:
            self.lanes[a].successors.append(b)

    def neighbours(self, left: int, right: int) -> None:
        self.lanes[left].right = right
        self.lanes[right].left = left

    def build(self) -> "LaneMap":
        return LaneMap(self)


class LaneMap:
    """Baked, read-only map. Lane polylines live in one flat table indexed by ``offset[lane]``."""

    def __init__(self, b: MapBuilder) -> None:
        self.network = b.network
        self.lanes = b.lanes
        self.hw_lanes = b.hw_lanes
        self.crosswalks = b.crosswalks
        self.spots = b.spots
        self.lots = b.lots
        self.intersections = b.intersections
        self.roundabouts = b.roundabouts
        self.n_signal_groups = b.n_signal_groups
        self.signal_plans = b.signal_plans
        self.kerb_parking = b.kerb_parking
        self.landmarks = b.landmarks
        self._bake()
        self._compute_conflicts()
        self.graph = self._lane_graph()

    # -- baking -----------------------------------------------------------------------------
    def _bake(self) -> None:
        pts, heads, offsets, counts, steps = [], [], [], [], []
        n = 0
        for lane in self.hw_lanes:
            k = max(2, int(np.ceil(lane.length / SAMPLE_STEP_M)) + 1)
            s = np.linspace(0, lane.length, k)
            p = np.array([lane.position(si, 0) for si in s])
            h = np.array([lane.heading_at(si) for si in s])
            pts.append(p)
            heads.append(np.unwrap(h))
            offsets.append(n)
            counts.append(k)
            steps.append(lane.length / (k - 1))
            n += k
        self.pts = np.concatenate(pts)
        self.heads = np.concatenate(heads)
        self.offset = np.array(offsets)
        self.count = np.array(counts)
        self.step = np.array(steps)
        self.length = np.array([ln.length_m for ln in self.lanes])
        self.width = np.array([ln.width_m for ln in self.lanes])
        self.speed_limit = np.array([ln.speed_limit_mps for ln in self.lanes])
        self.kind = np.array([int(ln.kind) for ln in self.lanes])
        self.left = np.array([ln.left for ln in self.lanes])
        self.right = np.array([ln.right for ln in self.lanes])
        self.signal_group = np.array([ln.signal_group for ln in self.lanes])
        self.pt_lane = np.repeat(np.arange(len(self.lanes)), self.count)
        # a spatial index over every lane point: per-tick lookups near the ego touch a handful of
        # points instead of scanning the whole map (a 5 km motorway has 20 000 of them)
        self._tree = cKDTree(self.pts)

    def points_near(self, xy: np.ndarray, radius_m: float) -> np.ndarray:
        """Indices (ascending) of the lane points within ``radius_m`` of ``xy``."""
        return np.sort(np.asarray(self._tree.query_ball_point(np.asarray(xy, float), radius_m), dtype=np.int64))

    def pose(self, lane: np.ndarray, s: np.ndarray, lat: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised (xy, heading) at arc length ``s`` and lateral offset ``lat`` (left +) on ``lane``."""
        lane = np.asarray(lane)
        s = np.clip(np.asarray(s, float), 0.0, self.length[lane])
        f = s / self.step[lane]
        i0 = np.minimum(np.floor(f).astype(int), self.count[lane] - 2)
        t = (f - i0)[..., None]
        g = self.offset[lane] + i0
        xy = self.pts[g] * (1 - t) + self.pts[g + 1] * t
        h = self.heads[g] * (1 - t[..., 0]) + self.heads[g + 1] * t[..., 0]
        lat = np.asarray(lat, float)
        xy = xy + lat[..., None] * np.stack([-np.sin(h), np.cos(h)], -1)
        return xy, h

    def lane_points(self, lane: int) -> np.ndarray:
        return self.pts[self.offset[lane]: self.offset[lane] + self.count[lane]]

    def locate(self, xy: np.ndarray, heading_rad: float | None = None, max_dist_m: float = 4.0) -> tuple[int, float, float]:
        """Nearest lane (heading-aware) to a point: (lane, s, lateral). Lane -1 if none within range."""
        # a point further than sqrt(max^2 + penalty) can neither win nor pass the distance check
        penalty = 40.0 if heading_rad is not None else 0.0
        idx = self.points_near(xy, float(np.sqrt(max_dist_m**2 + penalty)))
        if len(idx) == 0:
            return -1, 0.0, 0.0
        d2 = ((self.pts[idx] - xy) ** 2).sum(1)
        score = d2
        if heading_rad is not None:
            dh = np.abs((self.heads[idx] - heading_rad + np.pi) % (2 * np.pi) - np.pi)
            score = d2 + penalty * (dh > np.pi / 2.5)  # prefer lanes that run our way
        k = int(np.argmin(score))
        if d2[k] > max_dist_m**2:
            return -1, 0.0, 0.0
        g = int(idx[k])
        lane = int(self.pt_lane[g])
        s, lat = self.hw_lanes[lane].local_coordinates(xy)
        return lane, float(np.clip(s, 0, self.length[lane])), float(lat)

    # -- topology ---------------------------------------------------------------------------
    def _compute_conflicts(self) -> None:
        """Connectors of one intersection whose centre lines come within a car width conflict."""
        by_int: dict[int, list[int]] = {}
        for ln in self.lanes:
            if ln.intersection >= 0:
                by_int.setdefault(ln.intersection, []).append(ln.id)
        for ids in by_int.values():
            for i, a in enumerate(ids):
                pa = self.lane_points(a)
                for b in ids[i + 1:]:
                    pb = self.lane_points(b)
                    d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
                    same_start = np.linalg.norm(pa[0] - pb[0]) < 0.5
                    if d.min() < 2.5 and not same_start:
                        self.lanes[a].conflicts.append(b)
                        self.lanes[b].conflicts.append(a)
        for cw in self.crosswalks:
            axis = cw.end_xy - cw.start_xy
            for ln in self.lanes:
                if ln.kind != LaneKind.CONNECTOR:
                    continue
                p = self.lane_points(ln.id)
                # signed side of the crosswalk axis line, measured across the walking direction
                rel = p - cw.start_xy
                along = rel @ axis / (axis @ axis)
                across = (rel[:, 0] * axis[1] - rel[:, 1] * axis[0]) / np.linalg.norm(axis)
                cross_i = np.where(np.diff(np.sign(across)) != 0)[0]
                for i in cross_i:
                    if -0.05 <= along[i] <= 1.05:
                        ln.crosswalks.append((cw.id, float(i * self.step[ln.id])))

    def _lane_graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for ln in self.lanes:
            g.add_node(ln.id)
            for nxt in ln.successors:
                g.add_edge(ln.id, nxt, weight=ln.length_m, kind="follow")
            for nb in (ln.left, ln.right):
                if nb >= 0:
                    g.add_edge(ln.id, nb, weight=LANE_CHANGE_COST_M, kind="change")
        return g

    def route(self, start_lane: int, goal_lanes: list[int], blocked: dict[int, float] | None = None) -> list[int]:
        """Lane-level shortest route (lane ids in driving order, lane changes as consecutive neighbours)."""
        blocked = blocked or {}

        def w(u: int, v: int, d: dict) -> float:
            return d["weight"] + blocked.get(v, 0.0)

        best: list[int] | None = None
        best_cost = np.inf
        for goal in goal_lanes:
            try:
                cost, path = nx.single_source_dijkstra(self.graph, start_lane, goal, weight=w)
            except nx.NetworkXNoPath:
                continue
            if cost < best_cost:
                best, best_cost = path, cost
        if best is None:
            raise ValueError(f"no route from lane {start_lane} to any of {goal_lanes}")
        return best

    def is_lane_change(self, a: int, b: int) -> bool:
        return b in (self.lanes[a].left, self.lanes[a].right)
