"""The speed probe (dualdrive.agents.e2e.probe): its rules, and the e2e agent driving with it."""
import numpy as np
import pytest
import torch

from dualdrive.agents.base import FORWARD, PLAN_DT_S, PLAN_POSES, REVERSE, Plan
from dualdrive.agents.e2e.agent import PROBE_ENV, E2EAgent, probe_env
from dualdrive.agents.e2e.bench import synthetic_observation
from dualdrive.agents.e2e.checkpoint import save_checkpoint
from dualdrive.agents.e2e.config import E2EConfig
from dualdrive.agents.e2e.model import E2EModel
from dualdrive.agents.e2e.probe import SpeedProbeConfig, holds_speed, probe_speed, sped_up, wanted
from dualdrive.world.commands import Command

CFG = SpeedProbeConfig()
T = PLAN_DT_S * np.arange(1, PLAN_POSES + 1)
TINY = E2EConfig(camera_channels=(8, 16, 16, 16), lidar_channels=(8, 16, 16, 16), d_model=32, n_layers=1, ff_dim=64,
                 bev_decoder_channels=8, dropout=0.0)


def straight(speeds_mps) -> np.ndarray:
    """Poses straight ahead, each 0.5 s step driven at the given speed."""
    x = np.cumsum(np.broadcast_to(np.asarray(speeds_mps, float), (PLAN_POSES,)) * PLAN_DT_S)
    return np.column_stack([x, np.zeros(PLAN_POSES), np.zeros(PLAN_POSES)])


def step_speeds(poses: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.diff(np.vstack([[0.0, 0.0], poses[:, :2]]), axis=0), axis=1) / PLAN_DT_S


def test_the_probe_speed_is_the_limit_within_bounds():
    assert probe_speed(13.9, CFG) == pytest.approx(13.9)
    assert probe_speed(2.0, CFG) is None and probe_speed(45.0, CFG) == CFG.max_probe_mps
    assert probe_speed(float("nan"), CFG) is None and probe_speed(0.0, CFG) is None


def test_it_is_asked_only_well_below_the_probe_speed_and_when_on():
    assert wanted(1.2, 30.0, CFG) and wanted(-1.2, 30.0, CFG)
    assert not wanted(0.8 * 30.0, 30.0, CFG) and not wanted(25.0, 30.0, CFG)
    assert not wanted(1.2, None, CFG) and not wanted(1.2, 30.0, SpeedProbeConfig(enabled=False))


def test_a_plan_holds_the_speed_only_if_no_step_falls_below_the_share():
    assert holds_speed(straight(20.0), 20.0, PLAN_DT_S, CFG)
    assert holds_speed(straight(np.linspace(20.0, 17.5, PLAN_POSES)), 20.0, PLAN_DT_S, CFG)
    braking = straight(np.maximum(20.0 - 4.0 * T, 0.0))  # a red light ahead: to a stop within the plan
    assert not holds_speed(braking, 20.0, PLAN_DT_S, CFG)
    bad = straight(20.0)
    bad[3, 0] = np.nan
    assert not holds_speed(bad, 20.0, PLAN_DT_S, CFG)


def test_sped_up_drives_the_probes_path_from_the_current_speed_at_a_comfortable_rate():
    probe = Plan(np.column_stack([straight(20.0)[:, 0], 0.02 * straight(20.0)[:, 0] ** 1.5,
                                  np.linspace(0, 0.1, PLAN_POSES)]), FORWARD)
    own = Plan(straight(1.2), FORWARD)
    out = sped_up(own, probe, 1.2, CFG)
    v = step_speeds(out.poses)
    expected = np.minimum(1.2 + CFG.accel_mps2 * (T - PLAN_DT_S / 2), step_speeds(probe.poses))
    np.testing.assert_allclose(v, expected, rtol=1e-3)
    assert v[-1] > 5 * 1.2 / 2 and np.all(np.diff(v) > 0)  # it gains speed, the network's own plan barely did
    # on the probe's path: every pose on the probe's polyline from the car (its y follows x as the probe's does)
    path = np.vstack([[0.0, 0.0, 0.0], probe.poses])
    assert np.allclose(out.poses[:, 1], np.interp(out.poses[:, 0], path[:, 0], path[:, 1]), atol=1e-6)
    backing = Plan(-straight(1.0), REVERSE)
    assert sped_up(backing, probe, 1.0, CFG) is backing


