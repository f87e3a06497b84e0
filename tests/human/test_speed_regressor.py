"""The privileged speed regressor on the constructed straight road (tests/human/conftest.py)."""
from __future__ import annotations

import numpy as np
import pytest

from dualdrive.human.openloop import evaluate_human_openloop
from dualdrive.human.pack import HumanDataError
from dualdrive.human.replay import cut_clips
from dualdrive.human.scene import load_scene
from dualdrive.human.speed_regressor import (ABLATIONS, FEATURES, GROUPS, NO_LEAD_GAP_M, ONE_FRAME, RegressorConfig, clip_features, covered_m,
                                             evaluate_speed_regressor)


@pytest.fixture(scope="module")
def clips(straight_road):
    return cut_clips(load_scene(straight_road), stride_s=0.5)


def _clip(clips, ego_id: int, t0: int):
    return next(c for c in clips if int(c.scene.log.ids[c.ego]) == ego_id and c.t0 == t0)


def test_features_of_a_clip_read_the_log(clips):
    f = dict(zip(FEATURES, clip_features(_clip(clips, 10, 10))))
    # car 10 at x = 30 (10 m/s); car 20 at x = 58 in the lane at 8 m/s; in the left lane car 30 standing at
    # x = 40 and car 40 at x = 65.5 doing 6 m/s: both within the neighbour stretch, mean 3 m/s
    assert f["v_now"] == pytest.approx(10.0) and f["v_1s_ago"] == pytest.approx(10.0) and f["accel_now"] == 0.0
    assert f["lead_gap_m"] == pytest.approx(28.0 - 4.5, abs=1e-6) and f["lead_rel_speed"] == pytest.approx(-2.0)
    assert f["lead_present"] == 1.0 and f["lead2_gap_m"] == NO_LEAD_GAP_M
    assert f["left_lane_rel_speed"] == pytest.approx(3.0 - 10.0) and f["right_lane_rel_speed"] == 0.0
    lone = dict(zip(FEATURES, clip_features(_clip(clips, 40, 10))))  # nobody ahead of car 40 in the left lane
    assert f["route_turn_20m_rad"] == pytest.approx(0.0, abs=1e-9) and f["route_turn_40m_rad"] == pytest.approx(0.0, abs=1e-9)
    assert lone["lead_present"] == 0.0 and lone["lead_gap_m"] == NO_LEAD_GAP_M
    assert lone["accel_now"] == pytest.approx(1.0) and lone["v_1s_ago"] == pytest.approx(lone["v_now"] - 1.0)


def test_the_route_bend_is_the_heading_change_ahead():
    from dualdrive.human.speed_regressor import route_turns
    # straight for 30 m, then a quarter circle of 20 m radius to the left (31.4 m), then straight up
    arc = np.linspace(0.0, np.pi / 2, 60)
    path = np.vstack([np.column_stack([np.linspace(0, 30, 31), np.zeros(31)]),
                      np.column_stack([30 + 20 * np.sin(arc[1:]), 20 - 20 * np.cos(arc[1:])]),
                      np.column_stack([np.full(30, 50.0), 20 + np.linspace(1, 30, 30)])])
    path += np.random.default_rng(0).normal(0, 0.03, path.shape)  # the log's jitter
    at20, at40 = route_turns(path, 0.0)
    assert at20 == pytest.approx(0.0, abs=0.03)  # 20-25 m: still straight
    assert at40 == pytest.approx(10.0 / 20 + 2.5 / 20, abs=0.05)  # the 5 m chord from 40 m: 10-15 m into the arc
    assert route_turns(path, 70.0)[1] == pytest.approx(0.0, abs=0.03)  # past the bend: straight again


def test_the_light_is_the_nearest_ahead_that_faces_the_ego():
    from types import SimpleNamespace

    from dualdrive.human.scene import Lights
    from dualdrive.human.speed_regressor import LIGHT_AHEAD_M, light_ahead
    path = np.column_stack([np.linspace(0, 100, 201), np.zeros(201)])  # east along y = 0
    # a red head 40 m ahead facing west (the ego), a green one 25 m ahead facing north (the cross street), an
    # amber one 60 m ahead facing the ego, one behind, and one 30 m ahead but 20 m to the side
    xy = np.array([[40.0, 3.0], [25.0, 3.0], [60.0, -2.0], [-10.0, 0.0], [30.0, 20.0], [20.0, 2.0]])
    facing = np.array([np.pi, np.pi / 2, np.pi, np.pi, np.pi, np.pi])
    state = np.array([[0, 2, 1, 0, 2, -1]], np.int8)  # the last, 20 m ahead and facing the ego, is switched off
    clip = SimpleNamespace(t0=0, scene=SimpleNamespace(lights=Lights(xy, facing, state)))
    assert light_ahead(clip, path, 0.0) == pytest.approx([40.0, 1.0, 0.0, 0.0])
    assert light_ahead(clip, path, 45.0) == pytest.approx([15.0, 0.0, 1.0, 0.0])  # past the first: the amber one
    assert light_ahead(clip, path, 70.0) == [LIGHT_AHEAD_M, 0.0, 0.0, 0.0]
    none = SimpleNamespace(t0=0, scene=SimpleNamespace(lights=Lights(np.zeros((0, 2)), np.zeros(0),
                                                                     np.zeros((0, 0), np.int8))))
    assert light_ahead(none, path, 0.0) == [LIGHT_AHEAD_M, 0.0, 0.0, 0.0]


