"""The modular baseline's lane and drivable-area estimate, and the lane changes it allows, on
constructed inputs with known answers: camera images of painted roads rendered by the sensor's own
camera, and blocked lanes for the planner."""
from __future__ import annotations

import numpy as np
import pytest

from dualdrive.agents.modular.lanes import (PixelClass, LaneEstimate, LaneTracker, classify_pixels, frenet,
                                            ground_table, lane_evidence)
from dualdrive.agents.modular.perception import OdometryPose, Track, Tracker
from dualdrive.agents.modular.planning import LatticePlanner, PlannerConfig
from dualdrive.agents.modular.prediction import constant_velocity
from dualdrive.sensors.camera import Camera, CameraConfig
from dualdrive.sensors.scene import Boxes, LineStyle, SensorScene

CAMERA = Camera(CameraConfig())
TABLE = ground_table(CAMERA.cfg)
LANE_M = 3.5


def _line(y: float) -> np.ndarray:
    x = np.arange(-50.0, 201.0)  # marking points 1 m apart, as the world paints them
    return np.column_stack([x, np.full(len(x), y)])


def _road(lines: list[tuple[float, LineStyle]], paved: tuple[float, float]) -> tuple[list, list]:
    road = [np.array([[-50, paved[0]], [200, paved[0]], [200, paved[1]], [-50, paved[1]]], float)]
    return [(_line(y), int(style)) for y, style in lines], road


# our lane between y = -1.75 and 1.75, a lane of our direction to the left, the centre line at 5.25,
# then the other direction's two lanes; kerb and grass on the right
TWO_WAY = _road([(-1.75, LineStyle.SOLID), (-2.0, LineStyle.KERB), (1.75, LineStyle.DASHED), (5.25, LineStyle.SOLID),
                 (8.75, LineStyle.DASHED), (12.25, LineStyle.SOLID)], (-1.75, 12.25))


def _estimate(road: tuple[list, list], ego_y: float = 0.0, path_y: float = 0.0, frames: int = 12) -> tuple:
    """Drive along x at 10 m/s for ``frames`` ticks, the route's path along y = path_y."""
    markings, surface = road
    path = _line(path_y)[20:160]  # from x = -30
    tracker = LaneTracker()
    for k in range(frames):
        x = 1.0 * k
        scene = SensorScene(np.array([x, ego_y]), 0.0, 10.0, 0.0, 0.0, 1, 5.0, 2.0, Boxes.empty(), markings, surface)
        cls = classify_pixels(CAMERA.render(scene))
        s_ego = x + 30.0
        est = tracker.update(lane_evidence(cls, TABLE, frenet(path, TABLE.xy_ego + scene.ego_xy), s_ego))
    return est, ego_y - path_y


def test_ground_table_back_projects_what_the_camera_projects():
    scene = SensorScene(np.zeros(2), 0.0, 0.0, 0.0, 0.0, 1, 5.0, 2.0, Boxes.empty())
    for xy in ([6.0, 0.0], [12.0, 3.0], [20.0, -5.0]):
        uv = CAMERA.project(CAMERA.to_camera(scene, np.array([[*xy, 0.0]])))[0]
        k = np.argmin((TABLE.cols + 0.5 - uv[0]) ** 2 + (TABLE.rows + 0.5 - uv[1]) ** 2)
        # one pixel spans up to 5 % of the range along the view, much less across it
        assert np.linalg.norm(TABLE.xy_ego[k] - xy) < 0.05 * xy[0] + 0.1


def test_pixels_are_classed_by_colour():
    scene = SensorScene(np.zeros(2), 0.0, 0.0, 0.0, 0.0, 1, 5.0, 2.0, Boxes.empty(), *TWO_WAY)
    cls = classify_pixels(CAMERA.render(scene))
    assert (cls[-1, 80:110] == PixelClass.ASPHALT).all()  # straight ahead, at the bottom of the frame
    assert (cls[-1, -5:] == PixelClass.GRASS).all()  # beyond the kerb on the right
    assert (cls == PixelClass.PAINT).sum() > 100 and (cls == PixelClass.KERB).sum() > 20


