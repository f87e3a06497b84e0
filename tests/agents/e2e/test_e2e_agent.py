"""The E2E agent on synthetic SensorSuite observations, with a checkpoint of a random model."""
import logging

import numpy as np
import pytest
import torch

from dualdrive.agents.base import FORWARD, REVERSE, Plan
from dualdrive.agents.e2e.agent import CHECKPOINT_ENV, GUARD_ENV, REVERSE_COMMANDS, E2EAgent, observation_to_inputs, stop_plan
from dualdrive.agents.e2e.bench import measure_guard, measure_latency, synthetic_observation
from dualdrive.agents.e2e.checkpoint import CheckpointError, save_checkpoint
from dualdrive.agents.e2e.config import E2EConfig
from dualdrive.agents.e2e.model import E2EModel
from dualdrive.sensors.lidar import bev_histogram

TINY = E2EConfig(camera_channels=(8, 16, 16, 16), lidar_channels=(8, 16, 16, 16), d_model=32, n_layers=1, ff_dim=64,
                 bev_decoder_channels=8, dropout=0.0)


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = E2EModel(TINY)
    torch.nn.init.normal_(model.plan_head[-1].weight, std=0.05)  # a random model that does not stand still
    torch.nn.init.normal_(model.plan_head[-1].bias, std=0.1)
    return save_checkpoint(tmp_path / "model.safetensors", model)


def test_agent_declares_its_contract():
    assert (E2EAgent.name, E2EAgent.uses_sensors, E2EAgent.privileged) == ("e2e", True, False)


def test_agent_returns_the_models_plan(checkpoint):
    agent = E2EAgent(checkpoint, guard=False, probe=False)  # the network's plan as it is (the guard is tested below)
    agent.reset({})
    obs = synthetic_observation(TINY)
    plan = agent.act(obs)
    assert isinstance(plan, Plan) and plan.poses.shape == (8, 3) and plan.gear in (FORWARD, REVERSE)
    x = {k: torch.from_numpy(np.asarray(v)).unsqueeze(0) for k, v in observation_to_inputs(obs, TINY).items()}
    with torch.no_grad():
        out = agent.model(**x)
    # the plan of the gear the model chooses, except a reverse plan off a parking manoeuvre (REVERSE_COMMANDS)
    reverse_vetoed = int(out["gear_logits"][0].argmax()) == 1 and int(x["command"]) not in REVERSE_COMMANDS
    expected = (out["plans"][0, 0] if reverse_vetoed else out["plan"][0]).double().numpy()
    np.testing.assert_allclose(plan.poses, expected, rtol=1e-6, atol=1e-6)
    assert plan.gear == (FORWARD if reverse_vetoed else plan.gear) and agent.reverse_vetoed == int(reverse_vetoed)
    assert np.abs(plan.poses).sum() > 0


def test_the_guard_checks_the_plan_against_the_lidar(checkpoint):
    obs = synthetic_observation(TINY, n_points=0)  # nothing around: the guard has nothing to say
    guarded, raw = E2EAgent(checkpoint, probe=False), E2EAgent(checkpoint, guard=False, probe=False)
    np.testing.assert_allclose(guarded.act(obs).poses, raw.act(obs).poses)
    assert guarded.debug == {} and guarded.guard.interventions == 0
    # a car standing all round the ego, 0.3 m off its bumpers and sides: every plan that moves touches it
    ring = np.concatenate([np.column_stack([np.full(40, x), np.linspace(-1.3, 1.3, 40)]) for x in (-2.8, 2.8)] +
                          [np.column_stack([np.linspace(-2.8, 2.8, 40), np.full(40, y)]) for y in (-1.3, 1.3)])
    obs["lidar_points_m"][:len(ring)] = np.column_stack([ring, np.full(len(ring), 1.0), np.full(len(ring), 0.5)])
    obs["lidar_num_points"][:] = len(ring)
    obs["speed_mps"][:] = 0.0
    plan = guarded.act(obs)
    assert "guard" in guarded.debug and guarded.guard.interventions == 1
    assert guarded.debug["phase"].startswith("guard: ")  # the video's caption says what it did
    # what it drives instead does not touch the car it would have hit
    from dualdrive.agents.guard import obstacle_points
    assert guarded.guard.contact(plan, 0.0, 0.0, obstacle_points(obs["lidar_points_m"][:len(ring)],
                                                                  guarded.guard.cfg)) is None


