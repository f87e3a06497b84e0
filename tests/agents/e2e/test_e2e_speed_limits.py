"""System 1's speed-limit rule: the plan slows in time for a lower limit on the route ahead."""
import numpy as np
import pytest

from dualdrive.agents.base import FORWARD, PLAN_DT_S, PLAN_POSES, Plan
from dualdrive.agents.e2e.limits import SpeedLimitConfig, speed_cap


def limits_obs(here: float, ahead: list[float]) -> dict:
    return {"speed_limit_mps": np.array([here], np.float32), "route_speed_limit_mps": np.array(ahead, np.float32)}


def test_the_cap_is_the_speed_from_which_the_car_still_gets_down_to_each_limit_ahead():
    cfg = SpeedLimitConfig(decel_mps2=1.5, tolerance_mps=0.0)
    assert speed_cap(limits_obs(13.9, [13.9] * 10), cfg) == pytest.approx(13.9)
    # a roundabout at 7 m/s from the 6th target on (48 m ahead): sqrt(49 + 2 * 1.5 * 40) = 13.0 m/s now
    ahead = [13.9] * 5 + [7.0] * 5
    assert speed_cap(limits_obs(13.9, ahead), cfg) == pytest.approx(np.sqrt(49.0 + 3.0 * 40.0))
    # the first target's limit holds from here (the 8 m spacing is the margin)
    assert speed_cap(limits_obs(13.9, [7.0] * 10), cfg) == pytest.approx(7.0)
    assert speed_cap(limits_obs(13.9, [7.0] * 10), SpeedLimitConfig()) == pytest.approx(7.5)  # the tolerance


def test_no_limits_no_cap_and_bad_values_are_ignored():
    assert speed_cap({}) is None
    assert speed_cap(limits_obs(13.9, [7.0] * 10), SpeedLimitConfig(enabled=False)) is None
    cap = speed_cap(limits_obs(np.nan, [np.nan, 0.0, 7.0] + [13.9] * 7), SpeedLimitConfig(tolerance_mps=0.0))
    assert cap == pytest.approx(np.sqrt(49.0 + 3.0 * 16.0))  # only the third target's limit counts
    with pytest.raises(ValueError, match="speed-limit rule"):
        SpeedLimitConfig(decel_mps2=0.0)


def test_the_agent_slows_a_fast_plan_for_the_limit_ahead_and_not_for_the_network_alone(monkeypatch):
    from dualdrive.agents.e2e import agent as e2e
    from dualdrive.agents.e2e.bench import synthetic_observation
    a = e2e.E2EAgent(guard=False, probe=False, lights=False, park_assist=False, yielding=False, turn_keeping=False,
                     lane_change=False)
    fast = Plan(np.column_stack([15.0 * PLAN_DT_S * np.arange(1, PLAN_POSES + 1), np.zeros(PLAN_POSES),
                                 np.zeros(PLAN_POSES)]), FORWARD)
    monkeypatch.setattr(a, "model", _FixedPlan(fast))
    o = synthetic_observation(a.info.config)
    o.update(limits_obs(13.9, [7.0] * 10))
    o["speed_mps"] = np.array([15.0], np.float32)
    o["command"] = np.array([0], np.int8)
    plan = a.act(o)
    steps = np.linalg.norm(np.diff(np.vstack([[0.0, 0.0], plan.poses[:, :2]]), axis=0), axis=1) / PLAN_DT_S
    # down towards the 7.5 m/s cap at a comfortable 1.5 m/s², its path kept
    assert np.all(np.diff(steps) < 0) and steps[-1] == pytest.approx(15.0 - 1.5 * 4.0, abs=0.2)
    assert np.allclose(plan.poses[:, 1], 0.0) and a.debug["phase"].startswith("speed limit ahead")
    o.update(limits_obs(20.0, [20.0] * 10))  # limits above the plan's speed: left alone
    monkeypatch.setenv(e2e.SPEED_LIMITS_ENV, "1")
    assert e2e._top_speed(a.act(o)) == pytest.approx(15.0)
    with e2e.network_alone():
        assert not e2e.speed_limits_from_env()
    monkeypatch.setenv(e2e.SPEED_LIMITS_ENV, "fast")
    with pytest.raises(ValueError, match="DUALDRIVE_E2E_SPEED_LIMITS"):
        e2e.speed_limits_from_env()


class _FixedPlan:
    """Stands in for the network: every decision gets the same forward plan (what the rule does to it is tested)."""

    def __init__(self, plan: Plan) -> None:
        import torch
        self.poses = torch.from_numpy(plan.poses).float()

    def __call__(self, **batch):
        import torch
        n = batch["speed"].shape[0]
        return {"plan": self.poses.expand(n, -1, -1), "gear_logits": torch.tensor([[1.0, 0.0]]).expand(n, -1)}
