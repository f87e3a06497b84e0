"""Ground-truth answers from the privileged world state and the expert's own future driving.

Two halves, because the plan can only be known afterwards:

- :func:`describe_scene` reads the world at a frame (the expert's privilege: every actor, the lane
  graph, the lights, the long-tail events) and returns the scene description and analysis;
- :func:`plan_from_track` reads what the expert then actually did over the next seconds (its speed,
  lane changes and driving phase, one :class:`TrackTick` per world tick) and returns the
  meta-actions and coarse waypoints; :func:`decide` words the decision.

:func:`label_frame` puts them together into a :class:`~dualdrive.vlm.answer.VLMAnswer`.

What is described is what the front camera can see (ahead, inside its field of view, within
``VIEW_RANGE_M``), with one exception taken from DriveVLM's examples: an emergency vehicle behind
is named because it changes the plan, although no front camera shows it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dualdrive.data.format import LightState
from dualdrive.data.labels import light_state_ahead
from dualdrive.vlm.answer import (DISTANCE_STEP_M, MAX_OBJECTS, WAYPOINT_HORIZONS_S, Finding, SceneObject,
                                  VLMAnswer)
from dualdrive.world.geometry import world_to_ego
from dualdrive.world.map import LaneKind, LaneMap
from dualdrive.world.traffic import Kind
from dualdrive.world.world import EGO_LENGTH_M, World

VIEW_RANGE_M = 60.0  # beyond this a car is a few pixels in the 192 x 96 camera frame
VIEW_HALF_FOV_RAD = np.deg2rad(45.0)  # the front camera's 90 degree field of view
EMERGENCY_RANGE_M = 90.0  # as the expert: an emergency vehicle this close is made way for
PEDESTRIAN_RANGE_M = 30.0  # pedestrians this close are named
PEDESTRIAN_CRITICAL_M = 20.0  # ... and matter when this close and
PEDESTRIAN_CROSSING_Y_M = 6.0  # walking across within this of the ego's line, or
PEDESTRIAN_NEAR_M = 3.5  # standing this close to it
CROSSING_MIN_MPS = 0.2
LEAD_MIN_WATCH_M = 25.0  # the car ahead matters within this, or 3 s of driving when faster
LEAD_WATCH_S = 3.0
STOPPED_MPS = 0.5
BRAKING_MPS2 = -1.5
SLOWER_MPS = 2.0
CLOSE_GAP_M = 8.0
MAX_FINDINGS = 3
ADJACENT_NAMED_M = 40.0  # cars in the neighbouring lanes are worth naming this close
MIN_AHEAD_M = 1.0  # nearer than this (centre to centre) a thing is beside the camera, not in its frame
# where a blocker is -> which lane the analysis says it closes
_LANE_FINDING = {"in my lane": "my lane", "in the left lane": "left lane", "in the right lane": "right lane"}
SUCCESSOR_HOPS, PREDECESSOR_HOPS = 3, 2  # lanes counted as "my lane" along the lane graph
# meta-actions from the expert's motion over each 1 s step
STILL_MPS = 0.3  # below this the ego stands
SPEED_CHANGE_MPS = 1.0  # a speed change of more than this within a second is accelerating / slowing down
LANE_HOLD_TICKS = 5  # a lane must hold this many ticks to count (no flicker at a lane boundary)


@dataclass(frozen=True)
class TrackTick:
    """The ego at one world tick, as the data generator records it."""

    t_s: float
    xy_world: tuple[float, float]
    heading_rad: float
    speed_mps: float
    lane: int  # the lane the world locates the ego on (-1: none, e.g. in a parking spot)
    phase: str  # the expert's driving phase (drive, leave_spot, approach_spot, park, done)


@dataclass
class SceneFacts:
    road: str
    light: str
    objects: list[SceneObject] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


@dataclass
class _Candidate:
    obj: SceneObject
    priority: int  # lower first
    finding: Finding | None = None


# -- lanes -----------------------------------------------------------------------------------------
class LaneRelations:
    """Which lanes count as the ego's, its left and its right neighbour (along the lane graph)."""

    def __init__(self, lane_map: LaneMap) -> None:
        self.m = lane_map
        self.preds: dict[int, list[int]] = {ln.id: [] for ln in lane_map.lanes}
        for ln in lane_map.lanes:
            for nxt in ln.successors:
                self.preds[nxt].append(ln.id)

    def sets(self, ego_lane: int) -> tuple[set[int], set[int], set[int]]:
        if ego_lane < 0:
            return set(), set(), set()
        same = {ego_lane}
        for hops, nxt in ((SUCCESSOR_HOPS, lambda x: self.m.lanes[x].successors), (PREDECESSOR_HOPS, self.preds.get)):
            frontier = {ego_lane}
            for _ in range(hops):
                frontier = {y for x in frontier for y in nxt(x)}
                same |= frontier
        left = {int(self.m.left[x]) for x in same if self.m.left[x] >= 0} - same
        right = {int(self.m.right[x]) for x in same if self.m.right[x] >= 0} - same
        return same, left, right


