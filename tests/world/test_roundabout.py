"""The urban roundabout: its lane graph, the give-way rule at its entries and what navigation says."""
import numpy as np
import pytest

from dualdrive.world.geometry import box_corners, boxes_overlap
from dualdrive.world.route import Command
from dualdrive.world.scenarios import ScenarioConfig
from dualdrive.world.traffic import Kind
from dualdrive.world.world import World


def _urban(seed: int = 0, **kw) -> World:
    return World(ScenarioConfig(family="urban", **kw), seed)


def _rb_lanes(w: World) -> list:
    return [ln for ln in w.map.lanes if ln.roundabout >= 0]


def test_ring_is_a_counter_clockwise_loop_with_give_way_entries():
    m = _urban().map
    assert len(m.roundabouts) == 1
    centre, radius, _ = m.roundabouts[0]
    lanes = _rb_lanes(_urban())
    arcs = [ln for ln in lanes if ln.key[0].startswith("u") and "o" in ln.key[0] and "o" in ln.key[1]
            and "x" not in ln.key[1]]
    assert len(arcs) == 4
    for ln in arcs:
        p = m.lane_points(ln.id)
        assert np.allclose(np.linalg.norm(p - centre, axis=1), radius, atol=0.05)
        # counter-clockwise (right-hand traffic): the cross product of radius and heading is positive
        h = m.heads[m.offset[ln.id]]
        r = p[0] - centre
        assert r[0] * np.sin(h) - r[1] * np.cos(h) > 0
        # the ring goes on round, or leaves by an exit
        assert any(m.lanes[x] in arcs for x in ln.successors)
    entries = [ln for ln in lanes if ln.give_way_s >= 0]
    assert len(entries) == 8  # two approach lanes on each of four legs
    for e in entries:
        # circulating traffic on the arc arriving at the merge point has priority
        arriving = m.lanes[e.merge_arc]
        assert arriving in arcs and set(e.successors) == set(arriving.successors)
        # the give-way line lies outside the ring, the merge point on it
        p = m.lane_points(e.id)
        line = p[int(round(e.give_way_s / m.step[e.id]))]
        assert np.linalg.norm(line - centre) > radius + 2.75
        assert np.linalg.norm(p[-1] - centre) == pytest.approx(radius, abs=0.05)
        assert m.lanes[e.sibling].sibling == e.id and m.lanes[e.sibling].merge_arc == e.merge_arc


def test_navigation_names_the_turn_taken_at_the_roundabout_once():
    for seed in range(10):
        w = _urban(seed)
        m = w.map
        on = [x for x in w.layout.route_lanes if m.lanes[x].roundabout >= 0]
        if not on:
            continue
        cmds = w.route.command[np.isin(w.route.lane, on)]
        turn = {int(c) for c in cmds} - {int(Command.FOLLOW_LANE)}
        assert len(turn) <= 1 and not turn & {int(Command.CHANGE_LANE_LEFT), int(Command.CHANGE_LANE_RIGHT)}
        # the command is announced before the entry: on the approach lane
        before = w.route.lane == w.layout.route_lanes[w.layout.route_lanes.index(on[0]) - 1]
        assert set(w.route.command[before].tolist()) & {int(Command.GO_STRAIGHT), int(Command.TURN_LEFT),
                                                         int(Command.TURN_RIGHT)}
        return
    pytest.fail("no route through the roundabout in seeds 0-9")


def test_config_can_turn_the_roundabout_off():
    assert not _rb_lanes(_urban(roundabout=False))


def test_npcs_circulate_without_running_into_each_other():
    """Dense traffic through the roundabout for a minute: no two vehicles on its lanes ever overlap,
    and traffic flows (vehicles get round and out)."""
    w = _urban(3, traffic_density=2.0)
    w.ego.position = np.array([-500.0, -500.0])  # out of the way
    rb = np.array([ln.id for ln in _rb_lanes(w)])
    ve = w.traffic.veh
    seen_in, left = set(), set()
    for _ in range(600):
        w.step([0.0, 0.0, 1])
        on = np.where(ve.active & np.isin(ve.lane, rb) & ~np.isin(ve.kind, [Kind.STALLED, Kind.WORKZONE]))[0]
        left |= seen_in - set(on.tolist())
        seen_in |= set(on.tolist())
        xy, h = w.traffic.poses()
        boxes = box_corners(xy[on], h[on], ve.length[on], ve.width[on])
        for k in range(len(on)):
            hit = boxes_overlap(boxes[k], boxes[k + 1:])
            assert not hit.any(), f"t={w.t:.1f}: vehicles {on[k]} and {on[k + 1:][hit]} overlap on the roundabout"
    assert len(left) >= 10


def _put(w: World, i: int, lane: int, s: float, v: float, next_lane: int) -> None:
    ve = w.traffic.veh
    ve.active[i], ve.lane[i], ve.s[i], ve.lat[i], ve.lc_from[i] = True, lane, s, 0.0, -1
    ve.v[i], ve.v0[i], ve.kind[i], ve.release_t[i], ve.forced_lane[i] = v, 12.0, int(Kind.CAR), 0.0, -1
    ve.next_lane[i] = next_lane


@pytest.mark.parametrize("ring_car", [True, False])
def test_an_entering_car_gives_way_to_circulating_traffic(ring_car):
    w = _urban(0, traffic_density=0.0, pedestrian_density=0.0)
    w.traffic.veh.active[:] = False
    w.ego.position = np.array([-500.0, -500.0])
    m = w.map
    entry = next(ln for ln in _rb_lanes(w) if ln.give_way_s >= 0 and ln.movement == 2)  # an outer entry
    arc = m.lanes[entry.merge_arc]
    _put(w, 0, entry.id, 2.0, 3.0, arc.successors[0])
    if ring_car:
        _put(w, 1, arc.id, 2.0, 6.0, arc.successors[0])  # circulating, 18 m from the merge point
    ve = w.traffic.veh
    front_max = 0.0
    for _ in range(100):
        w.step([0.0, 0.0, 1])
        if ve.lane[0] == entry.id and ve.lane[1] == arc.id:  # while the ring car has not passed
            front_max = max(front_max, ve.s[0] + ve.length[0] / 2)
    if ring_car:
        assert front_max < entry.give_way_s + 0.5  # waited at its line while the ring car passed
        assert ve.lane[1] != arc.id and ve.lane[0] != entry.id  # it passed, then the entering car went
    else:
        assert ve.lane[0] != entry.id  # nothing to wait for: it is in the ring
