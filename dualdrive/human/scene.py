"""A CommonRoad scenario as dualdrive reads it: the lanelet map as polylines, and the log of every
recorded vehicle as arrays over time.

Read with ``commonroad-io`` (``CommonRoadFileReader``); nothing here parses XML by hand.

- :class:`LaneletMap`: one entry per lanelet: centre, left and right bound polylines (world frame,
  the scenario's own local metres), the paint on each bound, mean width, successors and
  same-direction neighbours (as indices into the map), plus the drivable area as one shapely
  geometry for off-road tests.
- :class:`HumanLog`: ``xy[T, N, 2]`` (the centre of each vehicle's rectangle), ``heading_rad``,
  ``speed_mps``, ``accel_mps2``, ``valid[T, N]`` at the scenario's step (0.1 s for NGSIM); the
  vehicles' ``length_m``/``width_m`` and CommonRoad ids.
- Traffic lights: position, the way each faces, and their state at every step (from the
  scenario's light cycles; in the NGSIM conversion these cycles are the converter's estimate,
  not a recording).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.validation import make_valid

from dualdrive.human.pack import HumanDataError
from dualdrive.sensors.scene import LineStyle

# the reader logs a warning per old-format intersection successor in the urban maps (already mapped to the
# new format); they say nothing a dualdrive user can act on
logging.getLogger("commonroad.common.reader.file_reader_xml").setLevel(logging.ERROR)

LIGHT_RED, LIGHT_AMBER, LIGHT_GREEN, LIGHT_OFF = 0, 1, 2, -1
ROAD_TOLERANCE_M = 0.5


@dataclass
class LaneletMap:
    ids: np.ndarray  # (L,) CommonRoad lanelet ids
    centre: list[np.ndarray]  # (n, 2) each
    left: list[np.ndarray]
    right: list[np.ndarray]
    left_style: np.ndarray  # (L,) LineStyle of the paint on the left bound
    right_style: np.ndarray
    width_m: np.ndarray  # (L,) mean width
    successors: list[list[int]]  # indices into this map
    adj_left: np.ndarray  # (L,) index of the same-direction neighbour on the left, -1 if none
    adj_right: np.ndarray
    drivable: shapely.Geometry = field(repr=False, default=None)  # union of the lanelet polygons

    def __len__(self) -> int:
        return len(self.ids)

    def on_road(self, xy: np.ndarray) -> np.ndarray:
        """(N,) whether each point (N, 2) lies on a lanelet (the drivable area)."""
        p = np.asarray(xy, float).reshape(-1, 2)
        return shapely.contains_xy(self.drivable, p[:, 0], p[:, 1]) | shapely.intersects_xy(
            self.drivable.boundary, p[:, 0], p[:, 1])

    def locate(self, xy: np.ndarray, heading_rad: float | None = None) -> tuple[int, float, float]:
        """The lanelet whose centre line is nearest ``xy`` (and, given a heading, runs within 60 degrees
        of it): (index, arc length along it, lateral offset, left positive). (-1, 0, inf) if none."""
        best = (-1, 0.0, np.inf)
        for i, c in enumerate(self.centre):
            s, d, seg = _project(c, xy)
            if heading_rad is not None:
                h = np.arctan2(*(c[seg + 1] - c[seg])[::-1])
                if abs((h - heading_rad + np.pi) % (2 * np.pi) - np.pi) > np.pi / 3:
                    continue
            if abs(d) < abs(best[2]):
                best = (i, s, d)
        return best


@dataclass
class HumanLog:
    name: str
    dt_s: float
    ids: np.ndarray  # (N,) CommonRoad obstacle ids
    length_m: np.ndarray  # (N,)
    width_m: np.ndarray
    xy: np.ndarray  # (T, N, 2), NaN where not valid
    heading_rad: np.ndarray  # (T, N)
    speed_mps: np.ndarray
    accel_mps2: np.ndarray
    valid: np.ndarray  # (T, N) bool

    @property
    def steps(self) -> int:
        return self.xy.shape[0]

    @property
    def vehicles(self) -> int:
        return self.xy.shape[1]

    def span(self, i: int) -> tuple[int, int]:
        """First and last step at which vehicle ``i`` is recorded."""
        t = np.where(self.valid[:, i])[0]
        return (int(t[0]), int(t[-1])) if len(t) else (0, -1)

    def runs(self, i: int) -> list[tuple[int, int]]:
        """The gap-free stretches (first step, last step) of vehicle ``i``'s track."""
        v = np.concatenate([[False], self.valid[:, i], [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(v))
        return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


@dataclass
class Lights:
    xy: np.ndarray  # (K, 2) the light heads
    facing_rad: np.ndarray  # (K,) the way each faces (against the traffic it governs)
    state: np.ndarray  # (T, K) int8: 0 red, 1 amber, 2 green, -1 off

    def at(self, step: int) -> np.ndarray:
        if self.state.shape[0] == 0:
            return np.zeros(0, np.int8)
        return self.state[min(max(step, 0), self.state.shape[0] - 1)]


@dataclass
class HumanScene:
    path: Path
    map: LaneletMap
    log: HumanLog
    lights: Lights
    speed_limit_mps: float | None = None  # the scene's most common posted limit (None: no speed signs)


def load_scene(path: str | Path) -> HumanScene:
    """Read one CommonRoad scenario file; a file that cannot be used raises :class:`HumanDataError`."""
    from commonroad.common.file_reader import CommonRoadFileReader
    path = Path(path)
    if not path.is_file():
        raise HumanDataError(f"scenario file {path} does not exist")
    try:
        scenario, _ = CommonRoadFileReader(str(path)).open()
    except Exception as e:  # noqa: BLE001 - lxml, KeyError, ValueError...: any failure means an unusable file
        raise HumanDataError(f"{path} is not a readable CommonRoad scenario ({type(e).__name__}: {e}); "
                             "give a CommonRoad XML file (format 2018b or 2020a)") from None
    lmap = _lanelet_map(scenario.lanelet_network, path)
    log = _log(scenario, path)
    return HumanScene(path, lmap, log, _lights(scenario.lanelet_network, lmap, log.steps),
                      _posted_limit(scenario.lanelet_network))


# -- conversion --------------------------------------------------------------------------------
def _style(marking) -> int:
    name = getattr(marking, "name", "UNKNOWN")
    if "DASHED" in name:
        return int(LineStyle.DASHED)
    if name in ("NO_MARKING", "UNKNOWN"):
        return -1  # painted as the neighbour relation says (see _lanelet_map)
    return int(LineStyle.SOLID)


def _lanelet_map(net, path: Path) -> LaneletMap:
    lanelets = list(net.lanelets)
    if not lanelets:
        raise HumanDataError(f"{path} holds no lanelets: a scenario needs its road to be replayed")
    index = {ll.lanelet_id: i for i, ll in enumerate(lanelets)}
    n = len(lanelets)
    adj_l, adj_r = np.full(n, -1), np.full(n, -1)
    ls, rs = np.zeros(n, np.int64), np.zeros(n, np.int64)
    polys = []
    for i, ll in enumerate(lanelets):
        if ll.adj_left is not None and ll.adj_left_same_direction and ll.adj_left in index:
            adj_l[i] = index[ll.adj_left]
        if ll.adj_right is not None and ll.adj_right_same_direction and ll.adj_right in index:
            adj_r[i] = index[ll.adj_right]
        ls[i], rs[i] = _style(ll.line_marking_left_vertices), _style(ll.line_marking_right_vertices)
        # unknown paint: dashed between same-direction lanes, solid at the road's edge or centre
        if ls[i] < 0:
            ls[i] = int(LineStyle.DASHED if adj_l[i] >= 0 else LineStyle.SOLID)
        if rs[i] < 0:
            rs[i] = int(LineStyle.DASHED if adj_r[i] >= 0 else LineStyle.SOLID)
        poly = Polygon(np.concatenate([ll.left_vertices, ll.right_vertices[::-1]]))
        polys.append(poly if poly.is_valid else make_valid(poly))
    # the conversion's lanelet bounds leave slivers between neighbours, and NGSIM positions carry
    # decimetres of noise: a car's corner within ROAD_TOLERANCE_M of a lanelet is on the road
    drivable = shapely.union_all(polys).buffer(ROAD_TOLERANCE_M)
    shapely.prepare(drivable)
    return LaneletMap(
        ids=np.array([ll.lanelet_id for ll in lanelets]),
        centre=[np.asarray(ll.center_vertices, float) for ll in lanelets],
        left=[np.asarray(ll.left_vertices, float) for ll in lanelets],
        right=[np.asarray(ll.right_vertices, float) for ll in lanelets],
        left_style=ls, right_style=rs,
        width_m=np.array([float(np.linalg.norm(ll.left_vertices - ll.right_vertices, axis=1).mean()) for ll in lanelets]),
        successors=[[index[s] for s in ll.successor if s in index] for ll in lanelets],
        adj_left=adj_l, adj_right=adj_r, drivable=drivable)


def _log(scenario, path: Path) -> HumanLog:
    obs = [o for o in scenario.dynamic_obstacles if o.prediction is not None]
    if not obs:
        raise HumanDataError(f"{path} holds no recorded vehicles (dynamic obstacles with a trajectory)")
    dt = float(scenario.dt)
    t_end = max(int(o.prediction.final_time_step) for o in obs) + 1
    n = len(obs)
    xy = np.full((t_end, n, 2), np.nan)
    head, speed, acc = (np.full((t_end, n), np.nan) for _ in range(3))
    for j, o in enumerate(obs):
        for st in [o.initial_state, *o.prediction.trajectory.state_list]:
            t = int(st.time_step)
            if not 0 <= t < t_end:
                continue
            xy[t, j] = st.position
            head[t, j] = float(getattr(st, "orientation", np.nan))
            speed[t, j] = float(getattr(st, "velocity", np.nan))
            a = getattr(st, "acceleration", None)
            acc[t, j] = np.nan if a is None else float(a)
    valid = np.all(np.isfinite(xy), axis=2) & np.isfinite(head) & np.isfinite(speed)
    xy[~valid] = np.nan
    # some recordings carry no acceleration: the derivative of the recorded speed stands in
    missing = valid & ~np.isfinite(acc)
    if missing.any():
        d = np.gradient(np.where(valid, speed, 0.0), dt, axis=0) if t_end > 1 else np.zeros_like(speed)
        acc[missing] = d[missing]
    acc[~valid] = np.nan
    return HumanLog(
        name=str(scenario.scenario_id), dt_s=dt,
        ids=np.array([o.obstacle_id for o in obs]),
        length_m=np.array([float(o.obstacle_shape.length) for o in obs]),
        width_m=np.array([float(o.obstacle_shape.width) for o in obs]),
        xy=xy, heading_rad=head, speed_mps=speed, accel_mps2=acc, valid=valid)


_LIGHT_STATES = {"RED": LIGHT_RED, "RED_YELLOW": LIGHT_AMBER, "YELLOW": LIGHT_AMBER, "GREEN": LIGHT_GREEN}


def _lights(net, lmap: LaneletMap, steps: int) -> Lights:
    lanes_of: dict[int, list[int]] = {}
    for i, ll in enumerate(net.lanelets):
        for tl in ll.traffic_lights:
            lanes_of.setdefault(tl, []).append(i)
    xy, facing, states = [], [], []
    for tl in net.traffic_lights:
        lanes = lanes_of.get(tl.traffic_light_id)
        if not lanes or tl.position is None:
            continue
        c = lmap.centre[lanes[0]]
        xy.append(np.asarray(tl.position, float))
        facing.append(float(np.arctan2(*(c[-1] - c[-2])[::-1])) + np.pi)  # it faces the traffic approaching it
        states.append([_LIGHT_STATES.get(tl.get_state_at_time_step(t).name, LIGHT_OFF) if tl.active else LIGHT_OFF
                       for t in range(steps)])
    return Lights(np.array(xy).reshape(-1, 2), np.array(facing),
                  np.array(states, np.int8).T.reshape(steps, len(xy)))


def _posted_limit(net) -> float | None:
    limits = [float(e.additional_values[0]) for ts in net.traffic_signs for e in ts.traffic_sign_elements
              if e.traffic_sign_element_id.name == "MAX_SPEED" and e.additional_values]
    if not limits:
        return None
    values, counts = np.unique(np.round(limits, 2), return_counts=True)
    return float(values[np.argmax(counts)])


def _project(poly: np.ndarray, xy: np.ndarray) -> tuple[float, float, int]:
    """Arc length, signed lateral offset (left positive) and segment index of ``xy`` on ``poly``."""
    a, b = poly[:-1], poly[1:]
    d = b - a
    seg_len2 = np.maximum((d ** 2).sum(1), 1e-12)
    u = np.clip(((xy - a) * d).sum(1) / seg_len2, 0.0, 1.0)
    p = a + u[:, None] * d
    dist = np.linalg.norm(xy - p, axis=1)
    k = int(np.argmin(dist))
    s = float(np.concatenate([[0.0], np.cumsum(np.sqrt(seg_len2))])[k] + u[k] * np.sqrt(seg_len2[k]))
    side = np.sign(d[k, 0] * (xy[1] - a[k, 1]) - d[k, 1] * (xy[0] - a[k, 0]))
    return s, float(side * dist[k]), k
