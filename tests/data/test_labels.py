"""Constructed cases with known answers for the privileged labels: the light ahead, the semantic BEV
(layout, the ego's lane, actors), the actor boxes and the DART noise process."""
import numpy as np
import pytest

from dualdrive.agents.base import Control
from dualdrive.data.bev import SemanticBev, cell_of, paint_boxes
from dualdrive.data.dart import DartConfig, DartNoise
from dualdrive.data.format import BEV_X_RANGE_M, BEV_Y_RANGE_M, BevClass, LightState
from dualdrive.data.labels import actor_boxes, light_state_ahead
from dualdrive.sensors.lidar import bev_histogram
from dualdrive.sensors.scene import BoxClass, Boxes
from dualdrive.world.geometry import ego_to_world
from dualdrive.world.map import LaneKind
from dualdrive.world.scenarios import ScenarioConfig
from dualdrive.world.signals import Light
from dualdrive.world.world import World


@pytest.fixture(scope="module")
def urban() -> World:
    return World(ScenarioConfig(family="urban"), 0)


@pytest.fixture(scope="module")
def highway() -> World:
    return World(ScenarioConfig(family="highway"), 0)


def _first_signal_entry(w: World) -> tuple[float, int]:
    r, m = w.route, w.map
    for i in range(1, len(r.lane)):
        ln = r.lane[i]
        if ln != r.lane[i - 1] and m.kind[ln] == LaneKind.CONNECTOR and m.signal_group[ln] >= 0:
            return float(r.progress_m[i]), int(m.signal_group[ln])
    pytest.skip("no signalised junction on this route")


def test_light_state_is_the_signal_at_the_next_stop_line_on_the_route(urban):
    w = urban
    entry_m, group = _first_signal_entry(w)
    saved_progress, saved_lights = w.progress_m, w.lights.copy()
    try:
        w.progress_m = entry_m - 30.0
        for light, label in ((Light.RED, LightState.RED), (Light.AMBER, LightState.YELLOW),
                             (Light.GREEN, LightState.GREEN)):
            w.lights[group] = light
            assert light_state_ahead(w) == label
        w.lights[group] = Light.RED
        w.progress_m = entry_m - 60.0  # beyond 50 m: not labelled yet
        assert light_state_ahead(w) == LightState.NONE
        w.progress_m = entry_m + 1.0  # past the stop line it no longer governs the ego
        assert light_state_ahead(w) != LightState.RED or _first_signal_entry_after(w, entry_m)
    finally:
        w.progress_m, w.lights = saved_progress, saved_lights


def _first_signal_entry_after(w: World, after_m: float) -> bool:
    r, m = w.route, w.map
    sel = (r.progress_m > after_m) & (r.progress_m <= after_m + 51.0)
    lanes = r.lane[sel]
    return bool(np.any((m.kind[lanes] == LaneKind.CONNECTOR) & (m.signal_group[lanes] >= 0)))


def test_no_light_on_a_motorway(highway):
    assert light_state_ahead(highway) == LightState.NONE


def test_semantic_bev_uses_the_lidar_bev_cell_layout():
    # a LiDAR point at (x, y) in the ego frame falls in LiDAR cell (2r, 2c) .. (2r+1, 2c+1) of semantic cell (r, c)
    for x, y in ((10.2, 5.3), (-15.7, -31.6), (47.4, 31.9), (0.1, -0.1)):
        hist = bev_histogram(np.array([[x, y, 0.0, 1.0]], np.float32), BEV_X_RANGE_M, BEV_Y_RANGE_M, 0.5)
        rl, cl = np.argwhere(hist[0] > 0)[0]
        r, c = cell_of(np.array([[x, y]]))
        assert (rl // 2, cl // 2) == (r[0], c[0])
    r, c = cell_of(np.array([[0.0, 0.0]]))
    assert (r[0], c[0]) == (16, 32)  # the ego sits 16 rows from the back, in the middle column


def test_the_ego_lane_is_route_and_the_road_is_road(highway):
    w = highway
    bev = SemanticBev(w.map).rasterise(w, (np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)))
    assert bev.shape == (64, 64) and bev.dtype == np.uint8
    lane_w = float(w.map.width[w.map.locate(w.ego_xy, w.ego_heading)[0]])
    rows = [16 + k for k in range(0, 20, 4)]  # the ego's cell and 4..16 m ahead along its lane
    assert all(bev[r, 32] == BevClass.ROUTE for r in rows)
    beside = cell_of(np.array([[0.5, lane_w], [0.5, -lane_w]]))  # the neighbouring lanes: drivable
    assert all(bev[r, c] in (BevClass.ROAD, BevClass.ROUTE) for r, c in zip(*beside))
    assert (bev == BevClass.OFF_ROAD).any() and (bev == BevClass.ROAD).any()