class CopycatNet(torch.nn.Module):
    """A stand-in network with the inertia problem: it plans straight on at the speed it is told, except that
    it brakes to a stop where ``stop_at_m`` is (a red light it sees); gear forward."""

    def __init__(self, stop_at_m: float | None = None) -> None:
        super().__init__()
        self.stop_at_m = stop_at_m
        self.seen_speeds: list[list[float]] = []

    def forward(self, speed, with_aux=False, **inputs):
        self.seen_speeds.append(speed[:, 0].tolist())
        plans = []
        for v in speed[:, 0].tolist():
            x = np.cumsum(np.full(PLAN_POSES, v * PLAN_DT_S))
            if self.stop_at_m is not None:
                x = np.minimum(x, self.stop_at_m)
            plans.append(np.column_stack([x, np.zeros(PLAN_POSES), np.zeros(PLAN_POSES)]))
        plan = torch.tensor(np.stack(plans), dtype=torch.float32)
        return {"plan": plan, "gear_logits": torch.tensor([[1.0, 0.0]] * len(plans))}


@pytest.fixture()
def agent(tmp_path):
    torch.manual_seed(0)
    a = E2EAgent(save_checkpoint(tmp_path / "model.safetensors", E2EModel(TINY)), guard=False, probe=True,
                 park_assist=False)  # the network's own plans: the car-park function would drive LEAVE_SPOT and PARK
    a.reset({})
    return a


def observation(speed_mps: float, limit_mps: float | None, command: Command = Command.FOLLOW_LANE) -> dict:
    obs = synthetic_observation(TINY, n_points=0)
    obs["speed_mps"][:] = speed_mps
    obs["command"][:] = int(command)
    if limit_mps is not None:
        obs["speed_limit_mps"] = np.array([limit_mps], np.float32)
    return obs


def test_the_agent_speeds_up_where_the_network_at_the_limit_would_hold_it(agent):
    agent.model = CopycatNet()
    plan = agent.act(observation(1.2, 30.0))
    assert agent.model.seen_speeds[-1] == pytest.approx([1.2, 30.0])  # one batch: the frame, and the frame at 30 m/s
    np.testing.assert_allclose(step_speeds(plan.poses), 1.2 + CFG.accel_mps2 * (T - PLAN_DT_S / 2), rtol=1e-3)
    assert agent.probe_used == 1 and agent.debug["phase"] == "probe: speeding up"


def test_the_networks_own_plan_stands_where_at_the_limit_it_would_slow_down(agent):
    agent.model = CopycatNet(stop_at_m=12.0)  # a stop line 12 m ahead: at 30 m/s it brakes
    plan = agent.act(observation(1.2, 30.0))
    np.testing.assert_allclose(plan.poses, straight(1.2), atol=1e-5)
    assert agent.probe_used == 0 and agent.debug == {}


@pytest.mark.parametrize("speed, limit, command", [
    (1.2, None, Command.FOLLOW_LANE),  # no speed limit in the observation (a stock env without navigation)
    (26.0, 30.0, Command.FOLLOW_LANE),  # near the limit already: the network's own plan holds its speed
    (1.2, 30.0, Command.PARK),  # car-park manoeuvres are slow on purpose
    (1.2, 30.0, Command.LEAVE_SPOT),
    (1.2, 30.0, Command.ENTER_LOT),
])
def test_the_probe_is_not_asked(agent, speed, limit, command):
    agent.model = CopycatNet()
    plan = agent.act(observation(speed, limit, command))
    assert agent.model.seen_speeds[-1] == pytest.approx([speed])  # a batch of one
    np.testing.assert_allclose(plan.poses, straight(speed), atol=1e-5)


