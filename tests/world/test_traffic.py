"""Traffic-kernel behaviours that keep merging safe: what a lane-changer may do, what it sees of the ego."""
import numpy as np

from dualdrive.world.scenarios import ScenarioConfig
from dualdrive.world.traffic import Kind
from dualdrive.world.world import World


def _empty_highway() -> World:
    w = World(ScenarioConfig(family="highway", traffic_density=0.0), 0)
    w.traffic.veh.active[:] = False
    return w


def _put(w: World, i: int, lane: int, s: float, v: float, lat: float = 0.0, lc_from: int = -1) -> None:
    ve = w.traffic.veh
    ve.active[i], ve.lane[i], ve.s[i], ve.lat[i], ve.lc_from[i] = True, lane, s, lat, lc_from
    ve.v[i], ve.v0[i], ve.kind[i], ve.release_t[i], ve.forced_lane[i] = v, max(v, 1.0), int(Kind.CAR), 0.0, -1
    ve.next_lane[i] = w.traffic._pick_next(lane)


def test_a_corner_of_the_ego_in_the_next_lane_makes_traffic_there_brake():
    w = _empty_highway()
    m = w.map
    lane, left = 5, int(w.map.left[5])  # a 4-lane section; ``left`` is the lane beside it
    xy, h = m.pose(np.array([lane]), np.array([60.0]), np.array([0.9]))  # centre still in its own lane
    w.ego.position, w.ego.heading, w.ego.speed = xy[0], float(h[0]) + 0.3, 0.0  # nose angled into ``left``
    _put(w, 0, left, 20.0, 15.0)  # 40 m behind, closing at 15 m/s
    w.step([0.0, 0.0, 1])
    assert w.traffic.veh.acc[0] < -1.0  # it brakes for the nose, not only for a centre across the line
    # with the ego straight in its own lane the same car drives on
    w2 = _empty_highway()
    xy, h = m.pose(np.array([lane]), np.array([60.0]))
    w2.ego.position, w2.ego.heading, w2.ego.speed = xy[0], float(h[0]), 0.0
    _put(w2, 0, left, 20.0, 15.0)
    w2.step([0.0, 0.0, 1])
    assert w2.traffic.veh.acc[0] > -0.5


def test_a_lane_changer_does_not_slide_into_a_car_beside_it():
    def lat_after(with_neighbour: bool) -> float:
        w = _empty_highway()
        w.ego.position = np.array([0.0, -200.0])  # out of the way
        _put(w, 0, 6, 60.0, 1.0, lat=-3.0, lc_from=7)  # moving from lane 7 into lane 6, mostly still in 7
        if with_neighbour:
            _put(w, 1, 6, 61.0, 1.0)  # already in lane 6, alongside
        for _ in range(20):
            w.step([0.0, 0.0, 1])
        return float(w.traffic.veh.lat[0])

    assert lat_after(True) == -3.0
    assert lat_after(False) > -2.5  # the same change goes ahead when nothing is beside it