def test_lines_at_known_offsets_give_those_offsets_and_styles():
    est, _ = _estimate(TWO_WAY)
    expect = np.array([-1.75, 1.75, 5.25, 8.75])
    near = np.abs(est.lines_d_m[:, None] - expect[None]).min(0)
    assert (near < 0.05 + 0.02 * np.abs(expect)).all(), est.lines_d_m  # a far line is seen only far ahead
    style = {round(float(d)): bool(s) for d, s in zip(est.lines_d_m, est.lines_solid)}
    assert style[-2] and not style[2] and style[5] and not style[9]  # solid, dashed, solid, dashed
    assert est.lane_width_m == pytest.approx(3.5, abs=0.1)
    # our lane and the one to its left; beyond the solid centre line the lanes run the other way
    assert est.centres_d_m == pytest.approx([0.0, 3.5], abs=0.1)
    assert est.lanes_beside(0.0) == (1, 0) and est.lanes_beside(3.4) == (0, 1)
    assert len(est.kerbs_d_m) == 1 and est.kerbs_d_m[0] == pytest.approx(-2.0, abs=0.4)
    right, left = est.drivable_d_m
    assert right == pytest.approx(-1.75, abs=0.4) and left > 9.0  # grass beyond the kerb; asphalt to the left


def test_the_ego_offset_from_its_lane_centre_is_measured_not_assumed():
    # the route runs 0.6 m left of the lane's centre and the ego 0.3 m right of it
    est, d_ego = _estimate(TWO_WAY, ego_y=-0.3, path_y=0.6)
    k = est.lane_index(d_ego)
    assert k is not None
    assert d_ego - est.centres_d_m[k] == pytest.approx(-0.3, abs=0.1)
    right, left = est.boundaries(d_ego)
    assert (right, left) == pytest.approx((-1.75 - 0.6, 1.75 - 0.6), abs=0.1)


def test_a_three_lane_carriageway_counts_its_lanes():
    # lanes at y = -3.5, 0 and 3.5 between solid edges, dashed between them
    road = _road([(-5.25, LineStyle.SOLID), (-1.75, LineStyle.DASHED), (1.75, LineStyle.DASHED),
                  (5.25, LineStyle.SOLID)], (-5.25, 5.25))
    est, _ = _estimate(road)
    assert est.centres_d_m == pytest.approx([-3.5, 0.0, 3.5], abs=0.15)
    assert est.lanes_beside(0.0) == (1, 1)


def test_lanes_fade_without_camera_frames():
    markings, surface = TWO_WAY
    scene = SensorScene(np.zeros(2), 0.0, 0.0, 0.0, 0.0, 1, 5.0, 2.0, Boxes.empty(), markings, surface)
    path = _line(0.0)[20:160]
    tracker = LaneTracker()
    for _ in range(10):
        est = tracker.update(lane_evidence(classify_pixels(CAMERA.render(scene)), TABLE,
                                           frenet(path, TABLE.xy_ego), 30.0))
    assert est.valid  # standing still, the dashes seen are enough
    for _ in range(5):
        assert tracker.update(None).valid  # a few missing frames: held
    for _ in range(60):
        est = tracker.update(None)
    assert not est.valid and not LaneEstimate().valid


# -- planning with the lane estimate ------------------------------------------------------------
def _track(xy, v, length=4.5, width=1.9) -> Track:
    t = Track(0, Tracker()._new_filter(np.asarray(xy, float)), length, width, 0.0, 1.5)
    t.kf.x[2:, 0] = v
    return t


def _path():
    return np.column_stack([np.arange(-10.0, 160.0), np.zeros(170)])