def _place(lane: int, y_ego_m: float, sets: tuple[set[int], set[int], set[int]]) -> str:
    same, left, right = sets
    if lane in same:
        return "in my lane"
    if lane in left:
        return "in the left lane"
    if lane in right:
        return "in the right lane"
    return "on the left" if y_ego_m > 0 else "on the right"


def _rounded(dist_m: float) -> int:
    return int(round(abs(dist_m) / DISTANCE_STEP_M)) * DISTANCE_STEP_M


def _in_view(xy_ego: np.ndarray) -> np.ndarray:
    x, y = xy_ego[:, 0], xy_ego[:, 1]
    return (x > MIN_AHEAD_M) & (np.hypot(x, y) < VIEW_RANGE_M) & (np.abs(np.arctan2(y, x)) < VIEW_HALF_FOV_RAD)


# -- the scene -------------------------------------------------------------------------------------
def road_type(world: World) -> str:
    """highway / urban / parking, from where the ego is (a P2P route passes through all three)."""
    m, lane = world.map, world.lane_here
    if lane >= 0 and m.kind[lane] in (LaneKind.AISLE, LaneKind.ACCESS):
        return "parking"
    if lane < 0:  # in a parking spot or off the lanes: in a lot if inside one's area
        for lot in m.lots.values():
            if _inside(world.ego_xy, lot.polygon_xy):
                return "parking"
        return "parking" if world.config.family == "parking" else "urban"
    if world.config.family in ("highway", "motorway") or m.kind[lane] == LaneKind.RAMP:
        return "highway"
    return "highway" if m.speed_limit[lane] >= 20.0 else "urban"  # 72 km/h and up: a motorway


def _inside(p: np.ndarray, poly: np.ndarray) -> bool:
    from matplotlib.path import Path as MplPath
    return bool(MplPath(poly).contains_point((float(p[0]), float(p[1]))))


LIGHT_WORDS = {LightState.NONE: "none", LightState.GREEN: "green", LightState.YELLOW: "yellow", LightState.RED: "red"}


def describe_scene(world: World, relations: LaneRelations, goal_spot: int = -1) -> SceneFacts:
    """Road, light, the objects worth naming (at most ``MAX_OBJECTS``) and the findings about them."""
    sets = relations.sets(world.lane_here)
    light = LIGHT_WORDS[light_state_ahead(world)]
    cands = _vehicle_candidates(world, sets) + _pedestrian_candidates(world, sets)
    cands += _work_zone_candidates(world, sets) + _spot_candidates(world, goal_spot)
    findings = [Finding("light", light)] if light in ("red", "yellow") else []
    cands.sort(key=lambda c: (c.priority, c.obj.distance_m))
    findings += [c.finding for c in cands if c.finding is not None]
    findings = list(dict.fromkeys(findings))[:MAX_FINDINGS]  # one of each, most important first
    chosen = [c for c in cands if c.finding in findings] + [c for c in cands if c.finding not in findings]
    objects = list(dict.fromkeys(c.obj for c in chosen))[:MAX_OBJECTS]
    return SceneFacts(road_type(world), light, objects, findings)


