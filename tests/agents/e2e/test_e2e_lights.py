"""System 1's red-light rule: the camera's lamp colour, the junction's distance, and the re-timed stopping plan."""
import numpy as np
import pytest

from dualdrive.agents.base import Plan
from dualdrive.agents.e2e.lights import LightRule, LightRuleConfig, junction_distance
from dualdrive.planning.retime import retime_plan
from dualdrive.world.commands import Command

H, W = 96, 192
STRAIGHT = np.column_stack([8.0 * np.arange(1, 11), np.zeros(10)])


def camera(colour: tuple[int, int, int] | None) -> np.ndarray:
    img = np.full((H, W, 3), 120, np.uint8)  # grey road and sky: no saturated pixel
    if colour is not None:
        img[10:13, 90:93] = colour  # a lit lamp above the horizon
    return img


def obs(colour, command=Command.GO_STRAIGHT, dist=30.0, route_command=None, valid=1) -> dict:
    rc = np.zeros(10, np.int8) if route_command is None else np.asarray(route_command, np.int8)
    return {"camera_front_rgb": camera(colour), "camera_front_valid": np.array([valid], np.int8),
            "command": np.array([int(command)], np.int8), "command_distance_m": np.array([dist], np.float32),
            "route_command": rc, "route_xy_ego_m": STRAIGHT.astype(np.float32)}


RED, AMBER, GREEN = (255, 0, 0), (255, 200, 0), (0, 255, 0)


def test_the_junction_is_found_from_the_command_or_behind_a_lane_change():
    assert junction_distance(obs(None, dist=33.0)) == pytest.approx(33.0)
    # a lane change announced first hides the junction's command: the route's targets show it (the last
    # target of its run is its entry, here the 4th target at 32 m)
    rc = [4, 4, 3, 3, 0, 0, 0, 0, 0, 0]
    assert junction_distance(obs(None, Command.CHANGE_LANE_LEFT, 20.0, rc)) == pytest.approx(32.0)
    assert junction_distance(obs(None, Command.FOLLOW_LANE, 50.0)) is None


def test_a_red_light_latches_a_stop_before_the_junction_until_green():
    rule = LightRule()
    back = rule.cfg.stop_back_m
    assert rule.stop_distance(obs(RED, dist=40.0), 8.0) == pytest.approx(40.0 - back)
    # the lamp out of view (the car close to it): still red until a green is seen
    assert rule.stop_distance(obs(None, dist=35.0), 6.0) == pytest.approx(35.0 - back)
    assert rule.stop_distance(obs(GREEN, dist=30.0), 0.0) is None
    assert not rule.latched
    assert rule.stop_distance(obs(RED, dist=80.0), 8.0) is None  # too far off to matter yet


def test_amber_stops_only_where_a_comfortable_stop_is_possible():
    rule = LightRule()
    assert rule.stop_distance(obs(AMBER, dist=40.0), 8.0) is not None  # 10.7 m to stop, 30 m to the stand point
    rule.reset()
    assert rule.stop_distance(obs(AMBER, dist=15.0), 13.0) is None  # 28 m to stop: go on


def test_a_red_seen_late_stops_at_once_if_the_car_still_can_else_it_goes_on():
    rule = LightRule()
    assert rule.stop_distance(obs(RED, dist=8.0), 3.0) == 0.0  # inside the stand distance: stop now
    rule.reset()
    assert rule.stop_distance(obs(RED, dist=3.0), 10.0) is None  # 8 m to stop at 6 m/s^2: braking in the box


def test_a_missing_camera_frame_holds_the_reading_for_a_while_and_the_rule_can_be_switched_off():
    rule = LightRule(LightRuleConfig(hold_frames=2))
    rule.stop_distance(obs(RED, dist=40.0), 8.0)
    assert rule.light == 0
    for _ in range(2):
        rule.stop_distance(obs(GREEN, dist=40.0, valid=0), 8.0)  # a dropped frame's pixels are not read
        assert rule.light == 0
    rule.stop_distance(obs(GREEN, dist=40.0, valid=0), 8.0)
    assert rule.light is None and rule.latched  # no reading any more, but the red is not forgotten
    off = LightRule(LightRuleConfig(enabled=False))
    assert off.stop_distance(obs(RED, dist=40.0), 8.0) is None
    with pytest.raises(ValueError):
        LightRuleConfig(stop_back_m=-1.0)


def _straight_plan(speed: float) -> Plan:
    x = speed * 0.5 * np.arange(1, 9)
    return Plan(np.column_stack([x, np.zeros(8), np.zeros(8)]))


def test_the_stopping_plan_brakes_in_time_and_never_passes_the_stop():
    plan = retime_plan(_straight_plan(10.0), 10.0, stop_at_m=20.0)
    x = plan.poses[:, 0]
    assert np.all(x <= 20.0 + 1e-9) and x[-1] == pytest.approx(20.0, abs=0.6)
    v = np.diff(np.concatenate([[0.0], x])) / plan.dt_s
    assert np.all(np.diff(v) <= 1e-6)  # slowing all the way, never speeding up again
    assert x[0] < 5.0  # braking from the first step: the follower is asked for it in time
    # far from the stop, the plan is the network's own
    far = _straight_plan(5.0)
    assert np.allclose(retime_plan(far, 5.0, stop_at_m=100.0).poses, far.poses, atol=0.3)
    # a standing car creeps up to a stop ahead at the network's pace, not beyond it
    crept = retime_plan(_straight_plan(2.0), 0.0, stop_at_m=3.0).poses[:, 0]
    assert crept[-1] == pytest.approx(3.0, abs=0.3) and np.all(crept <= 3.0 + 1e-9)
    assert retime_plan(_straight_plan(8.0), 8.0, stop_at_m=0.0).poses[:, 0].max() == pytest.approx(0.0)


def test_the_agent_cuts_its_plan_short_of_a_red_light(monkeypatch):
    from dualdrive.agents.e2e.agent import LIGHTS_ENV, E2EAgent, lights_from_env, network_alone
    from dualdrive.agents.e2e.bench import synthetic_observation
    agent = E2EAgent(guard=False, probe=False, lights=True, park_assist=False)
    o = synthetic_observation(agent.info.config)
    o.update(obs(RED, dist=25.0))
    plan = agent.act(o)
    assert plan.poses[:, 0].max() <= 25.0 - agent.lights.cfg.stop_back_m + 1e-6
    assert agent.debug["phase"].startswith("red light") and agent.light_stops == 1
    # asked again in the same tick (the dual agent's check): the same stop, the rule's state not advanced
    again = agent.replan(o)
    assert again.poses[:, 0].max() <= 25.0 - agent.lights.cfg.stop_back_m + 1e-6 and agent.light_stops == 1
    o.update(obs(GREEN, dist=25.0))
    agent.act(o)
    assert not agent.lights.latched
    monkeypatch.delenv(LIGHTS_ENV, raising=False)
    assert lights_from_env()
    with network_alone():
        assert not lights_from_env()
    monkeypatch.setenv(LIGHTS_ENV, "red")
    with pytest.raises(ValueError, match="DUALDRIVE_E2E_LIGHTS"):
        lights_from_env()


def test_an_observation_without_navigation_has_no_junction():
    """A stock highway-env env through the sensor suite has no route or command distance: no light rule."""
    assert junction_distance({}) is None
    assert junction_distance({"command": np.array([int(Command.TURN_LEFT)])}) is None
    assert junction_distance({"command": np.array([0]), "route_command": np.array([0, 3, 0])}) is None
