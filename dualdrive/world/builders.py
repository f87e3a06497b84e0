"""Road builders: a motorway with ramps, a signalised city grid and a parking lot.

Each builder adds lanes to a :class:`MapBuilder` at a given origin and returns the lane ids a
composer needs (entries, exits, aisles). Scenario families call one builder; P2P composes
all three, so there is one implementation of each piece of road.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from highway_env.road.lane import CircularLane

from dualdrive.world.map import Crosswalk, LaneKind, MapBuilder, Movement, ParkingLot, ParkingSpot
from dualdrive.world.geometry import connector_points, resample_polyline

MOTORWAY_LANE_W = 3.75
CITY_LANE_W = 3.5
AISLE_W = 8.0
SPOT_W, SPOT_L = 2.7, 5.5
STOP_LINE_M = 13.0  # from intersection centre to the stop line: box + crosswalk
CROSSWALK_AT_M = 11.0
CROSSWALK_W = 3.0
MOTORWAY_SPEED = 30.0
RAMP_SPEED = 20.0
CITY_SPEED = 13.9  # 50 km/h
TURN_SPEED = 8.0
AISLE_SPEED = 4.0
# a single-lane urban roundabout (inscribed diameter ~32 m) with two-lane approaches
RB_RADIUS_M = 13.0  # ring centreline
RB_LANE_W = 5.5
RB_APPROACH_M = 28.0  # from the centre to the end of the approach lanes (the give-way line)
RB_SPEED = 7.0  # ~25 km/h on the ring and its entries and exits
RB_GIVE_WAY_MARGIN_M = 1.5  # the give-way line is this far outside the ring's outer edge


def _rot(v: np.ndarray, ang: float) -> np.ndarray:
    c, s = np.cos(ang), np.sin(ang)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


@dataclass
class MotorwayLanes:
    entries: list[int]  # main-line lanes at the start
    onramp: int  # first lane of the on-ramp
    exit_ramp: int  # last lane of the exit ramp
    ends: list[int]  # main-line lanes at the end
    sections: list[list[int]] = field(default_factory=list)


def build_motorway(b: MapBuilder, x0: float, y_left: float, n_lanes: int, length_m: float,
                   onramp_x: tuple[float, float], exit_x: tuple[float, float],
                   lane_drop_x: float | None = None, prefix: str = "mw",
                   onramp_from: int | None = None, ramp_start_xy: tuple[float, float] | None = None) -> MotorwayLanes:
    """Eastbound motorway; lane 0 is the leftmost. An acceleration lane (index n_lanes) joins on the
    right over ``onramp_x``, a deceleration lane leaves over ``exit_x``, and with ``lane_drop_x``
    the left lane ends there."""
    cuts = sorted({0.0, length_m, *onramp_x, *exit_x, *([lane_drop_x] if lane_drop_x else [])})
    y = [y_left - k * MOTORWAY_LANE_W for k in range(n_lanes + 1)]
    prev: dict[int, int] = {}
    sections: list[list[int]] = []
    onramp_lane = exit_lane = -1
    for si, (a, c) in enumerate(zip(cuts[:-1], cuts[1:])):
        present = [k for k in range(n_lanes) if not (lane_drop_x and k == 0 and a >= lane_drop_x)]
        if onramp_x[0] <= a < onramp_x[1] or exit_x[0] <= a < exit_x[1]:
            present.append(n_lanes)
        cur: dict[int, int] = {}
        for k in present:
            kind = LaneKind.RAMP if k == n_lanes else LaneKind.ROAD
            ends_here = (k == n_lanes and c == onramp_x[1]) or (k == 0 and lane_drop_x is not None and c == lane_drop_x)
            cur[k] = b.add_straight(f"{prefix}{si}", f"{prefix}{si + 1}", (x0 + a, y[k]), (x0 + c, y[k]),
                                    MOTORWAY_LANE_W, MOTORWAY_SPEED, kind, is_source=(si == 0 and k < n_lanes),
                                    dead_end=ends_here)
            if k in prev:
                b.link(prev[k], cur[k])
        for k in present:
            if k + 1 in cur:
                b.neighbours(cur[k], cur[k + 1])
        if n_lanes in cur and a == onramp_x[0]:
            start = np.array(ramp_start_xy if ramp_start_xy else (x0 + a - 160, y[n_lanes] - 35))
            if onramp_from is not None:
                lane = b.hw_lanes[onramp_from]
                start = lane.position(lane.length, 0)
            pts = connector_points(start, 0.0 if onramp_from is None else b.hw_lanes[onramp_from].heading_at(
                b.hw_lanes[onramp_from].length), np.array([x0 + a, y[n_lanes]]), 0.0, 1.0)
            onramp_lane = b.add_poly(f"{prefix}_on", f"{prefix}{si}", pts, MOTORWAY_LANE_W, RAMP_SPEED,
                                     LaneKind.RAMP, is_source=onramp_from is None)
            b.link(onramp_lane, cur[n_lanes])
            if onramp_from is not None:
                b.link(onramp_from, onramp_lane)
        if n_lanes in cur and c == exit_x[1]:
            end = np.array([x0 + c + 160, y[n_lanes] - 35])
            pts = connector_points(np.array([x0 + c, y[n_lanes]]), 0.0, end, 0.0, 1.0)
            exit_lane = b.add_poly(f"{prefix}{si + 1}", f"{prefix}_off", pts, MOTORWAY_LANE_W, RAMP_SPEED,
                                   LaneKind.RAMP)
            b.link(cur[n_lanes], exit_lane)
        prev = {k: v for k, v in cur.items() if k < n_lanes}
        sections.append(list(cur.values()))
    first = sections[0]
    return MotorwayLanes(entries=first, onramp=onramp_lane, exit_ramp=exit_lane, ends=list(prev.values()),
                         sections=sections)


# -- city grid ---------------------------------------------------------------------------------
LEGS = {"E": np.array([1.0, 0.0]), "N": np.array([0.0, 1.0]), "W": np.array([-1.0, 0.0]), "S": np.array([0.0, -1.0])}
LANE_OFFSETS = (CITY_LANE_W / 2, 3 * CITY_LANE_W / 2)  # inner (left) lane, outer (right) lane


@dataclass
class GridLanes:
    centers: list[np.ndarray]
    # (intersection index, leg) -> [inner, outer] lane ids of the stub leaving / entering the grid
    stub_out: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    stub_in: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    segments: list[list[int]] = field(default_factory=list)


def _left_normal(u: np.ndarray) -> np.ndarray:
    return np.array([-u[1], u[0]])


def build_grid(b: MapBuilder, origin: tuple[float, float], nx: int, ny: int, block_m: float, stub_m: float,
               prefix: str, rng: np.random.Generator, protected_left_p: float = 0.5,
               stubs: set[str] | None = None, kerb_parking_p: float = 0.5,
               roundabout: int | None = None) -> GridLanes:
    """A grid of signalised four-way intersections, two lanes each way, with crosswalks; node
    ``roundabout`` (an index into the grid, row-major) is a roundabout instead."""
    centers = [np.array(origin, float) + np.array([i * block_m, j * block_m]) for j in range(ny) for i in range(nx)]
    idx = {(i, j): j * nx + i for j in range(ny) for i in range(nx)}
    gl = GridLanes(centers=centers)
    # lanes entering (in_) and leaving (out_) each intersection leg, [inner, outer]
    in_: dict[tuple[int, str], list[int]] = {}
    out_: dict[tuple[int, str], list[int]] = {}

    def road(c0: np.ndarray, u: np.ndarray, length: float, name: str, source: bool) -> list[int]:
        n = _left_normal(u)
        ids = []
        for off in LANE_OFFSETS:
            p0 = c0 + u * 0 - n * off
            ids.append(b.add_straight(f"{name}a", f"{name}b", p0, p0 + u * length, CITY_LANE_W, CITY_SPEED,
                                      is_source=source))
        b.neighbours(ids[0], ids[1])
        return ids

    def clear(k: int) -> float:  # centre to where the node's roads end
        return RB_APPROACH_M if k == roundabout else STOP_LINE_M

    for (i, j), k in idx.items():
        c = centers[k]
        for leg, u in LEGS.items():
            ni, nj = i + int(u[0]), j + int(u[1])
            if (ni, nj) in idx:
                if (k, leg) in out_:
                    continue
                k2 = idx[(ni, nj)]
                c2 = centers[k2]
                length = block_m - clear(k) - clear(k2)
                fwd = road(c + u * clear(k), u, length, f"{prefix}{k}{leg}", False)
                back = road(c2 - u * clear(k2), -u, length, f"{prefix}{k2}{leg}r", False)
                out_[(k, leg)], in_[(idx[(ni, nj)], _opposite(leg))] = fwd, fwd
                out_[(idx[(ni, nj)], _opposite(leg))], in_[(k, leg)] = back, back
                gl.segments += [fwd, back]
                _kerb_parking(b, c + u * clear(k), u, length, rng, kerb_parking_p)
                _kerb_parking(b, c2 - u * clear(k2), -u, length, rng, kerb_parking_p)
            elif stubs is None or leg in stubs or (k, leg) in stubs:
                fwd = road(c + u * clear(k), u, stub_m, f"{prefix}{k}{leg}x", False)
                back = road(c + u * (clear(k) + stub_m), -u, stub_m, f"{prefix}{k}{leg}e", True)
                out_[(k, leg)], in_[(k, leg)] = fwd, back
                gl.stub_out[(k, leg)], gl.stub_in[(k, leg)] = fwd, back
    for k, c in enumerate(centers):
        protected = rng.random() < protected_left_p  # drawn for every node: the seed's stream stays aligned
        if k == roundabout:
            _roundabout(b, k, c, in_, out_, prefix)
        else:
            _intersection(b, k, c, in_, out_, prefix, protected=protected)
    return gl


def _opposite(leg: str) -> str:
    return {"E": "W", "W": "E", "N": "S", "S": "N"}[leg]


def _kerb_parking(b: MapBuilder, start: np.ndarray, u: np.ndarray, length: float, rng: np.random.Generator,
                  p: float) -> None:
    """Cars parked on the kerb beside the outer lane, clear of the intersections."""
    if rng.random() > p:
        return
    n = _left_normal(u)
    edge = 2 * CITY_LANE_W + 1.3  # car centre just beyond the outer lane's edge
    for s in np.arange(15.0, length - 15.0, 7.0):
        if rng.random() < 0.45:
            b.kerb_parking.append((start + u * s - n * edge, float(np.arctan2(u[1], u[0]))))


def _intersection(b: MapBuilder, k: int, c: np.ndarray, in_: dict, out_: dict, prefix: str, protected: bool) -> None:
    base = b.n_signal_groups
    b.n_signal_groups += 4  # NS straight+right, NS left, EW straight+right, EW left
    inter_id = len(b.intersections)
    h = STOP_LINE_M
    b.intersections.append(np.array([c + [h, h], c + [-h, h], c + [-h, -h], c + [h, -h]]))
    b.signal_plans.append({"groups": [base, base + 1, base + 2, base + 3], "protected_left": protected})
    for leg, u in LEGS.items():
        if (k, leg) not in in_:
            continue
        axis = 0 if leg in ("N", "S") else 2
        travel = -u
        for movement, lane_pos, turn in ((Movement.STRAIGHT, 0, 0.0), (Movement.STRAIGHT, 1, 0.0),
                                         (Movement.LEFT, 0, np.pi / 2), (Movement.RIGHT, 1, -np.pi / 2)):
            out_dir = _rot(travel, turn)
            out_leg = next(name for name, v in LEGS.items() if np.allclose(v, out_dir))
            if (k, out_leg) not in out_:
                continue
            a, dst = in_[(k, leg)][lane_pos], out_[(k, out_leg)][lane_pos]
            group = base + axis + (1 if movement == Movement.LEFT else 0)
            speed = CITY_SPEED if movement == Movement.STRAIGHT else TURN_SPEED
            b.connect(a, dst, f"{prefix}{k}{leg}", f"{prefix}{k}{out_leg}", speed, LaneKind.CONNECTOR,
                      signal_group=group, intersection=inter_id, movement=movement)
        n = _left_normal(u)
        half = 2 * CITY_LANE_W + 1.5
        walk_group = base + (2 if leg in ("N", "S") else 0)  # walk with the traffic parallel to the crosswalk
        b.crosswalks.append(Crosswalk(len(b.crosswalks), c + u * CROSSWALK_AT_M - n * half,
                                      c + u * CROSSWALK_AT_M + n * half, CROSSWALK_W, walk_group))


def _roundabout(b: MapBuilder, k: int, c: np.ndarray, in_: dict, out_: dict, prefix: str) -> None:
    """A single-lane ring driven counter-clockwise, with a give-way at each entry.

    Four ring nodes sit between the legs (at 45, 135, 225 and 315 degrees). At each node the
    entries from the leg before it merge in and the exits to the leg after it leave, so the ring
    is four quarter arcs and a right turn goes straight from its entry to its exit. An entry
    conflicts with the arc arriving at its node (circulating traffic has priority) and with the
    other entry lane of its leg (the outer lane goes first: two cars never merge side by side)."""
    rid = len(b.roundabouts)
    b.roundabouts.append((c.copy(), RB_RADIUS_M, RB_LANE_W))
    legs = list(LEGS)  # E, N, W, S: counter-clockwise, leg j at 90*j degrees
    node_ang = [np.deg2rad(45.0 + 90.0 * j) for j in range(4)]
    meta = dict(roundabout=rid)
    arcs = []
    for j in range(4):
        # arc j runs from node j-1 to node j (counter-clockwise is highway-env's "clockwise" with y up)
        lane = CircularLane(c, RB_RADIUS_M, node_ang[j - 1], node_ang[j] + (2 * np.pi if j == 0 else 0.0),
                            clockwise=True, width=RB_LANE_W, speed_limit=RB_SPEED)
        arcs.append(b.add_lane(f"{prefix}{k}o{(j - 1) % 4}", f"{prefix}{k}o{j}", lane, LaneKind.CONNECTOR, **meta))
    entries: dict[int, list[int]] = {j: [] for j in range(4)}  # node -> entry connectors merging there
    exits: dict[int, list[int]] = {j: [] for j in range(4)}  # node -> exit connectors leaving there
    for j, leg in enumerate(legs):
        if (k, leg) in in_:  # entries from leg j merge at node j
            node, a = j, node_ang[j]
            p1, h1 = c + RB_RADIUS_M * np.array([np.cos(a), np.sin(a)]), a + np.pi / 2
            for lane_pos, movement in ((1, Movement.RIGHT), (0, Movement.LEFT)):
                src = in_[(k, leg)][lane_pos]
                hw = b.hw_lanes[src]
                pts = connector_points(hw.position(hw.length, 0), hw.heading_at(hw.length), p1, h1)
                e = b.add_poly(f"{prefix}{k}{leg}i{lane_pos}", f"{prefix}{k}o{node}", pts, CITY_LANE_W, RB_SPEED,
                               LaneKind.CONNECTOR, movement=movement, **meta)
                b.link(src, e)
                entries[node].append(e)
        if (k, leg) in out_:  # exits to leg j leave at node j-1
            node, a = (j - 1) % 4, node_ang[j - 1]
            p0, h0 = c + RB_RADIUS_M * np.array([np.cos(a), np.sin(a)]), a + np.pi / 2
            for lane_pos in (1, 0):
                dst = out_[(k, leg)][lane_pos]
                hw = b.hw_lanes[dst]
                pts = connector_points(p0, h0, hw.position(0, 0), hw.heading_at(0))
                x = b.add_poly(f"{prefix}{k}o{node}", f"{prefix}{k}{leg}x{lane_pos}", pts, CITY_LANE_W, RB_SPEED,
                               LaneKind.CONNECTOR, **meta)
                b.link(x, dst)
                exits[node].append(x)
    for j in range(4):
        for frm in [arcs[j]] + entries[j]:
            for nxt in [arcs[(j + 1) % 4]] + exits[j]:
                b.link(frm, nxt)
        for e in entries[j]:
            info = b.lanes[e]
            info.merge_arc = arcs[j]
            info.sibling = next((x for x in entries[j] if x != e), -1)
            # the give-way line: where the entry path reaches the ring's outer edge (less a margin)
            hw = b.hw_lanes[e]
            ss = np.arange(0.0, hw.length, 0.25)
            r = np.array([np.linalg.norm(hw.position(si, 0) - c) for si in ss])
            info.give_way_s = float(ss[np.argmax(r < RB_RADIUS_M + RB_LANE_W / 2 + RB_GIVE_WAY_MARGIN_M)])


# -- parking lot -------------------------------------------------------------------------------
def build_lot(b: MapBuilder, name: str, origin: tuple[float, float], heading_rad: float, spots_per_row: int,
              two_aisles: bool) -> ParkingLot:
    """A lot whose first aisle starts at ``origin`` heading ``heading_rad``. Perpendicular spots on
    both sides of each aisle; with two aisles the lot is a one-way loop."""
    o = np.array(origin, float)

    def w(p) -> np.ndarray:
        return o + _rot(np.asarray(p, float), heading_rad)

    length = 8.0 + spots_per_row * SPOT_W + 4.0
    row = AISLE_W / 2 + SPOT_L / 2
    aisle2_y = -(2 * row + SPOT_L) if two_aisles else None
    a1 = b.add_straight(f"{name}_a1", f"{name}_a1e", w((0, 0)), w((length, 0)), AISLE_W, AISLE_SPEED, LaneKind.AISLE)
    aisles = [a1]
    rows = [(a1, 0.0, 1), (a1, 0.0, -1)]
    if two_aisles:
        a2 = b.add_straight(f"{name}_a2", f"{name}_a2e", w((length, aisle2_y)), w((0, aisle2_y)), AISLE_W,
                            AISLE_SPEED, LaneKind.AISLE)
        aisles.append(a2)
        rows += [(a2, aisle2_y, 1), (a2, aisle2_y, -1)]
        b.connect(a1, a2, f"{name}_a1e", f"{name}_a2", AISLE_SPEED, LaneKind.AISLE)
        b.connect(a2, a1, f"{name}_a2e", f"{name}_a1", AISLE_SPEED, LaneKind.AISLE)
    spot_ids = []
    for aisle, y_aisle, side in rows:
        for i in range(spots_per_row):
            x = 8.0 + SPOT_W / 2 + i * SPOT_W
            s = x if aisle == a1 else length - x
            spot = ParkingSpot(len(b.spots), w((x, y_aisle + side * row)), float(heading_rad + side * np.pi / 2),
                               SPOT_L, SPOT_W, aisle, float(s), name)
            b.spots.append(spot)
            spot_ids.append(spot.id)
    y_min = (aisle2_y if two_aisles else 0.0) - row - SPOT_L / 2 - 0.5
    x_max = length + (12.0 if two_aisles else 0.5)
    poly = np.array([w((-1.0, y_min)), w((x_max, y_min)), w((x_max, row + SPOT_L / 2 + 0.5)),
                     w((-1.0, row + SPOT_L / 2 + 0.5))])
    lot = ParkingLot(name, poly, aisles, spot_ids, entrance_lane=a1)
    b.lots[name] = lot
    return lot


def link_straight(b: MapBuilder, a: int, dst: int, name: str, speed: float, kind: LaneKind = LaneKind.ACCESS) -> int:
    """A smooth access lane from the end of lane ``a`` to the start of lane ``dst``."""
    return b.connect(a, dst, f"{name}0", f"{name}1", speed, kind)


def lane_polyline(b: MapBuilder, lane: int) -> np.ndarray:
    hw = b.hw_lanes[lane]
    return resample_polyline(np.array([hw.position(s, 0) for s in np.linspace(0, hw.length, 20)]), 1.0)