def _vehicle_candidates(world: World, sets) -> list[_Candidate]:
    ve = world.traffic.veh
    xy, _ = world.traffic.poses()
    idx = np.where(ve.active & (ve.kind != Kind.WORKZONE))[0]
    if len(idx) == 0:
        return []
    rel = world_to_ego(xy[idx], world.ego_xy, world.ego_heading)
    seen = _in_view(rel)
    v_ego = abs(world.ego_speed)
    out, lead_done = [], False
    for k in np.argsort(np.hypot(rel[:, 0], rel[:, 1])):
        i, (x, y) = idx[k], rel[k]
        kind = int(ve.kind[i])
        if kind == Kind.EMERGENCY and np.hypot(x, y) < EMERGENCY_RANGE_M:
            place = _place(int(ve.lane[i]), y, sets)
            ahead = x > 0
            obj = SceneObject("ambulance", _rounded(x), "ahead" if ahead else "behind", place)
            out.append(_Candidate(obj, 0, Finding("ambulance", "ahead" if ahead else "behind")))
            continue
        if not seen[k]:
            continue
        place = _place(int(ve.lane[i]), y, sets)
        name = {Kind.TRUCK: "truck", Kind.STALLED: "stalled car"}.get(Kind(kind), "car")
        obj = SceneObject(name, _rounded(x), "ahead", place)
        if kind == Kind.STALLED:
            f = Finding("stalled car", _LANE_FINDING[place]) if place in _LANE_FINDING else None
            out.append(_Candidate(obj, 1 if f else 5, f))
        elif kind == Kind.CUTIN and (ve.forced_lane[i] >= 0 or ve.lc_from[i] >= 0) and place != "in my lane":
            out.append(_Candidate(obj, 0, Finding("car", "cutting in " + ("left" if y > 0 else "right"))))
        elif place == "in my lane" and not lead_done:
            lead_done = True
            gap = x - (ve.length[i] + EGO_LENGTH_M) / 2
            state = _lead_state(float(ve.v[i]), float(ve.acc[i]), v_ego, gap)
            out.append(_Candidate(obj, 1 if state else 2, Finding(name, state) if state else None))
        elif place in ("in the left lane", "in the right lane") and x < ADJACENT_NAMED_M:
            out.append(_Candidate(obj, 4))
        else:
            out.append(_Candidate(obj, 6))
    return out


def _lead_state(v_mps: float, acc_mps2: float, v_ego_mps: float, gap_m: float) -> str | None:
    if gap_m > max(LEAD_MIN_WATCH_M, LEAD_WATCH_S * v_ego_mps):
        return None
    if v_mps < STOPPED_MPS:
        return "stopped"
    if acc_mps2 < BRAKING_MPS2:
        return "braking"
    if v_mps < v_ego_mps - SLOWER_MPS:
        return "slower"
    if gap_m < CLOSE_GAP_M:
        return "close"
    return None


def _pedestrian_candidates(world: World, sets) -> list[_Candidate]:
    pxy, ph, _, _, pids = world.actors()["pedestrian"]
    if len(pxy) == 0:
        return []
    rel = world_to_ego(pxy, world.ego_xy, world.ego_heading)
    p = world.traffic.ped
    walking = (p.state[pids] == 1) & ~world.traffic.ped_halted[pids] & (p.speed[pids] > CROSSING_MIN_MPS)
    across = np.abs(np.sin(ph - world.ego_heading)) > np.sin(np.deg2rad(30.0))  # walking across the ego's heading
    out = []
    for k in np.where(_in_view(rel) & (np.hypot(rel[:, 0], rel[:, 1]) < PEDESTRIAN_RANGE_M))[0]:
        x, y = rel[k]
        lane, _, _ = world.map.locate(pxy[k], None, max_dist_m=1.8)
        obj = SceneObject("pedestrian", _rounded(x), "ahead", _place(lane, y, sets))
        close = x < PEDESTRIAN_CRITICAL_M
        if close and walking[k] and across[k] and abs(y) < PEDESTRIAN_CROSSING_Y_M:
            out.append(_Candidate(obj, 0, Finding("pedestrian", "crossing")))
        elif close and abs(y) < PEDESTRIAN_NEAR_M:
            out.append(_Candidate(obj, 1, Finding("pedestrian", "near")))
        else:
            out.append(_Candidate(obj, 5))
    return out