def test_probe_env_switches_it_and_restores(monkeypatch, agent):
    monkeypatch.setenv(PROBE_ENV, "1")
    with probe_env(False):
        assert E2EAgent(agent.checkpoint).probe.enabled is False
    assert E2EAgent(agent.checkpoint).probe.enabled is True
    monkeypatch.setenv(PROBE_ENV, "maybe")
    with pytest.raises(ValueError, match="DUALDRIVE_E2E_PROBE"):
        E2EAgent(agent.checkpoint)


def test_the_guards_radar_part_can_be_switched_off_for_comparison(monkeypatch, agent):
    from dualdrive.agents.e2e.agent import GUARD_RADAR_ENV
    from dualdrive.cli import _e2e_meta
    assert E2EAgent(agent.checkpoint).guard.cfg.radar is True and agent.guard.cfg.radar is False  # guard off: no radar
    rules = {"e2e_park_assist": "on", "e2e_yield": "on", "e2e_turn_keeping": "on", "e2e_lane_change": "on"}
    assert _e2e_meta(True, True) == {"e2e_guard": "on", "e2e_probe": "on", "e2e_leaving": "on", "e2e_lights": "on",
                                     **rules}
    monkeypatch.setenv(GUARD_RADAR_ENV, "0")
    assert E2EAgent(agent.checkpoint).guard.cfg.radar is False
    assert _e2e_meta(True, False) == {"e2e_guard": "lidar", "e2e_probe": "off", "e2e_leaving": "on", "e2e_lights": "on",
                                      **rules}
    assert _e2e_meta(False, False)["e2e_guard"] == "off"


def test_the_probe_is_never_asked_above_the_limit_nor_in_a_car_park_aisle():
    assert probe_speed(4.0, CFG) is None  # a car-park aisle's limit: walking pace is the point there
    assert probe_speed(13.9, CFG) == pytest.approx(13.9) and probe_speed(45.0, CFG) == CFG.max_probe_mps


def test_the_probe_sees_the_radar_as_it_would_at_the_probe_speed():
    from dualdrive.agents.e2e.probe import radar_at_speed
    az = np.array([0.0, 0.5, 0.2])
    # a car standing ahead and clutter seen from 2 m/s (radial velocity -v cos az), and one padding row
    rows = np.column_stack([[30.0, 40.0, 0.0], az, -2.0 * np.cos(az), [5.0, -10.0, 0.0]]).astype(np.float32)
    seen = radar_at_speed(rows, 2, 2.0, 20.0)
    np.testing.assert_allclose(seen[:2, 2], -20.0 * np.cos(az[:2]), rtol=1e-5)  # standing things close at 20 m/s
    np.testing.assert_array_equal(seen[2], rows[2])
    np.testing.assert_array_equal(seen[:, [0, 1, 3]], rows[:, [0, 1, 3]])


def test_a_probe_plan_that_is_not_finite_is_not_driven():
    bad = straight(20.0)
    bad[2, 2] = np.nan  # a NaN heading: the path looks fine, the plan is not
    assert not holds_speed(bad, 20.0, PLAN_DT_S, CFG)


class PerGearCopycat(CopycatNet):
    """The shipped model's layout: a plan per gear (forward first) and the gear head picking one; it also records
    the radar rows it is given."""

    def forward(self, speed, with_aux=False, radar=None, **inputs):
        self.seen_radar = None if radar is None else radar.clone()
        out = super().forward(speed, with_aux, **inputs)
        forward = out["plan"]
        out["plans"] = torch.stack([forward, -forward], dim=1)
        return out


def test_with_a_plan_per_gear_the_probes_forward_plan_is_driven_and_its_radar_is_shifted(agent):
    agent.model = PerGearCopycat()
    obs = observation(1.2, 30.0)
    plan = agent.act(obs)
    np.testing.assert_allclose(step_speeds(plan.poses), 1.2 + CFG.accel_mps2 * (T - PLAN_DT_S / 2), rtol=1e-3)
    radar = agent.model.seen_radar
    if radar is not None:  # the config reads the radar: row 1 is the frame as seen at 30 m/s
        n = int(obs["radar_num_returns"][0])
        shift = (radar[0, :n, 2] - radar[1, :n, 2]).numpy()
        np.testing.assert_allclose(shift, (30.0 - 1.2) * np.cos(radar[0, :n, 1].numpy()), rtol=1e-4)
