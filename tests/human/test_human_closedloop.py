"""Closed-loop log replay: the human reference, a driver that keeps its speed, one that crashes."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dualdrive.agents.base import Agent, Control
from dualdrive.agents.simple import ConstantVelocityAgent
from dualdrive.cli import app
from dualdrive.human.closedloop import evaluate_replay, replay_clips, run_replay
from dualdrive.human.replay import Clip
from dualdrive.human.scene import load_scene


class FullThrottle(Agent):
    name = "full_throttle"

    def act(self, observation):
        return Control(4.0, 0.0)


class Broken(Agent):
    name = "broken"

    def act(self, observation):
        raise RuntimeError("sensor driver crashed")


@pytest.fixture(scope="module")
def scene(straight_road):
    return load_scene(straight_road)


def test_the_human_log_is_a_clean_reference(scene):
    clips = replay_clips(scene, stride_s=1.0)
    # 6 s tracks, 1 s of history and 4 s driven: t0 at 1 s and 2 s for each of the 4 cars
    assert len(clips) == 8 and all(c.history == 10 and c.future == 40 for c in clips)
    r = run_replay(clips[0])
    assert r["agent"] == "human" and r["error"] is None
    assert not r["collision"] and not r["off_road"] and r["end_distance_to_human_m"] == pytest.approx(0.0)
    assert r["nc"] == 100.0 and r["dac"] == 100.0 and r["ttc"] == 100.0 and r["comfort"] == 100.0
    assert r["progress_m"] == pytest.approx(40.0) and r["progress_ratio"] == pytest.approx(1.0)


def test_keeping_the_speed_matches_the_human_who_kept_it(scene):
    r = run_replay(replay_clips(scene)[0], ConstantVelocityAgent())
    assert r["error"] is None and not r["collision"]
    assert r["end_distance_to_human_m"] < 0.5 and r["progress_ratio"] == pytest.approx(1.0, abs=0.02)


def test_a_rear_end_collision_is_at_fault_and_zeroes_the_score(scene):
    clip = Clip(scene, 0, 10, 10, 50)  # car 10 driven for 5 s behind the slower car 20
    r = run_replay(clip, FullThrottle())
    assert r["collision"] and r["at_fault_collision"] and r["nc"] < 100.0 and r["pdms"] < 100.0


def test_a_crashing_agent_fails_its_clip_not_the_run(scene):
    res = evaluate_replay(replay_clips(scene)[:2], Broken())
    assert res["summary"]["failed"] == 2 and res["summary"]["pdms"] == 0.0
    assert "sensor driver crashed" in res["clips"][0]["error"]


def test_eval_command_scores_the_agent_beside_the_human(straight_road, tmp_path):
    out = tmp_path / "replay.json"
    r = CliRunner().invoke(app, ["eval", "--agent", "constant_velocity", "--suite", "ngsim-replay", "--scenarios",
                                 str(straight_road.parent), "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert set(res["drivers"]) == {"constant_velocity", "human"} and res["meta"]["clips"] == 4
    assert res["drivers"]["human"]["summary"]["collision_rate"] == 0.0
    assert np.isfinite(res["drivers"]["constant_velocity"]["summary"]["pdms"])
    r = CliRunner().invoke(app, ["eval", "--agent", "expert", "--suite", "ngsim-replay", "--scenarios",
                                 str(straight_road.parent), "--out", str(out)])
    assert r.exit_code == 2 and "ground truth" in r.output


def test_reactive_replay_spares_a_braking_ego_the_rear_end_collision(scene):
    """A driver that brakes hard at t0 is run into from behind by logged traffic, not by reactive traffic."""
    class Brake(Agent):
        name = "brake"

        def act(self, observation):
            return Control(-6.0, 0.0)

    clip = Clip(scene, 1, 10, 10, 40)  # car 20, car 10 closing from behind
    assert run_replay(clip, Brake())["collision"]
    row = run_replay(clip, Brake(), reactive=True)
    assert not row["collision"] and np.isfinite(row["pdms"])