def _work_zone_candidates(world: World, sets) -> list[_Candidate]:
    """Road works are named by their cones: where the taper starts and which lane it closes."""
    ve = world.traffic.veh
    out = []
    for i in np.where(ve.active & (ve.kind == Kind.WORKZONE))[0]:
        start, _ = world.map.pose(ve.lane[i:i + 1], ve.s[i:i + 1] - ve.length[i:i + 1] / 2)
        end, _ = world.map.pose(ve.lane[i:i + 1], ve.s[i:i + 1] + ve.length[i:i + 1] / 2)
        x0, y0 = world_to_ego(start, world.ego_xy, world.ego_heading)[0]
        x1, _ = world_to_ego(end, world.ego_xy, world.ego_heading)[0]
        if x1 < 0 or x0 > VIEW_RANGE_M:  # passed, or not in sight yet
            continue
        place = _place(int(ve.lane[i]), y0, sets)
        obj = SceneObject("cones", _rounded(max(x0, 0.0)), "ahead", place)
        out.append(_Candidate(obj, 1, Finding("cones", _LANE_FINDING[place]) if place in _LANE_FINDING else None))
    return out


def _spot_candidates(world: World, goal_spot: int) -> list[_Candidate]:
    if goal_spot < 0:
        return []
    sp = world.map.spots[goal_spot]
    x, y = world_to_ego(sp.center_xy[None], world.ego_xy, world.ego_heading)[0]
    side = "left" if y > 0 else "right"
    obj = SceneObject("free spot", _rounded(x), "ahead" if x >= 0 else "behind", f"on the {side}")
    return [_Candidate(obj, 2, Finding("free spot", side))]


# -- the plan --------------------------------------------------------------------------------------
def lane_changes(lanes: np.ndarray, lane_map: LaneMap) -> np.ndarray:
    """Per tick: +1 where the ego crossed into its left neighbour, -1 into its right, else 0. Runs of a
    lane shorter than ``LANE_HOLD_TICKS`` (flicker where two lanes meet) are ignored."""
    out = np.zeros(len(lanes), np.int8)
    runs: list[tuple[int, int]] = []  # (lane, first tick)
    k = 0
    while k < len(lanes):
        j = k
        while j < len(lanes) and lanes[j] == lanes[k]:
            j += 1
        if lanes[k] >= 0 and j - k >= LANE_HOLD_TICKS:
            runs.append((int(lanes[k]), k))
        k = j
    for (a, _), (b, t) in zip(runs, runs[1:]):
        if lane_map.left[a] == b:
            out[t] = 1
        elif lane_map.right[a] == b:
            out[t] = -1
    return out