def test_the_route_and_light_features_do_not_see_the_horizon(clips):
    """The bend and the light ahead come from the whole logged track: a clip's horizon (the target's time) must
    not move them."""
    from dataclasses import replace

    from dualdrive.human.speed_regressor import _logged_path
    c = _clip(clips, 10, 10)
    short = replace(c, future=c.future // 2)
    np.testing.assert_array_equal(_logged_path(c), _logged_path(short))
    a, b = dict(zip(FEATURES, clip_features(c))), dict(zip(FEATURES, clip_features(short)))
    assert all(a[f] == b[f] for f in GROUPS["route"] + GROUPS["light"])
    last = max(b_ for a_, b_ in c.scene.log.runs(c.ego) if a_ <= c.t0 <= b_)
    assert len(_logged_path(c)) == last - c.start + 2  # every logged step to the run's end, then the straight on


def test_covered_distance_is_the_path_driven(clips):
    times = np.array([0.5, 1.0, 3.0])
    np.testing.assert_allclose(covered_m(_clip(clips, 10, 10), times), 10.0 * times, atol=1e-6)
    v0 = 5.0 + 1.0  # car 40 at t0 = 1 s
    np.testing.assert_allclose(covered_m(_clip(clips, 40, 10), times), v0 * times + 0.5 * times**2, atol=1e-6)


def test_scores_sit_beside_constant_velocity_scored_as_eval_openloop_does(clips):
    res = evaluate_speed_regressor(clips, clips, RegressorConfig(max_iter=20))
    ol = evaluate_human_openloop(clips)
    for m in ("constant_velocity", "constant_velocity_route"):
        for k in ("l2_1s_m", "l2_2s_m", "l2_3s_m"):
            assert res["methods"][m][k] == pytest.approx(ol["methods"][m][k], abs=1e-9), (m, k)
    assert set(res["methods"]) == {"constant_velocity", "constant_velocity_route", "regressor[ego]",
                                   "regressor[one_frame]", "regressor[ego+lead]", "regressor[ego+lead+neighbours]",
                                   "regressor[one_frame+route]", "regressor[ego+lead+route]",
                                   "regressor[ego+lead+route+light]"}
    # only car 40 accelerates: constant velocity misses it by t^2 / 2 at 3 s
    assert res["methods"]["constant_velocity"]["l2_3s_m"] > 0
    assert res["summary"]["constant_velocity_l2_3s_ratio_to_constant_velocity"] == 1.0
    with pytest.raises(HumanDataError, match="both"):
        evaluate_speed_regressor([], clips)


def test_the_one_frame_ablation_has_no_history():
    """``one_frame`` stands for what System 1 reads (one sensor frame, speed and acceleration now): nothing
    from the past of the ego or the cars ahead may be in it."""
    assert set(ONE_FRAME) <= set(FEATURES) and ABLATIONS["one_frame"] == ONE_FRAME
    assert not any("ago" in f or "change" in f for f in ONE_FRAME) and "lead_accel" not in ONE_FRAME
    assert ABLATIONS["ego+lead"] == GROUPS["ego"] + GROUPS["lead"]


def test_the_median_loss_runs_and_an_unknown_one_is_a_clear_error(clips):
    res = evaluate_speed_regressor(clips, clips, RegressorConfig(max_iter=20, loss="absolute_error"))
    assert res["config"]["loss"] == "absolute_error" and res["methods"]["regressor[ego]"]["clips"] == len(clips)
    from typer.testing import CliRunner

    from dualdrive.cli import app
    out = CliRunner().invoke(app, ["eval-speed-regressor", "--loss", "huber"])
    assert out.exit_code != 0 and "--loss 'huber'" in out.output and "absolute_error" in out.output