def test_actors_are_painted_with_their_class(highway):
    w = highway
    at = lambda x, y: ego_to_world(np.array([[x, y]]), w.ego_xy, w.ego_heading)[0]  # noqa: E731
    xy = np.array([at(12.0, 0.0), at(20.0, -8.0), at(30.0, 10.0)])
    boxes = (xy, np.full(3, w.ego_heading), np.array([4.6, 0.6, 0.4]), np.array([1.9, 0.6, 0.4]),
             np.array([BoxClass.CAR, BoxClass.PEDESTRIAN, BoxClass.CONE]))
    bev = SemanticBev(w.map).rasterise(w, boxes)
    assert bev[16 + 12, 32] == BevClass.VEHICLE
    # its 4.6 m length covers x in [9.7, 14.3]: the cells with centres 10.5 .. 13.5 m ahead, not 9.5 or 14.5
    assert all(bev[16 + k, 32] == BevClass.VEHICLE for k in (10, 11, 12, 13))
    assert bev[16 + 9, 32] != BevClass.VEHICLE and bev[16 + 14, 32] != BevClass.VEHICLE
    assert bev[16 + 20, 32 - 8] == BevClass.PEDESTRIAN  # smaller than a cell: its cell still marked
    assert bev[16 + 30, 32 + 10] == BevClass.STATIC
    # the default boxes are the sensor scene's ground truth: every vehicle centre on the grid is painted
    from dualdrive.sensors.scene import scene_from_world
    from dualdrive.world.geometry import world_to_ego
    b = scene_from_world(w).boxes
    bev = SemanticBev(w.map).rasterise(w)
    cars = b.xy[b.cls == BoxClass.CAR]
    r, c = cell_of(world_to_ego(cars, w.ego_xy, w.ego_heading))
    on = (r >= 0) & (r < 64) & (c >= 0) & (c < 64)
    assert on.any(), "no vehicle on the grid at the start of highway seed 0"
    assert np.all(bev[r[on], c[on]] == BevClass.VEHICLE)


def test_paint_boxes_respects_orientation():
    grid = np.zeros((64, 64), np.uint8)
    paint_boxes(grid, np.array([[10.0, 0.0]]), np.array([np.pi / 2]), np.array([8.0]), np.array([2.0]), 7)
    rows, cols = np.nonzero(grid == 7)
    assert np.ptp(cols) >= 7 and np.ptp(rows) <= 2  # 8 m along y (columns), 2 m along x (rows)


def test_actor_boxes_in_the_ego_frame_nearest_first():
    ego_xy, ego_h = np.array([100.0, 50.0]), np.pi / 2  # facing north
    b = Boxes(np.array([[100.0, 80.0], [90.0, 55.0], [100.0, 120.0]]), np.array([np.pi / 2, np.pi, 0.0]),
              np.array([4.6, 0.6, 4.0]), np.array([1.9, 0.6, 1.8]), np.ones(3), np.array([[0.0, 10.0], [1.0, 0.0], [0.0, 0.0]]),
              np.array([BoxClass.CAR, BoxClass.PEDESTRIAN, BoxClass.TRUCK]))
    rows, n = actor_boxes(b, ego_xy, ego_h)
    assert n == 2 and rows.shape == (128, 7) and rows.dtype == np.float32 and not rows[2:].any()  # 70 m: out
    np.testing.assert_allclose(rows[0], [5.0, 10.0, np.pi / 2, 0.6, 0.6, 1.0, BoxClass.PEDESTRIAN], atol=1e-5)
    np.testing.assert_allclose(rows[1], [30.0, 0.0, 0.0, 4.6, 1.9, 10.0, BoxClass.CAR], atol=1e-5)


def test_dart_noise_is_seeded_correlated_and_scaled():
    base = Control(0.5, 0.0, 1)
    assert DartNoise(DartConfig(0.0), 3, 0.1).apply(base, 10.0) is base
    runs = []
    for _ in range(2):
        n = DartNoise(DartConfig(1.0), 3, 0.1)
        runs.append(np.array([n.apply(base, 10.0).to_action() for _ in range(4000)]))
    np.testing.assert_array_equal(runs[0], runs[1])  # the episode seed fixes the noise
    acc = runs[0][:, 0] - 0.5
    assert 0.8 < acc.std() < 1.2  # sigma in m/s^2
    lag1 = np.corrcoef(acc[:-1], acc[1:])[0, 1]
    assert 0.7 < lag1 < 0.95  # correlated over a few ticks (exp(-0.1 / 0.5) = 0.82)
    wide = DartConfig(1.0, max_steer_noise_rad=0.25)  # the angle rule without the car-park cap
    slow, fast = DartNoise(wide, 3, 0.1), DartNoise(wide, 3, 0.1)
    steer_slow = np.array([slow.apply(base, 10.0).steer_rad for _ in range(4000)])
    steer_fast = np.array([fast.apply(base, 30.0).steer_rad for _ in range(4000)])
    assert steer_fast.std() < steer_slow.std() / 5  # the same lateral push is a smaller angle at speed
    parked = DartNoise(DartConfig(1.0), 3, 0.1)  # default cap: a few degrees in a car park, not a quarter lock
    steer_parked = np.array([parked.apply(base, 1.0).steer_rad for _ in range(400)])
    assert np.abs(steer_parked).max() <= DartConfig().max_steer_noise_rad + 1e-9 and steer_parked.std() > 0.01
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        DartConfig(-0.1)