def plan_from_track(track: list[TrackTick], i0: int, ticks_per_s: int, changes: np.ndarray,
                    findings: list[Finding]) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    """Meta-actions (one per second, repeats merged) and waypoints of the next seconds from tick ``i0``.
    ``track`` must reach ``len(WAYPOINT_HORIZONS_S)`` seconds past ``i0``."""
    n = len(WAYPOINT_HORIZONS_S)
    if i0 + n * ticks_per_s >= len(track):
        raise ValueError(f"the track has {len(track)} ticks; tick {i0} needs {n * ticks_per_s} more")
    speed = np.abs(np.array([tk.speed_mps for tk in track]))
    subjects = {f.subject for f in findings}
    actions: list[str] = []
    for k in range(n):
        a, b = i0 + k * ticks_per_s, i0 + (k + 1) * ticks_per_s
        act = _step_action(speed[a:b + 1], changes[a + 1:b + 1], [tk.phase for tk in track[a:b + 1]])
        # slowing for a pedestrian is yielding, unless a red light already stops the ego
        if act in ("slow down", "stop") and "pedestrian" in subjects and "light" not in subjects:
            act = "yield"
        if not actions or actions[-1] != act:
            actions.append(act)
    t0 = track[i0]
    xy = np.array([track[i0 + h * ticks_per_s].xy_world for h in WAYPOINT_HORIZONS_S])
    ego = world_to_ego(xy, np.array(t0.xy_world), t0.heading_rad)
    waypoints = tuple((int(round(x)) + 0, int(round(y)) + 0) for x, y in ego)  # + 0: no "-0"
    return tuple(actions), waypoints


def _step_action(speed: np.ndarray, changes: np.ndarray, phases: list[str]) -> str:
    if np.any(changes != 0):
        return "change lane left" if changes[changes != 0][-1] > 0 else "change lane right"
    if sum(p == "park" for p in phases) * 2 > len(phases):
        return "park"
    if speed.max() < STILL_MPS:
        return "wait"
    if speed[-1] < STILL_MPS:
        return "stop"
    if speed[-1] - speed[0] > SPEED_CHANGE_MPS:
        return "accelerate"
    if speed[-1] - speed[0] < -SPEED_CHANGE_MPS:
        return "slow down"
    return "keep lane"


def decide(actions: tuple[str, ...], findings: list[Finding]) -> str:
    """The decision sentence: the most telling meta-action of the plan and the finding that explains it."""
    by = {f.subject: f for f in findings}
    acts = set(actions)
    change = next((a for a in actions if a.startswith("change lane")), None)
    slowing = bool(acts & {"slow down", "stop", "wait"})
    verb = "stop" if acts & {"stop", "wait"} else "slow down"
    blocker = next((f for f in findings if f.subject in ("stalled car", "cones") and f.state == "my lane"), None)
    if "park" in acts:
        return "park in the free spot"
    if change and ("stalled car" in by or "cones" in by):
        return f"{change} to pass the {'stalled car' if 'stalled car' in by else 'road works'}"
    if change and "ambulance" in by:
        return f"{change} to make way for the ambulance"
    if change:
        return f"{change} to follow the route"
    if "yield" in acts:
        return "yield to the pedestrian"
    if slowing and "light" in by:
        return f"stop at the {by['light'].state} light" if verb == "stop" else \
            f"slow down for the {by['light'].state} light"
    if "car" in by and by["car"].state.startswith("cutting in"):
        return "slow down for the car cutting in" if slowing else "keep a safe gap to the car cutting in"
    if slowing and blocker is not None:
        return f"{verb} behind the stalled car" if blocker.subject == "stalled car" else f"{verb} for the road works"
    lead = by.get("car") or by.get("truck")
    if slowing and lead is not None:
        return f"{'wait' if actions[0] == 'wait' else verb} behind the {lead.subject} ahead"
    if slowing:
        return {"stop": "stop and give way", "slow down": "slow down for the road ahead"}[verb] \
            if actions[0] != "wait" else "wait for the way to clear"
    if "accelerate" in acts:
        return "accelerate, the way ahead is clear"
    return "keep lane and follow the traffic"


def label_frame(facts: SceneFacts, track: list[TrackTick], i0: int, ticks_per_s: int,
                changes: np.ndarray) -> VLMAnswer:
    actions, waypoints = plan_from_track(track, i0, ticks_per_s, changes, facts.findings)
    return VLMAnswer(facts.road, facts.light, tuple(facts.objects), tuple(facts.findings), actions,
                     decide(actions, facts.findings), waypoints)
