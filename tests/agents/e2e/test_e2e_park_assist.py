"""System 1's parking assist: where the modular pipeline's parking function drives, and where System 1 does."""
import numpy as np
import pytest

from dualdrive.agents.base import FORWARD, REVERSE, Plan
from dualdrive.agents.e2e.park_assist import ParkAssist, ParkAssistConfig
from dualdrive.world.commands import Command


class Recorder:
    """Stands in for the modular agent: counts its decisions (its own tests and drives are elsewhere)."""

    def __init__(self) -> None:
        self.calls, self.resets, self.debug = 0, 0, {"phase": "drive"}

    def reset(self, info) -> None:
        self.resets += 1

    def act(self, obs) -> Plan:
        self.calls += 1
        return Plan(np.zeros((8, 3)), REVERSE)


def obs(command=Command.FOLLOW_LANE, limit=13.9, park_at: int | None = None) -> dict:
    rc = np.zeros(10, np.int8)
    if park_at is not None:
        rc[park_at:] = int(Command.PARK)
    return {"command": np.array([int(command)], np.int8), "route_command": rc,
            "speed_limit_mps": np.array([limit], np.float32)}


def test_the_assist_leaves_the_spot_hands_over_on_the_road_and_parks_at_the_destination():
    assist = ParkAssist()
    assist.driver = rec = Recorder()
    assert assist.act(obs(Command.LEAVE_SPOT, 4.0)) is not None  # backing out of the start spot
    assert assist.act(obs(Command.FOLLOW_LANE, 4.0)) is not None  # the start car park's aisles
    assert assist.act(obs(Command.FOLLOW_LANE, 6.95)) is None  # the access lane: System 1 drives
    assert assist.handed_back == 1 and not assist.active
    calls = rec.calls
    assert assist.act(obs(Command.FOLLOW_LANE, 13.9)) is None and rec.calls == calls  # the roads: not even asked
    # the motorway's exit ramp into town gives ENTER_LOT too: not a car park
    assert assist.act(obs(Command.ENTER_LOT, 20.0)) is None and not assist.active
    # the destination's aisles in the route's view: the assist drives from here on, on the access lane too
    plan = assist.act(obs(Command.ENTER_LOT, 6.95, park_at=9))
    assert plan is not None and plan.gear == REVERSE and assist.debug["phase"] == "park assist: drive"
    assert rec.resets == 2 and rec.calls == calls + 1
    assert assist.act(obs(Command.FOLLOW_LANE, 6.95, park_at=3)) is not None
    assert assist.act(obs(Command.PARK, 4.0, park_at=0)) is not None
    assert assist.handed_back == 1


def test_an_all_car_park_drive_stays_with_the_assist_and_off_means_never():
    assist = ParkAssist()
    assist.driver = Recorder()
    for o in (obs(Command.LEAVE_SPOT, 4.0), obs(Command.FOLLOW_LANE, 4.0, park_at=8), obs(Command.PARK, 4.0, 0)):
        assert assist.act(o) is not None
    assert assist.handed_back == 0
    off = ParkAssist(ParkAssistConfig(enabled=False))
    assert off.act(obs(Command.LEAVE_SPOT, 4.0)) is None and off.driver is None


def test_the_e2e_agent_backs_out_of_its_spot_with_the_assist(monkeypatch):
    from dualdrive.agents.e2e.agent import PARK_ASSIST_ENV, E2EAgent, network_alone, park_assist_from_env
    from dualdrive.bench.episode import ENV_IDS, env_for
    from dualdrive.world.scenarios import ScenarioConfig
    agent = E2EAgent(guard=False, probe=False, lights=False, park_assist=True)
    env = env_for(agent, ENV_IDS["parking"], ScenarioConfig(family="parking"))
    o, info = env.reset(seed=5000)
    agent.reset({})
    plan = agent.act(o)
    assert int(o["command"][0]) == Command.LEAVE_SPOT
    assert agent.debug["phase"].startswith("park assist") and plan.gear in (FORWARD, REVERSE)
    assert agent.park_assist.active and agent.replan(o) is plan  # asked again in the same tick: the same plan
    env.close()
    monkeypatch.delenv(PARK_ASSIST_ENV, raising=False)
    assert park_assist_from_env()
    with network_alone():
        assert not park_assist_from_env()
    monkeypatch.setenv(PARK_ASSIST_ENV, "maybe")
    with pytest.raises(ValueError, match="DUALDRIVE_E2E_PARK_ASSIST"):
        park_assist_from_env()


def test_the_cli_switches_both_rules_and_the_results_record_it(monkeypatch):
    import typer

    from dualdrive.agents.e2e.agent import LIGHTS_ENV, PARK_ASSIST_ENV
    from dualdrive.cli import _e2e_meta, _use_rules
    monkeypatch.setenv(LIGHTS_ENV, "1")  # monkeypatch restores both after the test
    monkeypatch.setenv(PARK_ASSIST_ENV, "1")
    _use_rules(False, False)  # --no-lights --no-park-assist
    meta = _e2e_meta(True, True)
    assert meta["e2e_lights"] == meta["e2e_park_assist"] == "off"
    _use_rules(None, True)  # not given: the env var's setting stands
    meta = _e2e_meta(True, True)
    assert meta["e2e_lights"] == "off" and meta["e2e_park_assist"] == "on"
    monkeypatch.setenv(LIGHTS_ENV, "bright")
    with pytest.raises(typer.Exit):  # a clear message naming the variable, not a traceback
        _use_rules(None, None)
