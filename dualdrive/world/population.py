"""Who else is in the world: NPC vehicles with varied driver styles, pedestrians, parked cars,
cones, and the long-tail events, all placed from the scenario's seeded generator."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dualdrive.world.layouts import Layout
from dualdrive.world.map import LaneKind, LaneMap
from dualdrive.world.scenarios import ScenarioConfig
from dualdrive.world.traffic import Kind, Pedestrians, Vehicles

SPAWN_CLEAR_OF_EGO_M = 35.0
CONE_SPACING_M = 4.0
WORK_ZONE_LENGTH_M = 40.0
# mean gap between spawned vehicles per family, metres of lane per vehicle at density 1.0
MEAN_SPACING_M = {"highway": 65.0, "urban": 45.0, "parking": 1e9, "p2p": 55.0, "motorway": 65.0}
MOTORWAY_SPAN_M = (-100.0, 1500.0)  # the motorway's vehicles start spread over this stretch around the ego


class StaticKind:
    PARKED_CAR = "parked_car"
    CONE = "cone"


@dataclass
class StaticObjects:
    xy: np.ndarray  # (K, 2)
    heading_rad: np.ndarray
    length_m: np.ndarray
    width_m: np.ndarray
    kind: list[str]

    @classmethod
    def from_rows(cls, rows: list[tuple[np.ndarray, float, float, float, str]]) -> "StaticObjects":
        if not rows:
            return cls(np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0), [])
        return cls(np.array([r[0] for r in rows], float), np.array([r[1] for r in rows], float),
                   np.array([r[2] for r in rows], float), np.array([r[3] for r in rows], float), [r[4] for r in rows])


@dataclass
class PendingEvent:
    """An event the world triggers later (it depends on where the ego is then)."""

    name: str
    at_time_s: float = 0.0
    vehicle: int = -1  # the pre-allocated vehicle row it uses
    done: bool = False
    data: dict = field(default_factory=dict)


@dataclass
class Population:
    vehicles: Vehicles
    pedestrians: Pedestrians
    statics: StaticObjects
    pending: list[PendingEvent]
    event_log: list[dict]  # where each event was placed (for reports and tests)


def populate(cfg: ScenarioConfig, layout: Layout, rng: np.random.Generator) -> Population:
    m = layout.map
    rows = _spawn_rows(cfg, layout, rng)
    # rows reserved for events that appear later (emergency vehicle, cut-in, blocker); the motorway,
    # a benchmark scene, keeps exactly the vehicles it was asked for
    n_extra = 0 if cfg.family == "motorway" else 6
    ve = Vehicles.empty(len(rows) + n_extra)
    for i, (lane, s) in enumerate(rows):
        _init_driver(ve, i, lane, s, m, rng, truck=cfg.family == "highway" and rng.random() < 0.15)
    statics = _parked_cars(layout, rng)
    peds = _crosswalk_pedestrians(cfg, m, rng)
    pop = Population(ve, peds, StaticObjects.from_rows(statics), [], [])
    _place_events(cfg, layout, pop, rng, first_free=len(rows))
    return pop


def _spawn_rows(cfg: ScenarioConfig, layout: Layout, rng: np.random.Generator) -> list[tuple[int, float]]:
    m = layout.map
    if cfg.family == "motorway":
        return _motorway_rows(cfg, layout, rng)
    spacing = MEAN_SPACING_M[cfg.family] / max(cfg.traffic_density, 1e-6)
    rows = []
    for ln in m.lanes:
        if ln.kind not in (LaneKind.ROAD, LaneKind.RAMP) or ln.dead_end:
            continue
        s = float(rng.uniform(0, spacing))
        while s < ln.length_m - 5.0:
            xy, _ = m.pose(np.array([ln.id]), np.array([s]))
            if np.linalg.norm(xy[0] - layout.ego_xy) > SPAWN_CLEAR_OF_EGO_M:
                rows.append((ln.id, s))
            s += float(rng.uniform(0.5, 1.5)) * spacing
    return rows


def _motorway_rows(cfg: ScenarioConfig, layout: Layout, rng: np.random.Generator) -> list[tuple[int, float]]:
    """Exactly ``cfg.vehicles`` (default 50) vehicles spread evenly over the lanes and the stretch
    around the ego (jittered), none on top of the ego or of each other."""
    m = layout.map
    n = 50 if cfg.vehicles is None else int(cfg.vehicles)
    lanes = [ln.id for ln in m.lanes]
    s_ego = float(m.hw_lanes[layout.route_lanes[0]].local_coordinates(layout.ego_xy)[0])
    lo, hi = s_ego + MOTORWAY_SPAN_M[0], min(s_ego + MOTORWAY_SPAN_M[1], m.length[lanes[0]] - 50.0)
    per_lane = int(np.ceil(n / len(lanes)))
    gap = (hi - lo) / max(per_lane, 1)
    rows = []
    for k in range(n):
        lane = lanes[k % len(lanes)]
        s = lo + (k // len(lanes) + 0.5) * gap + float(rng.uniform(-0.2, 0.2)) * gap
        if lane == layout.route_lanes[0] and abs(s - s_ego) < 20.0:
            s = s_ego + 20.0 + (k // len(lanes)) * 0.1  # never on the ego
        rows.append((lane, float(np.clip(s, 0.0, m.length[lane]))))
    return rows


def _init_driver(ve: Vehicles, i: int, lane: int, s: float, m: LaneMap, rng: np.random.Generator,
                 truck: bool = False) -> None:
    """One NPC: IDM/MOBIL parameters drawn per vehicle, from timid to assertive."""
    limit = m.speed_limit[lane]
    style = float(rng.uniform(0, 1))  # 0 timid .. 1 assertive
    ve.lane[i], ve.s[i], ve.lat[i], ve.lc_from[i] = lane, s, 0.0, -1
    ve.v0[i] = limit * (0.85 + 0.3 * style) * (0.8 if truck else 1.0)
    ve.v[i] = ve.v0[i] * float(rng.uniform(0.6, 0.9))
    ve.T[i] = 2.0 - 0.9 * style
    ve.a_max[i] = (0.8 if truck else 1.2 + 1.3 * style)
    ve.b_comf[i] = 1.5 + 1.5 * style
    ve.s0[i] = 2.5 - style
    ve.polite[i] = 0.6 - 0.5 * style
    ve.length[i], ve.width[i] = (10.0, 2.5) if truck else (float(rng.uniform(4.2, 5.0)), 1.9)
    ve.kind[i] = int(Kind.TRUCK if truck else Kind.CAR)
    ve.active[i] = True


def _parked_cars(layout: Layout, rng: np.random.Generator) -> list:
    m = layout.map
    rows = [(xy, h, 4.6, 1.9, StaticKind.PARKED_CAR) for xy, h in m.kerb_parking]
    for sid in sorted(layout.occupied_spots):
        sp = m.spots[sid]
        jitter = rng.normal(0, 0.15, 2)
        rows.append((sp.center_xy + jitter, sp.heading_rad + float(rng.normal(0, 0.03)) + np.pi * (rng.random() < 0.5),
                     float(rng.uniform(4.3, 4.9)), 1.9, StaticKind.PARKED_CAR))
    return rows


def _crosswalk_pedestrians(cfg: ScenarioConfig, m: LaneMap, rng: np.random.Generator) -> Pedestrians:
    xy, direction, speed, cw_id, remaining, wait = [], [], [], [], [], []
    for cw in m.crosswalks:
        n = int(rng.poisson(0.8 * cfg.pedestrian_density))
        for _ in range(n):
            forward = rng.random() < 0.5
            a, b = (cw.start_xy, cw.end_xy) if forward else (cw.end_xy, cw.start_xy)
            d = b - a
            xy.append(a.copy())
            direction.append(d / np.linalg.norm(d))
            speed.append(float(rng.uniform(1.1, 1.6)))
            cw_id.append(cw.id)
            remaining.append(float(np.linalg.norm(d)))
            wait.append(float(rng.uniform(0.0, 30.0)))
    k = len(xy)
    return Pedestrians(np.array(xy).reshape(k, 2), np.array(direction).reshape(k, 2), np.array(speed),
                       np.array(cw_id, dtype=np.int64), np.array(remaining), np.zeros(k, np.int64), np.array(wait),
                       np.zeros((k, 2)), np.zeros(k))


# -- long-tail events --------------------------------------------------------------------------
def _route_road_lanes(layout: Layout, min_len: float, need_neighbour: bool) -> list[int]:
    m = layout.map
    out = []
    for lane in layout.route_lanes[: layout.arrival_index + 1]:
        ln = m.lanes[lane]
        has_nb = ln.left >= 0 or ln.right >= 0
        if ln.kind == LaneKind.ROAD and ln.length_m >= min_len and (has_nb or not need_neighbour) and not ln.dead_end \
                and not _merge_section(m, lane):
            out.append(lane)
    return out


def _merge_section(m: LaneMap, lane: int) -> bool:
    """The lane's carriageway has an acceleration/exit lane or a lane drop: traffic there is already
    merging, and closing a lane on top of it is a different (compound) scenario, not one event."""
    seen, todo = set(), [lane]
    while todo:
        x = todo.pop()
        if x < 0 or x in seen:
            continue
        seen.add(x)
        if m.lanes[x].kind == LaneKind.RAMP or m.lanes[x].dead_end:
            return True
        todo += [int(m.left[x]), int(m.right[x])]
    return False


BLOCKER_SPACING_M = 80.0  # a stalled car and a work zone are never this close: one lane stays open


def _far_enough(layout: Layout, lane: int, s: float, min_dist_m: float = 80.0) -> bool:
    xy, _ = layout.map.pose(np.array([lane]), np.array([s]))
    return float(np.linalg.norm(xy[0] - layout.ego_xy)) > min_dist_m


def _pick_spot_on_route(layout: Layout, rng: np.random.Generator, min_len: float, need_nb: bool,
                        margin: float, away_from: list[np.ndarray] | None = None) -> tuple[int, float] | None:
    """A place on a road lane of the route: ``margin`` from both lane ends (room to change lanes
    after an intersection), far from the ego's start and from the other blockers (``away_from``),
    so that a lane always stays open beside a blocker."""
    cands = _route_road_lanes(layout, min_len, need_nb)
    for _ in range(50):
        if not cands:
            return None
        lane = int(cands[int(rng.integers(len(cands)))])
        s = float(rng.uniform(margin, layout.map.length[lane] - margin))
        xy, _ = layout.map.pose(np.array([lane]), np.array([s]))
        if any(np.linalg.norm(xy[0] - a) < BLOCKER_SPACING_M for a in away_from or []):
            continue
        if _far_enough(layout, lane, s):
            return lane, s
    return None


def _clear_around(ve: Vehicles, lane_map: LaneMap, lane: int, s: float, radius: float) -> None:
    lanes = {lane, int(lane_map.left[lane]), int(lane_map.right[lane])}
    near = ve.active & np.isin(ve.lane, list(lanes)) & (np.abs(ve.s - s) < radius)
    ve.active[near] = False


def _place_events(cfg: ScenarioConfig, layout: Layout, pop: Population, rng: np.random.Generator,
                  first_free: int) -> None:
    m, ve = layout.map, pop.vehicles
    extra = iter(range(first_free, len(ve)))
    ev = cfg.events
    blockers: list[np.ndarray] = []
    if ev.stalled_vehicle:
        where = _pick_spot_on_route(layout, rng, 80.0, True, 30.0)
        if where:
            lane, s = where
            blockers.append(m.pose(np.array([lane]), np.array([s]))[0][0])
            _clear_around(ve, m, lane, s, 25.0)
            i = next(extra)
            _init_driver(ve, i, lane, s, m, rng)
            ve.kind[i], ve.v[i], ve.v0[i] = int(Kind.STALLED), 0.0, 0.0
            pop.event_log.append({"event": "stalled_vehicle", "lane": lane, "s_m": s})
    if ev.road_works:
        where = _pick_spot_on_route(layout, rng, 90.0, True, WORK_ZONE_LENGTH_M / 2 + 20.0, blockers)
        if where:
            lane, s = where
            _clear_around(ve, m, lane, s, WORK_ZONE_LENGTH_M)
            i = next(extra)
            _init_driver(ve, i, lane, s, m, rng)
            ve.kind[i], ve.v[i], ve.v0[i] = int(Kind.WORKZONE), 0.0, 0.0
            ve.length[i], ve.width[i] = WORK_ZONE_LENGTH_M, m.width[lane]
            _cones(pop, m, lane, s)
            pop.event_log.append({"event": "road_works", "lane": lane, "s_m": s})
    if ev.jaywalker:
        _jaywalker(layout, pop, rng)
    if ev.emergency_vehicle:
        pop.pending.append(PendingEvent("emergency_vehicle", float(rng.uniform(8.0, 25.0)), next(extra)))
    if ev.cut_in:
        pop.pending.append(PendingEvent("cut_in", float(rng.uniform(6.0, 25.0)), next(extra)))
    if ev.blocked_aisle and layout.target_lot:
        lot = m.lots[layout.target_lot]
        lane = lot.aisle_lanes[0]
        s = float(rng.uniform(10.0, 18.0))
        i = next(extra)
        _init_driver(ve, i, lane, s, m, rng)
        ve.v[i], ve.v0[i], ve.release_t[i] = 0.0, 0.0, np.inf  # released once the ego has waited behind it
        pop.pending.append(PendingEvent("blocked_aisle", 0.0, i, data={"wait_s": float(rng.uniform(5.0, 15.0))}))
        pop.event_log.append({"event": "blocked_aisle", "lane": lane, "s_m": s})


def _cones(pop: Population, m: LaneMap, lane: int, s: float) -> None:
    """A taper of cones closing the lane over the work zone, plus a line along its side."""
    w = m.width[lane]
    side = 1.0 if m.left[lane] >= 0 else -1.0  # the open neighbour is on this side
    rows = []
    for k, ds in enumerate(np.arange(-WORK_ZONE_LENGTH_M / 2, WORK_ZONE_LENGTH_M / 2 + 0.1, CONE_SPACING_M)):
        taper = min(1.0, k / 3.0)  # first cones at the far edge, then across the lane
        lat = side * (-w / 2 + taper * (w - 0.4) + 0.2) if k < 4 else side * (w / 2 - 0.3)
        xy, h = m.pose(np.array([lane]), np.array([s + ds]), np.array([lat]))
        rows.append((xy[0], float(h[0]), 0.4, 0.4, StaticKind.CONE))
    new = StaticObjects.from_rows(rows)
    st = pop.statics
    pop.statics = StaticObjects(np.concatenate([st.xy, new.xy]), np.concatenate([st.heading_rad, new.heading_rad]),
                                np.concatenate([st.length_m, new.length_m]), np.concatenate([st.width_m, new.width_m]),
                                st.kind + new.kind)


def _jaywalker(layout: Layout, pop: Population, rng: np.random.Generator) -> None:
    m = layout.map
    where = _pick_spot_on_route(layout, rng, 60.0, False, 20.0)
    if where is None:
        return
    lane, s = where
    # walk from the kerb on the right of the carriageway across all same-direction lanes
    right_lanes = 0
    cur = lane
    while m.right[cur] >= 0:
        cur = int(m.right[cur])
        right_lanes += 1
    left_lanes = 0
    cur = lane
    while m.left[cur] >= 0:
        cur = int(m.left[cur])
        left_lanes += 1
    w = m.width[lane]
    start_lat = -(right_lanes + 0.5) * w - 1.5
    end_lat = (left_lanes + 0.5) * w + 1.0
    xy0, h = m.pose(np.array([lane]), np.array([s]), np.array([start_lat]))
    xy1, _ = m.pose(np.array([lane]), np.array([s]), np.array([end_lat]))
    d = xy1[0] - xy0[0]
    p = pop.pedestrians
    p.xy = np.vstack([p.xy, xy0])
    p.dir = np.vstack([p.dir, d / np.linalg.norm(d)])
    p.speed = np.append(p.speed, float(rng.uniform(1.3, 1.8)))
    p.crosswalk = np.append(p.crosswalk, -1)
    p.remaining_m = np.append(p.remaining_m, float(np.linalg.norm(d)))
    p.state = np.append(p.state, 0)
    p.wait_s = np.append(p.wait_s, 0.0)
    p.trigger_xy = np.vstack([p.trigger_xy, m.pose(np.array([lane]), np.array([s]))[0]])
    p.trigger_m = np.append(p.trigger_m, float(rng.uniform(30.0, 40.0)))
    pop.event_log.append({"event": "jaywalker", "lane": lane, "s_m": s})
