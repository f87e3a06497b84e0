"""Ground truth from the world: a constructed scene gives a known description, a constructed track
known meta-actions, waypoints and decision."""
from __future__ import annotations

import numpy as np
import pytest

from dualdrive.vlm.answer import Finding, SceneObject
from dualdrive.vlm.text import LaneRelations, TrackTick, decide, describe_scene, lane_changes, plan_from_track
from dualdrive.world.scenarios import ScenarioConfig
from dualdrive.world.traffic import Kind
from dualdrive.world.world import World

TICKS_PER_S = 10


@pytest.fixture(scope="module")
def highway() -> World:
    """A highway world with every NPC removed, stepped once so the ego is located on its lane."""
    w = World(ScenarioConfig(family="highway"), 0)  # the ego starts in lane 2 of 4
    w.traffic.veh.active[:] = False
    w.step(np.zeros(3))
    assert w.lane_here >= 0 and w.map.left[w.lane_here] >= 0 and w.map.right[w.lane_here] >= 0
    return w


def _place(w: World, row: int, lane: int, ahead_m: float, kind: Kind, speed_mps: float, accel_mps2: float = 0.0):
    ve = w.traffic.veh
    s_ego, _ = w.map.hw_lanes[lane].local_coordinates(w.ego_xy)
    ve.lane[row], ve.s[row], ve.lat[row], ve.v[row], ve.acc[row] = lane, s_ego + ahead_m, 0.0, speed_mps, accel_mps2
    ve.kind[row], ve.length[row], ve.width[row], ve.active[row] = int(kind), 4.6, 1.9, True
    ve.lc_from[row], ve.forced_lane[row] = -1, -1


def test_a_constructed_scene_is_described(highway):
    w = highway
    lane = w.lane_here
    right = int(w.map.right[lane])
    _place(w, 0, lane, 21.0, Kind.CAR, 0.0)  # a stopped car 20 m ahead in the ego's lane
    _place(w, 1, right, 41.0, Kind.STALLED, 0.0)  # a stalled car in the neighbouring lane
    try:
        facts = describe_scene(w, LaneRelations(w.map))
    finally:
        w.traffic.veh.active[:2] = False
    assert (facts.road, facts.light) == ("highway", "none")
    assert SceneObject("car", 20, "ahead", "in my lane") in facts.objects
    assert SceneObject("stalled car", 40, "ahead", "in the right lane") in facts.objects
    assert facts.findings == [Finding("car", "stopped"), Finding("stalled car", "right lane")]


def test_an_emergency_vehicle_behind_is_named_though_not_seen(highway):
    w = highway
    _place(w, 0, w.lane_here, -21.0, Kind.EMERGENCY, w.ego_speed + 5.0)
    try:
        facts = describe_scene(w, LaneRelations(w.map))
    finally:
        w.traffic.veh.active[0] = False
    assert facts.objects == [SceneObject("ambulance", 20, "behind", "in my lane")]
    assert facts.findings == [Finding("ambulance", "behind")]


def _track(speeds_mps: list[float], lanes: list[int] | None = None, phase: str = "drive") -> list[TrackTick]:
    x, out = 0.0, []
    for k, v in enumerate(speeds_mps):
        out.append(TrackTick(k / TICKS_PER_S, (x, 0.0), 0.0, v, lanes[k] if lanes else 0, phase))
        x += v / TICKS_PER_S
    return out


def _ramp(*knots_mps: float) -> list[float]:
    """Speeds at 10 Hz, linear between one knot a second."""
    return list(np.interp(np.arange(10 * (len(knots_mps) - 1) + 1) / 10, np.arange(len(knots_mps)), knots_mps))


def test_braking_for_a_red_light_is_slow_down_then_stop():
    track = _track(_ramp(10, 6, 2, 0, 0, 0))
    light = [Finding("light", "red")]
    actions, waypoints = plan_from_track(track, 0, TICKS_PER_S, np.zeros(len(track), np.int8), light)
    assert actions == ("slow down", "stop", "wait")
    assert waypoints == ((8, 0), (12, 0), (13, 0), (13, 0))
    assert decide(actions, light) == "stop at the red light"
    # the same braking with a pedestrian in the way is yielding
    ped = [Finding("pedestrian", "crossing")]
    actions, _ = plan_from_track(track, 0, TICKS_PER_S, np.zeros(len(track), np.int8), ped)
    assert actions == ("yield", "wait") and decide(actions, ped) == "yield to the pedestrian"


def test_a_lane_change_is_read_from_the_lanes_driven():
    class TwoLanes:  # lane 0 has lane 1 on its left
        left, right = np.array([1, -1]), np.array([-1, 0])
    lanes = [0] * 15 + [1, 0, 1] + [1] * 33  # one tick of flicker at the boundary is ignored
    changes = lane_changes(np.array(lanes), TwoLanes())
    assert np.flatnonzero(changes).tolist() == [17] and changes[17] == 1
    track = _track([20.0] * len(lanes), lanes)
    blocker = [Finding("stalled car", "my lane")]
    actions, _ = plan_from_track(track, 0, TICKS_PER_S, changes, blocker)
    assert actions == ("keep lane", "change lane left", "keep lane")
    assert decide(actions, blocker) == "change lane left to pass the stalled car"
    with pytest.raises(ValueError, match="needs 40 more"):
        plan_from_track(track, 20, TICKS_PER_S, changes, [])
