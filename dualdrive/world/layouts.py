"""Scenario families: each one composes the road builders into a map and picks the ego's task.

A family is ``_make_<family>(cfg, rng) -> Layout``: the map, where the ego starts, the lane-level
route it is asked to drive, and which lot it must park in. Traffic, parked cars and long-tail
events are placed afterwards by ``population.py`` from the same seeded generator, so a
layout is a pure function of (config, seed).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dualdrive.world.builders import (CITY_LANE_W, CITY_SPEED, MOTORWAY_LANE_W, STOP_LINE_M, build_grid, build_lot, build_motorway,
                                      link_straight)
from dualdrive.world.map import LaneKind, LaneMap, MapBuilder, Movement
from dualdrive.world.scenarios import ScenarioConfig

OUTER_LANE_Y = -1.5 * CITY_LANE_W  # centre of the outer (kerb-side) lane of an eastbound street at y=0


@dataclass
class Layout:
    map: LaneMap
    ego_xy: np.ndarray
    ego_heading_rad: float
    ego_speed_mps: float
    route_lanes: list[int]  # lane-level route from the start lane (lane changes are neighbour steps)
    arrival_index: int  # route is complete when the ego reaches the end of route_lanes[arrival_index]
    target_lot: str | None = None  # lot to park in (parking and p2p)
    start_spot: int = -1  # spot the ego starts parked in
    occupied_spots: set[int] = field(default_factory=set)
    exit_after_park: bool = False


def make_layout(cfg: ScenarioConfig, rng: np.random.Generator) -> Layout:
    return {"highway": _make_highway, "urban": _make_urban, "parking": _make_parking, "p2p": _make_p2p,
            "motorway": _make_motorway}[cfg.family](cfg, rng)


def _occupy(lane_map: LaneMap, lot: str, occupancy: float, rng: np.random.Generator, keep_free: int = 3,
            exclude: set[int] | None = None) -> set[int]:
    """Occupied spots of ``lot``; at least ``keep_free`` stay free so a search can succeed."""
    ids = [s for s in lane_map.lots[lot].spots if not exclude or s not in exclude]
    taken = {s for s in ids if rng.random() < occupancy}
    free = [s for s in ids if s not in taken]
    while len(free) < keep_free and taken:
        s = sorted(taken)[int(rng.integers(len(taken)))]
        taken.discard(s)
        free.append(s)
    return taken


# -- highway -----------------------------------------------------------------------------------
HW_LANES, HW_LENGTH = 4, 1500.0


def _make_highway(cfg: ScenarioConfig, rng: np.random.Generator) -> Layout:
    b = MapBuilder()
    mw = build_motorway(b, 0.0, 0.0, HW_LANES, HW_LENGTH, onramp_x=(300.0, 450.0), exit_x=(1150.0, 1300.0),
                        lane_drop_x=800.0, prefix="hw")
    m = b.build()
    from_ramp = rng.random() < 0.3
    start = mw.onramp if from_ramp else int(mw.entries[int(rng.integers(1, HW_LANES))])
    s0 = 20.0 if from_ramp else float(rng.uniform(20.0, 120.0))
    goals = [mw.exit_ramp] if rng.random() < 0.5 else [int(x) for x in mw.ends]
    route = m.route(start, goals)
    xy, h = m.pose(np.array([start]), np.array([s0]))
    return Layout(m, xy[0], float(h[0]), 22.0, route, len(route) - 1)


# -- motorway: a plain straight road, as highway-env's highway-v0 ----------------------------------
MOTORWAY_LENGTH_M = 5000.0
MOTORWAY_EGO_S = 200.0


def _make_motorway(cfg: ScenarioConfig, rng: np.random.Generator) -> Layout:
    b = MapBuilder()
    ids = []
    for k in range(cfg.lanes):  # lane 0 is the leftmost
        y = -k * MOTORWAY_LANE_W
        ids.append(b.add_straight("mw0", "mw1", (0.0, y), (MOTORWAY_LENGTH_M, y), MOTORWAY_LANE_W, 30.0, is_source=True))
    for a, c in zip(ids[:-1], ids[1:]):
        b.neighbours(a, c)
    m = b.build()
    start = ids[int(rng.integers(len(ids)))]
    xy, h = m.pose(np.array([start]), np.array([MOTORWAY_EGO_S]))
    return Layout(m, xy[0], float(h[0]), 25.0, [start], 0)


# -- urban -------------------------------------------------------------------------------------
def _make_urban(cfg: ScenarioConfig, rng: np.random.Generator) -> Layout:
    b = MapBuilder()
    # one of the two middle nodes is a roundabout (the seed picks which): many routes pass it
    rb = int(rng.choice([1, 4])) if cfg.roundabout else None
    grid = build_grid(b, (0.0, 0.0), 3, 2, 130.0, 60.0, "u", rng, roundabout=rb)
    m = b.build()
    entries = sorted(grid.stub_in.items())
    exits = sorted(grid.stub_out.items())
    for _ in range(100):
        (k_in, leg_in), lanes_in = entries[int(rng.integers(len(entries)))]
        (k_out, leg_out), lanes_out = exits[int(rng.integers(len(exits)))]
        if k_in == k_out or leg_in == leg_out and abs(k_in - k_out) < 2:
            continue
        start = int(lanes_in[int(rng.integers(2))])
        route = m.route(start, [int(x) for x in lanes_out])
        # a pass through a roundabout counts as a turn at one junction
        junctions = [x for x in route if m.lanes[x].kind == LaneKind.CONNECTOR
                     and (m.lanes[x].roundabout < 0 or m.lanes[x].movement != Movement.STRAIGHT)]
        turns = sum(m.lanes[x].movement != Movement.STRAIGHT or m.lanes[x].roundabout >= 0 for x in junctions)
        if turns >= 1 and len(junctions) >= 2:
            break
    s0 = float(rng.uniform(5.0, 20.0))
    xy, h = m.pose(np.array([start]), np.array([s0]))
    return Layout(m, xy[0], float(h[0]), 8.0, route, len(route) - 1)


# -- parking -----------------------------------------------------------------------------------
def _make_parking(cfg: ScenarioConfig, rng: np.random.Generator) -> Layout:
    b = MapBuilder()
    lot = build_lot(b, "P", (0.0, 0.0), 0.0, 10, two_aisles=True)
    m = b.build()
    in_spot = cfg.start_in_spot if cfg.start_in_spot is not None else bool(rng.random() < 0.5)
    a1, a2 = lot.aisle_lanes
    loop = m.route(a1, [a2])
    if in_spot:
        spot = m.spots[int(lot.spots[int(rng.integers(len(lot.spots)))])]
        occupied = _occupy(m, "P", cfg.lot_occupancy, rng, exclude={spot.id})
        start_lane = spot.aisle_lane
        route = m.route(start_lane, [a2 if start_lane == a1 else a1])
        route = route + [x for x in m.route(route[-1], [start_lane])[1:]]
        return Layout(m, spot.center_xy.copy(), _spot_start_heading(spot.heading_rad, rng), 0.0, route,
                      len(route) - 1, "P", spot.id, occupied)
    occupied = _occupy(m, "P", cfg.lot_occupancy, rng)
    xy, h = m.pose(np.array([a1]), np.array([1.0]))
    return Layout(m, xy[0], float(h[0]), 2.0, loop + m.route(a2, [a1])[1:], len(loop) - 1, "P", -1, occupied)


def _spot_start_heading(spot_heading: float, rng: np.random.Generator) -> float:
    """Parked nose-in (facing into the spot) or reversed in (facing the aisle), as the seed says."""
    return float(spot_heading if rng.random() < 0.6 else spot_heading + np.pi)


# -- parking space to parking space ------------------------------------------------------------
G1_BLOCK, G1_STUB = 120.0, 40.0
MW_X0, MW_RISE_M = 450.0, 40.0  # motorway starts at x=450; its acceleration lane 40 m north of the on-ramp's start


def _make_p2p(cfg: ScenarioConfig, rng: np.random.Generator) -> Layout:
    """Lot A -> city grid (a turn) -> on-ramp -> motorway -> exit -> city intersection (right turn) -> lot B."""
    b = MapBuilder()
    # lot A: one aisle running east straight into the grid's west stub
    lot_a = build_lot(b, "A", (-70.0, OUTER_LANE_Y), 0.0, 8, two_aisles=False)
    stubs = {(0, "W"), (0, "S"), (1, "S"), (2, "N"), (2, "W"), (3, "N"), (3, "E")}
    grid = build_grid(b, (100.0, 0.0), 2, 2, G1_BLOCK, G1_STUB, "g", rng, stubs=stubs)
    link_straight(b, lot_a.aisle_lanes[0], grid.stub_in[(0, "W")][1], "accA", CITY_SPEED / 2)
    ramp_from = grid.stub_out[(3, "E")][1]
    # north of the grid, so the on-ramp climbs to the acceleration lane without crossing the main line
    y_mw = G1_BLOCK + OUTER_LANE_Y + MW_RISE_M + 3 * MOTORWAY_LANE_W
    mw = build_motorway(b, MW_X0, y_mw, 3, 1000.0, onramp_x=(100.0, 250.0), exit_x=(700.0, 850.0), prefix="m",
                        onramp_from=ramp_from)
    # the exit ramp ends 160 m on and 35 m down (see build_motorway): the second city starts there
    ramp_end = b.hw_lanes[mw.exit_ramp].position(b.hw_lanes[mw.exit_ramp].length, 0)
    c2 = np.array([ramp_end[0] + 25.0 + 90.0 + STOP_LINE_M, ramp_end[1] - OUTER_LANE_Y])
    grid2 = build_grid(b, tuple(c2), 1, 1, 100.0, 90.0, "h", rng, stubs={"W", "S", "N", "E"})
    link_straight(b, mw.exit_ramp, grid2.stub_in[(0, "W")][1], "accX", CITY_SPEED)
    south_out = grid2.stub_out[(0, "S")][1]
    lot_origin = b.hw_lanes[south_out].position(b.hw_lanes[south_out].length + 6.0, 0)
    lot_b = build_lot(b, "B", tuple(lot_origin), -np.pi / 2, 10, two_aisles=True)
    link_straight(b, south_out, lot_b.aisle_lanes[0], "accB", CITY_SPEED / 2)
    m = b.build()
    spot = m.spots[int(lot_a.spots[int(rng.integers(len(lot_a.spots)))])]
    occupied = _occupy(m, "A", cfg.lot_occupancy, rng, exclude={spot.id})
    occupied |= _occupy(m, "B", cfg.lot_occupancy, rng)
    a1, a2 = lot_b.aisle_lanes
    route = m.route(spot.aisle_lane, [a1])
    arrival = len(route) - 2  # the access lane's end: the ego has arrived at lot B's entrance
    route += m.route(a1, [a2])[1:] + m.route(a2, [a1])[1:]  # one loop of lot B to search for a spot
    return Layout(m, spot.center_xy.copy(), _spot_start_heading(spot.heading_rad, rng), 0.0, route, arrival, "B",
                  spot.id, occupied)