def _lanes(centres, drivable=(-1.75, 8.75)) -> LaneEstimate:
    return LaneEstimate(lane_width_m=LANE_M, centres_d_m=np.array(centres, float), drivable_d_m=drivable)


def test_a_stalled_car_ahead_with_a_free_lane_beside_gives_a_lane_change_and_back():
    stalled = constant_velocity([_track([40.0, 0.0], [0.0, 0.0])])
    planner = LatticePlanner(PlannerConfig())
    traj = planner.plan(OdometryPose(), 12.0, _path(), stalled, 15.0, [], lanes=_lanes([0.0, LANE_M]))
    assert traj.offset_lanes == 1.0 and traj.safe and not traj.static_ahead
    # past the car, the route's lane is free again: back into it
    past = OdometryPose(np.array([50.0, LANE_M]), 0.0)
    traj = planner.plan(past, 12.0, _path(), stalled, 15.0, [], lanes=_lanes([-LANE_M, 0.0]))
    assert traj.offset_lanes == 0.0 and abs(traj.xy[-1, 1]) < 0.3


@pytest.mark.parametrize("centres, drivable", [([0.0], (-1.75, 8.75)),  # a solid line: no lane of ours beside
                                               ([0.0, LANE_M], (-1.75, 2.0))])  # a lane seen, but not its ground
def test_no_lane_change_where_no_drivable_lane_of_our_direction_is_seen(centres, drivable):
    stalled = constant_velocity([_track([40.0, 0.0], [0.0, 0.0])])
    traj = LatticePlanner().plan(OdometryPose(), 12.0, _path(), stalled, 15.0, [], lanes=_lanes(centres, drivable))
    assert traj.offset_lanes == 0.0 and traj.static_ahead and traj.xy[-1, 0] + 2.5 < 40.0 - 2.25


def test_no_lane_change_into_a_car_coming_from_behind_nor_round_a_moving_car():
    stalled_and_overtaker = constant_velocity([_track([40.0, 0.0], [0.0, 0.0]), _track([-12.0, LANE_M], [25.0, 0.0])])
    traj = LatticePlanner().plan(OdometryPose(), 12.0, _path(), stalled_and_overtaker, 15.0, [],
                                 lanes=_lanes([0.0, LANE_M]))
    assert traj.offset_lanes == 0.0  # it waits for the car behind to pass
    slow = constant_velocity([_track([30.0, 0.0], [6.0, 0.0])])
    traj = LatticePlanner().plan(OdometryPose(), 12.0, _path(), slow, 15.0, [], lanes=_lanes([0.0, LANE_M]))
    assert traj.offset_lanes == 0.0  # a slower car ahead is followed, not overtaken
    traj = LatticePlanner().plan(OdometryPose(), 12.0, _path(), constant_velocity([_track([40.0, 0.0], [0.0, 0.0])]),
                                 15.0, [], lanes=_lanes([0.0, LANE_M]), may_change=False)
    assert traj.offset_lanes == 0.0  # the caller forbids it (a junction ahead)


def test_a_faster_car_behind_in_our_lane_is_no_leader():
    follower = constant_velocity([_track([-10.0, 0.0], [20.0, 0.0])])
    traj = LatticePlanner().plan(OdometryPose(), 12.0, _path(), follower, 15.0, [])
    assert traj.speed_mps[-1] >= 12.0 - 0.5  # no braking for where it will be once it has passed


@pytest.mark.slow
def test_the_modular_agent_changes_lanes_round_a_stalled_car_on_the_highway():
    from dualdrive.bench.episode import EpisodeJob, run_job
    from dualdrive.bench.suites import load_suite
    sc = next(s for s in load_suite("longtail").scenarios if s.name == "highway_stalled_vehicle")
    row = run_job("modular", EpisodeJob(sc.name, 0, sc.config.to_dict()))
    assert row["success"] and not row["blocked"] and row["route_completion"] > 99.0
