"""A constructed CommonRoad scenario with known answers, written with commonroad-io's own writer.

A straight two-lane road along +x (lane centres at y = 0 and y = 3.5, 200 m long, 3.5 m wide) and
four recorded cars over 6 s at 0.1 s:

- car 10 (the ego in most tests): right lane, x = 20 + 10 t, 10 m/s, no acceleration;
- car 20: right lane, 30 m ahead of car 10 and 2 m/s slower (it is caught up with in ~15 s);
- car 30: left lane, standing at x = 40;
- car 40: left lane, from x = 60 at 5 m/s, accelerating at 1 m/s^2.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DT_S = 0.1
STEPS = 61
LANE_W_M = 3.5


def _car(obstacle_id: int, x0: float, y: float, v: float, a: float = 0.0):
    from commonroad.geometry.obstacle_shapes.rect_obstacle_shape import RectObstacleShape
    from commonroad.prediction.prediction import TrajectoryPrediction
    from commonroad.scenario.obstacle import DynamicObstacle, ObstacleType
    from commonroad.scenario.state import ExtendedPMState, InitialState
    from commonroad.scenario.trajectory import Trajectory
    shape = RectObstacleShape(width=1.8, length=4.5)
    st = lambda t: dict(position=np.array([x0 + v * t * DT_S + a * (t * DT_S) ** 2 / 2, y]),  # noqa: E731
                        velocity=v + a * t * DT_S, orientation=0.0, acceleration=a)
    init = InitialState(time_step=0, yaw_rate=0.0, slip_angle=0.0, **st(0))
    traj = Trajectory(1, [ExtendedPMState(time_step=t, **st(t)) for t in range(1, STEPS)])
    return DynamicObstacle(obstacle_id, ObstacleType.CAR, shape, init, TrajectoryPrediction(traj, shape))


def write_straight_road(path: Path) -> Path:
    from commonroad.common.common_lanelet import LaneletType, LineMarking
    from commonroad.common.file_writer import CommonRoadFileWriter, OverwriteExistingFile
    from commonroad.common.util import FileFormat
    from commonroad.planning.planning_problem import PlanningProblemSet
    from commonroad.scenario.lanelet import Lanelet
    from commonroad.scenario.scenario import Scenario, ScenarioID, Tag
    x = np.linspace(0.0, 200.0, 41)
    line = lambda y: np.column_stack([x, np.full_like(x, y)])  # noqa: E731
    sc = Scenario(DT_S, ScenarioID(country_id="ZAM", map_name="Straight", map_id=1))
    right = Lanelet(line(LANE_W_M / 2), line(0.0), line(-LANE_W_M / 2), 1, adjacent_left=2,
                    adjacent_left_same_direction=True, line_marking_left_vertices=LineMarking.DASHED,
                    line_marking_right_vertices=LineMarking.SOLID, lanelet_type={LaneletType.HIGHWAY})
    left = Lanelet(line(1.5 * LANE_W_M), line(LANE_W_M), line(LANE_W_M / 2), 2, adjacent_right=1,
                   adjacent_right_same_direction=True, line_marking_left_vertices=LineMarking.SOLID,
                   line_marking_right_vertices=LineMarking.DASHED, lanelet_type={LaneletType.HIGHWAY})
    sc.add_objects([right, left])
    sc.add_objects([_car(10, 20.0, 0.0, 10.0), _car(20, 50.0, 0.0, 8.0), _car(30, 40.0, LANE_W_M, 0.0),
                    _car(40, 60.0, LANE_W_M, 5.0, 1.0)])
    CommonRoadFileWriter(sc, PlanningProblemSet(), author="dualdrive tests", affiliation="", source="constructed", tags={Tag.SIMULATED},
                         file_format=FileFormat.XML).write_to_file(str(path), OverwriteExistingFile.ALWAYS)
    return path


@pytest.fixture(scope="session")
def straight_road(tmp_path_factory) -> Path:
    return write_straight_road(tmp_path_factory.mktemp("cr") / "ZAM_Straight-1_1_T-1.xml")