@pytest.mark.parametrize("value,on", [("0", False), ("off", False), ("1", True), (None, True)])
def test_the_guard_follows_the_environment(checkpoint, monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv(GUARD_ENV, raising=False)
    else:
        monkeypatch.setenv(GUARD_ENV, value)
    assert E2EAgent(checkpoint).guard.cfg.enabled is on


def test_a_bad_guard_setting_says_what_to_use(checkpoint, monkeypatch):
    monkeypatch.setenv(GUARD_ENV, "maybe")
    with pytest.raises(ValueError, match="DUALDRIVE_E2E_GUARD"):
        E2EAgent(checkpoint)


def test_inputs_are_built_as_the_dataset_does():
    obs = synthetic_observation(TINY, n_points=500)
    obs["lidar_points_m"][500:] = 7.0  # padding beyond lidar_num_points must be ignored
    x = observation_to_inputs(obs, TINY)
    assert x["camera"].shape == (3, 96, 192) and x["camera"].dtype == np.uint8
    np.testing.assert_array_equal(x["camera"][:, 5, 7], obs["camera_front_rgb"][5, 7])
    np.testing.assert_array_equal(x["lidar_bev"], bev_histogram(obs["lidar_points_m"][:500], resolution_m=0.5))
    assert x["lidar_bev"].shape == (2, 128, 128) and 0 <= x["lidar_bev"].min() and x["lidar_bev"].max() <= 1
    assert x["speed"].shape == (1,) and x["command"].dtype == np.int64 and x["route"].shape == (10, 2)
    assert x["valid_camera"] == 1 and x["valid_lidar"] == 1


def test_radar_inputs_are_the_real_rows_padded_and_a_dropped_frame_has_none():
    obs = synthetic_observation(TINY)
    obs["radar_returns"][6:] = 99.0  # rows past radar_num_returns are not returns
    x = observation_to_inputs(obs, TINY)
    assert x["radar"].shape == (32, 4) and int(x["radar_count"]) == 6
    np.testing.assert_array_equal(x["radar"][:6], obs["radar_returns"][:6])
    assert not x["radar"][6:].any()
    obs["radar_valid"] = np.array([0], np.int8)
    x = observation_to_inputs(obs, TINY)
    assert int(x["radar_count"]) == 0 and not x["radar"].any()
    assert "radar" not in observation_to_inputs(obs, E2EConfig.from_dict({**TINY.to_dict(), "radar_returns": 0}))


def test_nan_radar_stops_the_car(checkpoint, caplog):
    agent = E2EAgent(checkpoint)
    obs = synthetic_observation(TINY)
    obs["radar_returns"][2, 2] = np.nan
    with caplog.at_level(logging.WARNING):
        plan = agent.act({**obs, "speed_mps": np.array([6.0], np.float32)})
    assert "radar returns contain NaN" in caplog.text
    np.testing.assert_allclose(plan.poses, stop_plan(6.0).poses)


def test_a_dropped_frame_is_zeros_with_its_flag_off(checkpoint):
    obs = synthetic_observation(TINY)
    obs["camera_front_valid"] = np.array([0], np.int8)
    x = observation_to_inputs(obs, TINY)
    assert x["valid_camera"] == 0 and x["camera"].sum() == 0 and x["valid_lidar"] == 1
    plan = E2EAgent(checkpoint, guard=False, probe=False).act(obs)  # the network alone (random points block the guard)
    assert np.abs(plan.poses).sum() > 0  # one dropped sensor: still the model's plan


@pytest.mark.parametrize("fault", ["nan_speed", "inf_route", "nan_lidar", "no_camera_key", "both_dropped", "bad_command"])
def test_untrustworthy_observation_gives_a_stop_plan_and_one_warning(checkpoint, fault, caplog):
    obs = synthetic_observation(TINY)
    if fault == "nan_speed":
        obs["speed_mps"] = np.array([np.nan], np.float32)
    elif fault == "inf_route":
        obs["route_xy_ego_m"][3, 1] = np.inf
    elif fault == "nan_lidar":
        obs["lidar_points_m"][10, 0] = np.nan
    elif fault == "no_camera_key":
        del obs["camera_front_rgb"]
    elif fault == "both_dropped":
        obs["camera_front_valid"] = obs["lidar_valid"] = np.array([0], np.int8)
    else:
        obs["command"] = np.array([42], np.int8)
    agent = E2EAgent(checkpoint)
    with caplog.at_level(logging.WARNING, logger="dualdrive.agents.e2e.agent"):
        plans = [agent.act(obs) for _ in range(3)]
    assert len([r for r in caplog.records if "stop plan" in r.getMessage()]) == 1
    speed = float(obs["speed_mps"][0]) if fault != "nan_speed" else 0.0
    for plan in plans:
        np.testing.assert_array_equal(plan.poses, stop_plan(speed).poses)


def test_stop_plan_decelerates_to_a_standstill_and_stays():
    poses = stop_plan(8.0).poses
    steps = np.diff(np.concatenate([[0.0], poses[:, 0]]))
    assert np.all(steps >= 0) and np.all(np.diff(steps) <= 1e-9)  # slowing down, never backwards
    assert poses[-1, 0] == pytest.approx(8.0**2 / (2 * 3.0)) and steps[-1] == 0  # stopped within 4 s
    assert np.all(poses[:, 1:] == 0)
    assert np.all(stop_plan(0.0).poses == 0) and np.all(stop_plan(float("nan")).poses == 0)
    assert stop_plan(-2.0).gear == REVERSE and np.all(stop_plan(-2.0).poses[:, 0] <= 0)


def test_missing_checkpoint_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    with pytest.raises(CheckpointError, match="make model.*--checkpoint"):
        E2EAgent(tmp_path / "absent.safetensors")
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "env.safetensors"))
    with pytest.raises(CheckpointError, match=f"env.safetensors.*\\${CHECKPOINT_ENV}"):
        E2EAgent()


