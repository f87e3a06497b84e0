"""Open-loop scores on human clips: known answers on the constructed road, bad agents, the command."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dualdrive.agents.base import PLAN_POSES, Agent, Control, Plan
from dualdrive.cli import app
from dualdrive.human.openloop import (PlanRequired, baseline_poses, evaluate_human_openloop, poses_along_route,
                                      score_poses)
from dualdrive.human.replay import cut_clips
from dualdrive.human.scene import load_scene

TIMES = np.arange(1, 7) * 0.5


class HoldSpeed(Agent):
    """Plans straight on at its current speed (the constant-velocity baseline, as an agent)."""

    name = "hold_speed"

    def act(self, observation):
        v = float(observation["speed_mps"][0])
        t = np.arange(1, PLAN_POSES + 1) * 0.5
        return Plan(np.column_stack([v * t, np.zeros(PLAN_POSES), np.zeros(PLAN_POSES)]))


class Swerve(Agent):
    """Plans a hard right, off the road."""

    name = "swerve"

    def act(self, observation):
        t = np.arange(1, PLAN_POSES + 1) * 0.5
        return Plan(np.column_stack([2 * t, -3 * t, np.full(PLAN_POSES, -1.0)]))


class Pedal(Agent):
    name = "pedal"

    def act(self, observation):
        return Control(1.0, 0.0)


@pytest.fixture(scope="module")
def clips(straight_road):
    return cut_clips(load_scene(straight_road))


def test_baselines_roll_out_as_named():
    np.testing.assert_allclose(baseline_poses("constant_velocity", 10.0, 3.0, TIMES)[:, 0], 10.0 * TIMES)
    ca = baseline_poses("constant_acceleration", 4.0, -2.0, TIMES)[:, 0]
    np.testing.assert_allclose(ca, [1.75, 3.0, 3.75, 4.0, 4.0, 4.0])  # stops after 2 s at 4 m, never backs up
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_poses("magic", 1.0, 0.0, TIMES)


def test_poses_along_a_curved_route_keep_the_distance_on_the_curve():
    r = 50.0  # a quarter circle to the left, starting at the origin heading +x
    a = np.linspace(0.0, np.pi / 2, 400)
    route = np.column_stack([r * np.sin(a), r * (1 - np.cos(a))])
    ego_xy = np.array([0.0, 0.3])  # a little left of the route: projected onto it
    dist = np.array([0.0, 10.0, 50.0, r * np.pi / 2 + 5.0])
    poses = poses_along_route(route, ego_xy, 0.0, dist)
    phi = dist[1:3] / r
    np.testing.assert_allclose(poses[1:3, :2], np.column_stack([r * np.sin(phi), r * (1 - np.cos(phi)) - 0.3]), atol=0.02)
    np.testing.assert_allclose(poses[1:3, 2], phi, atol=0.01)
    np.testing.assert_allclose(poses[0, :2], [0.0, -0.3], atol=2e-3)  # the projection, up to the curvature
    # past the end (50, 50) heading +y, 5 m straight on
    np.testing.assert_allclose(poses[3, :2], [r, r + 5.0 - 0.3], atol=0.02)


def test_the_route_baseline_is_constant_velocity_on_a_straight_route(clips):
    res = evaluate_human_openloop(clips, None)
    m = res["methods"]
    assert m["constant_velocity_route"]["l2_3s_m"] == pytest.approx(m["constant_velocity"]["l2_3s_m"], abs=1e-3)
    assert res["summary"]["constant_velocity_route_l2_3s_ratio_to_constant_velocity"] == pytest.approx(1.0, abs=1e-3)
    # the route is the human's path: at the distances the human covered it is where the human was
    assert m["route_at_human_distance"]["l2_3s_m"] == pytest.approx(0.0, abs=0.05)
    assert "route_at_human_distance_l2_3s_ratio_to_constant_velocity" not in res["summary"]


def test_known_errors_collisions_and_offroad(clips):
    ego = clips[0]  # car 10 at t0 = 1 s, 10 m/s straight on
    exact = score_poses(ego, baseline_poses("constant_velocity", 10.0, 0.0, TIMES), TIMES)
    assert exact["l2"] == {1.0: 0.0, 2.0: 0.0, 3.0: 0.0} and not exact["collision"] and not exact["offroad"]
    slow = score_poses(ego, baseline_poses("constant_velocity", 9.0, 0.0, TIMES), TIMES)
    assert slow["l2"][3.0] == pytest.approx(3.0) and slow["ade"] == pytest.approx(np.mean(TIMES))
    # standing on car 20's spot 25 m ahead now and later: its box is there when the plan is
    rear_end = np.column_stack([28 + 8 * TIMES, np.zeros(6), np.zeros(6)])
    assert score_poses(ego, rear_end, TIMES)["collision"]
    sideways = np.column_stack([10 * TIMES, -4 * TIMES, np.zeros(6)])
    assert score_poses(ego, sideways, TIMES)["offroad"]


def test_an_agent_that_plans_like_the_baseline_scores_like_it(clips):
    res = evaluate_human_openloop(clips, HoldSpeed())
    m = res["methods"]
    assert m["hold_speed"]["l2_3s_m"] == pytest.approx(m["constant_velocity"]["l2_3s_m"], abs=1e-6)
    assert res["summary"]["l2_3s_ratio_to_constant_velocity"] == pytest.approx(1.0)
    # only the accelerating car 40 moves off a constant speed: constant acceleration is exact on every clip
    assert m["constant_velocity"]["l2_3s_m"] == pytest.approx(3 * 4.5 / 12)  # 4.5 m at 3 s on its 3 clips
    assert m["constant_acceleration"]["l2_3s_m"] == pytest.approx(0.0, abs=1e-6)
    assert m["human"]["l2_3s_m"] == 0.0 and m["human"]["collision_rate"] == 0.0
    assert m["hold_speed"]["clips"] == len(clips) == len(res["per_clip"])
    worse = evaluate_human_openloop(clips, Swerve())
    assert worse["methods"]["swerve"]["offroad_rate"] == 1.0 and worse["summary"]["l2_3s_ratio_to_constant_velocity"] > 1


def test_an_agent_answering_with_controls_is_refused(clips):
    with pytest.raises(PlanRequired, match="not a plan"):
        evaluate_human_openloop(clips[:1], Pedal())


def test_command_on_a_scenario_folder(straight_road, tmp_path):
    out = tmp_path / "ol.json"
    r = CliRunner().invoke(app, ["eval-openloop", "--agent", f"{HoldSpeed.__module__}:HoldSpeed", "--scenarios",
                                 str(straight_road.parent), "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["summary"]["clips"] == 12 and res["summary"]["l2_3s_ratio_to_constant_velocity"] == pytest.approx(1.0)
    assert "constant_acceleration" in r.output
    r = CliRunner().invoke(app, ["eval-openloop", "--agent", "expert", "--scenarios", str(straight_road.parent)])
    assert r.exit_code == 2 and "ground truth" in r.output
    r = CliRunner().invoke(app, ["eval-openloop", "--agent", "e2e", "--scenarios", str(tmp_path / "none")])
    assert r.exit_code == 2 and "not a folder" in r.output


def test_e2e_on_real_human_clips():
    r = CliRunner().invoke(app, ["eval-openloop", "--agent", "e2e", "--data", "ngsim", "--split", "val",
                                 "--max-clips", "3"])
    assert r.exit_code == 0, r.output
    assert "3 clips" in r.output and "L2 at 3 s / constant velocity's" in r.output


def test_figure_of_a_clip(straight_road, tmp_path):
    out = tmp_path / "clip.png"
    r = CliRunner().invoke(app, ["human-figure", "--agent", "constant_velocity", "--scenarios", str(straight_road.parent),
                                 "--clip", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    r = CliRunner().invoke(app, ["human-figure", "--agent", "constant_velocity", "--scenarios", str(straight_road.parent),
                                 "--clip", "99", "--out", str(out)])
    assert r.exit_code == 2 and "there are 12 clips" in r.output


def test_a_bad_file_in_a_folder_is_skipped_and_named(straight_road, tmp_path):
    import shutil
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(straight_road, folder / "good.xml")
    (folder / "foreign.xml").write_text("<html><body>not a scenario</body></html>")
    with pytest.warns(UserWarning, match="foreign.xml"):
        r = CliRunner().invoke(app, ["eval-openloop", "--agent", "constant_velocity", "--scenarios", str(folder)])
    assert r.exit_code == 0 and "12 clips from 1 scenarios" in r.output
    (folder / "good.xml").unlink()
    with pytest.warns(UserWarning, match="foreign.xml"):
        r = CliRunner().invoke(app, ["eval-openloop", "--agent", "constant_velocity", "--scenarios", str(folder)])
    assert r.exit_code == 2 and "none of the 1 scenario file(s) could be read" in r.output and "foreign.xml" in r.output
