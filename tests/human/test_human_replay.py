"""Replaying a recorded scene: clips, the ego on the log or driven, the route, the sensors on it."""
from __future__ import annotations

import numpy as np
import pytest

from dualdrive.human.replay import Clip, ReplayEnv, cut_clips, steer_for_yaw_rate
from dualdrive.human.scene import load_scene
from dualdrive.sensors.suite import SensorSuite
from dualdrive.world.route import Command


@pytest.fixture(scope="module")
def scene(straight_road):
    return load_scene(straight_road)


def test_clips_need_history_and_future(scene):
    clips = cut_clips(scene, history_s=1.0, future_s=3.0, stride_s=1.0)
    # 6 s tracks: t0 from 1 s to 3 s, each of the 4 cars
    assert [c.t0 for c in clips if c.ego == 0] == [10, 20, 30]
    assert len(clips) == 12 and all(c.start == c.t0 - 10 for c in clips)
    assert cut_clips(scene, history_s=3.0, future_s=4.0) == []


def test_log_mode_holds_the_ego_on_the_human_and_gives_the_usual_observation(scene):
    clip = cut_clips(scene)[0]  # car 10 at t0 = 1 s
    env = ReplayEnv(clip)
    obs, info = env.reset()
    assert env.observation_space.contains(obs)
    assert info["dt_s"] == pytest.approx(0.1)  # the log's step: how many ticks a stateful agent counts per second
    for _ in range(clip.history):
        obs, _, term, trunc, _ = env.step(np.array([-8.0, 0.5, 1.0]))  # ignored: the human drives
    np.testing.assert_allclose(env.ego_xy, [30.0, 0.0])
    assert obs["speed_mps"][0] == pytest.approx(10.0) and obs["yaw_rate_rps"][0] == pytest.approx(0.0)
    # the route is where the human went: straight on along its lane, 8 m apart
    np.testing.assert_allclose(obs["route_xy_ego_m"][:, 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(np.diff(obs["route_xy_ego_m"][:, 0]), 8.0, atol=1.01)
    assert int(obs["command"][0]) == Command.FOLLOW_LANE
    assert not term and not trunc


def test_drive_mode_moves_the_ego_by_the_action_and_sees_the_collision(scene):
    clip = Clip(scene, 0, 10, 10, 50)  # car 10, planning at 1 s, driven to the end of the recording
    env = ReplayEnv(clip, ego_mode="drive")
    env.reset()
    for _ in range(10):  # the history: on the log whatever the action
        env.step(np.array([-8.0, 0.5, 1.0]))
    np.testing.assert_allclose(env.ego_xy, [30.0, 0.0], atol=1e-6)
    for _ in range(10):
        env.step(np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(env.ego_xy, [30.0 + 10.0 * 1.0, 0.0], atol=1e-6)  # 10 m/s held for 1 s
    assert not env.ego_collides()
    for _ in range(60):  # full throttle into car 20 ahead (8 m/s, 30 m ahead at the start)
        _, _, _, trunc, _ = env.step(np.array([4.0, 0.0, 1.0]))
        if env.ego_collides() or trunc:
            break
    assert env.ego_collides()


def test_sensors_render_the_replayed_scene(scene):
    clip = cut_clips(scene)[0]
    env = SensorSuite(ReplayEnv(clip))
    obs, _ = env.reset(seed=0)
    assert obs["camera_front_rgb"].shape[2] == 3 and int(obs["lidar_valid"][0]) == 1
    pts = obs["lidar_points_m"][:int(obs["lidar_num_points"][0])]
    # LiDAR hits above the ground on car 20 (30 m ahead, same lane) and car 30 (left lane, 30 m ahead)
    body = pts[pts[:, 2] > 0.3]
    assert ((np.abs(body[:, 0] - 27.75) < 1.0) & (np.abs(body[:, 1]) < 1.0)).any()
    assert ((np.abs(body[:, 0] - 17.75) < 1.0) & (np.abs(body[:, 1] - 3.5) < 1.0)).any()
    assert int(obs["radar_num_returns"][0]) >= 1


def test_steering_for_a_yaw_rate_inverts_the_bicycle():
    from highway_env.vehicle.kinematics import Vehicle
    v = Vehicle(None, np.zeros(2), 0.0, 8.0)
    v.action = {"steering": steer_for_yaw_rate(0.3, 8.0), "acceleration": 0.0}
    v.step(0.1)
    assert v.heading / 0.1 == pytest.approx(0.3, rel=1e-3)


def test_no_clip_crosses_a_gap_in_a_track(straight_road):
    s = load_scene(straight_road)
    s.log.valid[25:28, 0] = False  # car 10 unrecorded for 0.3 s
    s.log.xy[25:28, 0] = np.nan
    assert s.log.runs(0) == [(0, 24), (28, 60)]
    t0 = [c.t0 for c in cut_clips(s, history_s=1.0, future_s=1.0, stride_s=1.0) if c.ego == 0]
    assert t0 == [10, 38, 48]
    env = ReplayEnv([c for c in cut_clips(s, 1.0, 1.0) if c.ego == 0][1])
    obs, _ = env.reset()
    assert np.isfinite(obs["route_xy_ego_m"]).all()


def test_reactive_cars_brake_for_an_ego_that_stops_and_logged_ones_run_into_it(scene):
    """Car 20 as the ego brakes to a stop from t0; car 10 comes up behind at 10 m/s from 23.5 m back.
    Replayed as logged it drives into the ego; handed to IDM once the ego leaves its log, it stops."""
    clip = Clip(scene, 1, 10, 10, 50)
    hits, gaps = {}, {}
    for others in ("log", "reactive"):
        env = ReplayEnv(clip, ego_mode="drive", others=others)
        env.reset()
        hit = False
        while True:
            _, _, _, trunc, _ = env.step(np.array([-6.0, 0.0, 1.0]))
            hit |= env.ego_collides()
            if trunc:
                break
        xy, _, speed, present = env.others
        hits[others], gaps[others] = hit, float(env.ego_xy[0] - xy[0, 0])
    assert hits == {"log": True, "reactive": False}
    assert 4.5 < gaps["reactive"] < 15.0 and speed[0] < 1.0  # (nearly) stopped behind the ego, not far back


def test_reactive_replay_of_the_human_is_the_log(scene):
    """The ego on its log never deviates, so no car is handed over: the scene is the recording."""
    clip = Clip(scene, 0, 10, 10, 50)
    env = ReplayEnv(clip, ego_mode="log", others="reactive")
    env.reset()
    for _ in range(50):
        env.step(np.zeros(3))
        xy, heading, speed, present = env.others
        t = env.step_index
        np.testing.assert_allclose(xy[present], env.log.xy[t, present])
        np.testing.assert_allclose(speed[present], env.log.speed_mps[t, present])
    assert not env.traffic.on_idm.any()
    with pytest.raises(ValueError, match="reactive"):
        ReplayEnv(clip, others="idm")