def test_checkpoint_from_the_environment(checkpoint, monkeypatch):
    monkeypatch.setenv(CHECKPOINT_ENV, str(checkpoint))
    assert E2EAgent().checkpoint == checkpoint


def test_a_camera_of_another_size_is_a_configuration_error(checkpoint):
    obs = synthetic_observation(TINY)
    obs["camera_front_rgb"] = np.zeros((48, 96, 3), np.uint8)
    with pytest.raises(ValueError, match="camera_front_rgb has shape .*48, 96, 3.*configure the camera"):
        E2EAgent(checkpoint).act(obs)


def test_measure_latency_reports_size_and_time():
    r = measure_latency(TINY, n=3)
    assert set(r) == {"ms_mean", "ms_p95", "cpu_ms_mean", "model_ms_mean", "ms_mean_probing", "ms_mean_slow_no_probe", "params",
                      "checkpoint_mb"}
    assert r["params"] == sum(p.numel() for p in E2EModel(TINY).parameters())
    assert 0 < r["checkpoint_mb"] < 1 and min(r["ms_mean"], r["ms_p95"], r["model_ms_mean"], r["ms_mean_probing"]) > 0


def test_measure_guard_times_each_case():
    r = measure_guard(n=2)
    assert set(r) == {"guard_clear_ms", "guard_blocked_ms", "guard_boxed_in_ms"} and min(r.values()) > 0


def test_agent_drives_a_few_ticks_on_the_real_sensor_suite(checkpoint):
    from dualdrive.agents.follower import TrajectoryFollower
    from dualdrive.sensors.suite import SensorSuite
    from dualdrive.world.env import DualDriveEnv

    env = SensorSuite(DualDriveEnv("highway"))
    obs, info = env.reset(seed=0)
    agent, follower = E2EAgent(checkpoint), TrajectoryFollower()
    agent.reset(info)
    for _ in range(3):
        plan = agent.act(obs)
        assert isinstance(plan, Plan) and np.abs(plan.poses).sum() > 0  # the model's plan, not a stop plan
        obs, *_ = env.step(follower.update(plan, float(obs["speed_mps"][0])).to_action())
    env.close()


def test_guard_env_sets_and_restores(monkeypatch, checkpoint):
    from dualdrive.agents.e2e.agent import guard_env
    monkeypatch.setenv(GUARD_ENV, "1")
    with guard_env(False):
        assert E2EAgent(checkpoint).guard.cfg.enabled is False
    assert E2EAgent(checkpoint).guard.cfg.enabled is True


@pytest.mark.parametrize("limit_mps, command, backs_up", [
    (13.9, "FOLLOW_LANE", False),  # a town road: what blocks the way is traffic (urban 5008 backed up from a queue)
    (None, "FOLLOW_LANE", False),  # no speed limit (a stock env): a road
    (4.0, "FOLLOW_LANE", True),  # a car-park aisle by its speed limit (the network alone drives the car park)
    (13.9, "PARK", True),  # a parking manoeuvre
])
def test_the_guard_may_back_up_in_a_car_park_only(checkpoint, monkeypatch, limit_mps, command, backs_up):
    """The guard is handed the network's plan for the other gear (to back up when the nose will not clear) in a
    car park only: fails with the agent of before, which handed it over on the road too."""
    from dualdrive.world.commands import Command
    agent = E2EAgent(checkpoint, probe=False, park_assist=False)
    agent.reset({})
    seen = []
    monkeypatch.setattr(agent.guard, "check", lambda plan, *args, **kwargs: seen.append(args[3]) or
                        type("V", (), {"plan": plan, "reason": ""})())
    obs = synthetic_observation(TINY)
    obs["command"][:] = int(Command[command])
    obs["speed_mps"][:] = 0.0
    if limit_mps is None:
        obs.pop("speed_limit_mps", None)
    else:
        obs["speed_limit_mps"] = np.array([limit_mps], np.float32)
    agent.act(obs)
    assert len(seen) == 1 and (seen[0] is not None) == backs_up
    if backs_up:
        assert isinstance(seen[0], Plan)
