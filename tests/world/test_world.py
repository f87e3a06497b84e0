import numpy as np
import pytest

from dualdrive.world.map import LaneKind
from dualdrive.world.monitor import is_parked, parking_errors
from dualdrive.world.scenarios import ConfigError, EventConfig, ScenarioConfig
from dualdrive.world.world import World


def _rollout(family: str, seed: int, steps: int = 60) -> np.ndarray:
    w = World(ScenarioConfig(family=family, events=EventConfig.all_on(family)), seed)
    trace = []
    for k in range(steps):
        w.step([0.5, 0.02 * np.sin(k / 10), 1])
        xy, h = w.traffic.poses()
        trace.append(np.concatenate([w.ego_xy, [w.ego_heading], xy[w.traffic.veh.active].ravel(), w.traffic.ped.xy.ravel()]))
    return np.concatenate(trace)


@pytest.mark.parametrize("family", ["highway", "urban", "parking", "p2p", "motorway"])
def test_same_seed_same_episode_bit_for_bit(family):
    a, b = _rollout(family, 7), _rollout(family, 7)
    assert a.shape == b.shape and np.array_equal(a, b)
    assert not np.array_equal(a[:3], _rollout(family, 8)[:3]) or family in ("highway", "motorway")


def test_motorway_has_exactly_the_vehicles_asked_for():
    for n in (10, 50, 400):
        w = World(ScenarioConfig(family="motorway", vehicles=n), 0)
        assert int(w.traffic.veh.active.sum()) == n == len(w.traffic.veh)
        assert len({ln.key[:2] for ln in w.map.lanes}) == 1 and len(w.map.lanes) == 4
    with pytest.raises(ConfigError, match="motorway"):
        ScenarioConfig(family="highway", vehicles=10)


def test_route_is_connected_and_reaches_its_goal():
    for seed in range(5):
        w = World(ScenarioConfig(family="p2p"), seed)
        m, lanes = w.map, w.layout.route_lanes
        for a, b in zip(lanes[:-1], lanes[1:]):
            assert b in m.lanes[a].successors or m.is_lane_change(a, b)
        kinds = [m.lanes[x].kind for x in lanes]
        assert LaneKind.RAMP in kinds and LaneKind.CONNECTOR in kinds  # motorway and city streets
        assert m.lanes[lanes[w.layout.arrival_index + 1]].kind == LaneKind.AISLE  # arrival: the lot entrance
        # the route polyline has no jumps bigger than a lane-change span
        assert np.max(np.linalg.norm(np.diff(w.route.xy, axis=0), axis=1)) < 35.0


def test_collision_is_detected():
    w = World(ScenarioConfig(family="highway", traffic_density=0.0), 0)
    w.traffic.veh.active[:] = False
    # put a stopped car 10 m ahead of the ego on its lane and drive into it
    lane, s, _ = w.map.locate(w.ego_xy, w.ego_heading)
    ve = w.traffic.veh
    ve.active[0], ve.lane[0], ve.s[0], ve.v[0], ve.v0[0], ve.kind[0] = True, lane, s + 12.0, 0.0, 0.0, 3
    for _ in range(20):
        w.step([0.0, 0.0, 1])
    kinds = [i["type"] for i in w.summary()["infractions"]]
    assert kinds.count("collision_vehicle") == 1  # one contact, reported once
    assert w.summary()["success"] is False


def test_parking_tolerance():
    spot = np.array([10.0, 5.0])
    assert is_parked(*parking_errors(spot + [0.3, 0.3], np.pi / 2 + np.radians(9), spot, np.pi / 2), 0.0)
    # reversed in counts too
    assert is_parked(*parking_errors(spot, -np.pi / 2, spot, np.pi / 2), 0.0)
    assert not is_parked(*parking_errors(spot + [0.4, 0.4], np.pi / 2, spot, np.pi / 2), 0.0)
    assert not is_parked(*parking_errors(spot, np.pi / 2 + np.radians(11), spot, np.pi / 2), 0.0)
    assert not is_parked(*parking_errors(spot, np.pi / 2, spot, np.pi / 2), 0.5)


def test_bad_config_is_rejected_with_the_valid_choices():
    with pytest.raises(ConfigError, match="valid: highway"):
        ScenarioConfig(family="moon")
    with pytest.raises(ConfigError, match="traffic_density"):
        ScenarioConfig(traffic_density=-1)
    with pytest.raises(ConfigError, match="unknown scenario key"):
        ScenarioConfig.from_dict({"famly": "urban"})
    with pytest.raises(ConfigError, match="do not apply"):
        ScenarioConfig(family="parking", events={"cut_in": True})
    with pytest.raises(ValueError, match="NaN"):
        World(ScenarioConfig(family="parking"), 0).step([np.nan, 0.0, 1])


def test_route_progress_picks_up_after_a_stretch_off_the_route():
    # the ego drives 60 m well beside its route (a parallel turn lane, say) and comes back onto it:
    # progress resumes where it is, rather than staying stuck behind the search window
    w = World(ScenarioConfig(family="highway", traffic_density=0.0), 0)
    w.traffic.veh.active[:] = False
    r = w.route
    k0 = int(np.searchsorted(r.progress_m, 100.0))
    k1 = int(np.searchsorted(r.progress_m, 160.0))
    w.ego.speed = 10.0
    for k in range(k0 + 1):  # along the route up to 100 m
        w.ego.position = r.xy[k].copy()
        w._update_progress()
    assert abs(w.progress_m - 100.0) < 2.0
    for k in range(k0, k1):  # 60 m at 10 m/s, 12 m to the side of the route
        w.ego.position = r.xy[k] + np.array([0.0, 12.0])
        w._update_progress()
    w.ego.position = r.xy[k1].copy()
    w._update_progress()
    assert abs(w.progress_m - 160.0) < 5.0  # (a fixed window would have left it at 100 m)
