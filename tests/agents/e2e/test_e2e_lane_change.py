"""System 1's lane-change rule: where the navigation asks for a lane change, the plan is laid across to the next lane
once the LiDAR shows a gap there."""
import numpy as np
import pytest

from dualdrive.agents.base import FORWARD, PLAN_DT_S, PLAN_POSES, Plan
from dualdrive.agents.e2e.lane_change import (LaneChange, LaneChangeConfig, next_lane_clear, shift_needed,
                                              smooth_step, switch_end)
from dualdrive.world.commands import Command

LEFT = int(Command.CHANGE_LANE_LEFT)


def route_with_switch(switch_at_m: float, shift_m: float = 3.5, spacing_m: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """The navigation's 10 targets (ego frame) of a straight road whose route moves ``shift_m`` across in one 30 m
    segment starting ``switch_at_m`` ahead, as the world gives them: a target is the route's next polyline point (the
    old lane's points every 2 m up to the switch, the new lane's from its end on), the last 10 m before the switch
    carry the lane-change command."""
    xy, cmd = [], []
    for k in range(1, 11):
        s = spacing_m * k
        if s <= switch_at_m:
            p = 2.0 * np.ceil(s / 2.0)
            xy.append([min(p, switch_at_m), 0.0])
            cmd.append(LEFT if p > switch_at_m - 10.0 else 0)
        else:
            p = max(s, switch_at_m + 30.0)
            xy.append([p, shift_m])
            cmd.append(0)
    return np.array(xy, np.float32), np.array(cmd, np.int8)


def obs_for(route_xy, route_cmd, distance_m, command=LEFT, yaw_rate=0.0, steer=0.0) -> dict:
    return {"command": np.array([command], np.int8), "command_distance_m": np.array([distance_m], np.float32),
            "route_xy_ego_m": np.asarray(route_xy, np.float32), "route_command": np.asarray(route_cmd, np.int8),
            "yaw_rate_rps": np.array([yaw_rate], np.float32), "steer_rad": np.array([steer], np.float32)}


def straight_plan(speed_mps: float) -> Plan:
    x = speed_mps * PLAN_DT_S * np.arange(1, PLAN_POSES + 1)
    return Plan(np.column_stack([x, np.zeros(PLAN_POSES), np.zeros(PLAN_POSES)]), FORWARD)


def test_the_switchs_end_and_the_shift_are_read_off_the_targets():
    xy, cmd = route_with_switch(switch_at_m=20.0)
    end, road = switch_end(xy, cmd, LEFT)
    assert end == pytest.approx([50.0, 3.5]) and road == pytest.approx([1.0, 0.0])
    assert shift_needed(end, road) == pytest.approx(3.5)
    # past the switch's start no target carries the command: the first target is the end
    xy, cmd = route_with_switch(switch_at_m=-5.0)
    end, road = switch_end(xy, cmd, LEFT)
    assert end == pytest.approx([25.0, 3.5]) and shift_needed(end, road) == pytest.approx(3.5)
    # the car turned 0.1 rad off the road: the shift is still measured square to the road, not to the car
    c, s = np.cos(-0.1), np.sin(-0.1)
    xy, cmd = route_with_switch(switch_at_m=20.0)
    rot = xy @ np.array([[c, s], [-s, c]], np.float32)
    end, road = switch_end(rot, cmd, LEFT)
    assert shift_needed(end, road) == pytest.approx(3.5, abs=1e-3)


def test_no_switch_is_read_off_a_bend_or_a_route_without_one():
    xy, cmd = route_with_switch(switch_at_m=20.0)
    bent = xy.copy()
    bent[0, 1] = -1.5  # the targets before the switch do not lie on a line: a turn, not a lane
    assert switch_end(bent, cmd, LEFT) is None
    assert switch_end(np.zeros((0, 2)), np.zeros(0), LEFT) is None
    same = np.repeat([[20.0, 0.0]], 10, axis=0)  # nothing after the marked targets
    assert switch_end(same, np.full(10, LEFT), LEFT) is None


def test_the_lane_beside_must_be_clear_of_lidar_returns():
    cfg = LaneChangeConfig()
    car_beside = np.array([[2.0, 3.5, 0.8, 1.0]])
    assert not next_lane_clear(car_beside, +1.0, 3.5, 8.0, cfg)
    assert next_lane_clear(car_beside, -1.0, -3.5, 8.0, cfg)  # the other side is clear
    assert next_lane_clear(np.array([[10.0, 0.2, 0.8, 1.0]]), +1.0, 3.5, 8.0, cfg)  # a car ahead in our lane
    assert next_lane_clear(np.array([[2.0, 3.5, 0.05, 1.0]]), +1.0, 3.5, 8.0, cfg)  # the ground
    # behind: 8 m + 1.2 s at the car's speed
    behind = np.array([[-15.0, 3.5, 0.8, 1.0]])
    assert next_lane_clear(behind, +1.0, 3.5, 2.0, cfg) and not next_lane_clear(behind, +1.0, 3.5, 10.0, cfg)
    assert not next_lane_clear(None, +1.0, 3.5, 8.0, cfg)  # no LiDAR frame: not clear
    assert next_lane_clear(np.zeros((0, 4)), +1.0, 3.5, 8.0, cfg)


def test_the_change_starts_near_the_switch_only_where_it_is_needed_and_clear():
    rule = LaneChange()
    xy, cmd = route_with_switch(switch_at_m=40.0)
    # at 8 m/s the change takes 28 m: it starts with the switch half that far ahead, not 40 m before it
    assert not rule.update(obs_for(xy, cmd, 40.0), 8.0, np.zeros((0, 4)))
    xy, cmd = route_with_switch(switch_at_m=10.0)
    blocked = np.array([[0.0, 3.5, 0.8, 1.0]])
    assert not rule.update(obs_for(xy, cmd, 10.0), 8.0, blocked) and rule.waited == 1
    assert "waiting for a gap" in rule.debug["phase"]
    # already in the new lane (the route's switch ends beside nothing): nothing to do
    in_lane, _ = route_with_switch(switch_at_m=10.0, shift_m=0.3)
    assert not rule.update(obs_for(in_lane, cmd, 10.0), 8.0, np.zeros((0, 4)))
    # in a turn (the car yawing) no change starts
    assert not rule.update(obs_for(xy, cmd, 10.0, yaw_rate=0.3), 8.0, np.zeros((0, 4)))
    # another command: not ours
    assert not rule.update(obs_for(xy, cmd, 10.0, command=int(Command.TURN_LEFT)), 8.0, np.zeros((0, 4)))
    assert rule.update(obs_for(xy, cmd, 10.0), 8.0, np.zeros((0, 4)))
    assert rule.active and rule.changes == 1 and rule.shift_m == pytest.approx(3.5)
    assert rule.length_m == pytest.approx(28.0)


def test_a_car_following_the_plans_ends_one_lane_over_along_the_road_at_the_networks_speed():
    """A car that drives each tick's plan exactly (its first 0.1 s) is taken across one lane on a smooth path, its
    heading back along the road at the end, at the network's speed; then the rule lets go."""
    rule = LaneChange()
    rule.reset(0.1)
    xy, cmd = route_with_switch(switch_at_m=10.0)
    v = 8.0
    pose = np.zeros(3)  # x, y, heading (world = the road's frame)
    yaw_rate, max_lat_accel, ticks = 0.0, 0.0, 0
    assert rule.update(obs_for(xy, cmd, 10.0), v, np.zeros((0, 4)))
    while rule.active and ticks < 200:
        plan = rule.apply(straight_plan(v))
        steps = np.linalg.norm(np.diff(np.vstack([[0.0, 0.0], plan.poses[:, :2]]), axis=0), axis=1)
        assert steps == pytest.approx(v * PLAN_DT_S, rel=0.02)  # the network's distances, so its speed
        # drive 0.1 s of it: a fifth of the way to the first pose
        local = plan.poses[0] * np.array([0.2, 0.2, 0.2])
        c, s = np.cos(pose[2]), np.sin(pose[2])
        new = np.array([pose[0] + c * local[0] - s * local[1], pose[1] + s * local[0] + c * local[1],
                        pose[2] + local[2]])
        yaw_rate = (new[2] - pose[2]) / 0.1
        max_lat_accel = max(max_lat_accel, abs(yaw_rate * v))
        pose = new
        ticks += 1
        rule.update(obs_for(xy, cmd, 10.0, yaw_rate=yaw_rate), v, np.zeros((0, 4)))
    assert not rule.active and ticks < 60  # done within the change's 28 m plus the finish, at 8 m/s
    assert pose[1] == pytest.approx(3.5, abs=0.3) and abs(pose[2]) < 0.05
    assert max_lat_accel < 3.0  # a comfortable change, not a swerve


def test_a_change_that_does_not_finish_is_given_up():
    rule = LaneChange(LaneChangeConfig(max_duration_s=1.0))
    rule.reset(0.1)
    xy, cmd = route_with_switch(switch_at_m=5.0)
    assert rule.update(obs_for(xy, cmd, 5.0), 0.0, np.zeros((0, 4)))  # started standing (a queue)
    for _ in range(30):  # standing does not count: held at a light, the change goes on when the car moves
        rule.update(obs_for(xy, cmd, 5.0), 0.0, np.zeros((0, 4)))
    assert rule.active
    for _ in range(11):  # creeping at 0.1 m/s: 1.1 s on the move, 0.1 m of the 12 m change
        rule.update(obs_for(xy, cmd, 5.0), 0.1, np.zeros((0, 4)))
    assert not rule.active


def test_a_change_going_on_at_a_junction_is_let_go():
    rule = LaneChange()
    xy, cmd = route_with_switch(switch_at_m=5.0)
    assert rule.update(obs_for(xy, cmd, 5.0), 3.0, np.zeros((0, 4)))
    assert rule.update(obs_for(xy, cmd, 5.0), 3.0, np.zeros((0, 4)))  # still changing lanes
    at_turn = obs_for(xy, cmd, 4.0, command=int(Command.TURN_LEFT))
    assert not rule.update(at_turn, 3.0, np.zeros((0, 4))) and not rule.active


def test_the_smooth_step_and_the_config():
    assert smooth_step(np.array([-1.0, 0.0, 0.5, 1.0, 2.0])) == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="lane-change rule"):
        LaneChangeConfig(min_length_m=0.0)
    with pytest.raises(ValueError, match="lane-change rule"):
        LaneChangeConfig(min_shift_lanes=2.0)
    assert not LaneChange(LaneChangeConfig(enabled=False)).update(obs_for(*route_with_switch(5.0), 5.0), 5.0, None)


def agent_at_a_switch(**rules):
    """An E2E agent (the rules not under test off, ``rules`` as given) and an observation at 6 m/s with the route's
    lane change 8 m ahead and no LiDAR return in the way."""
    from dualdrive.agents.e2e.agent import E2EAgent
    from dualdrive.agents.e2e.bench import synthetic_observation
    agent = E2EAgent(**{"guard": False, "probe": False, "lights": False, "park_assist": False, "yielding": False,
                        **rules})
    o = synthetic_observation(agent.info.config)
    o.update(obs_for(*route_with_switch(switch_at_m=8.0), 8.0))
    o["speed_mps"] = np.array([6.0], np.float32)
    o["lidar_num_points"] = np.array([0], np.int32)
    agent.reset({"dt_s": 0.1})
    return agent, o


def test_the_agent_changes_lanes_where_the_route_asks_and_not_for_the_network_alone(monkeypatch):
    from dualdrive.agents.e2e.agent import LANE_CHANGE_ENV, E2EAgent, lane_change_from_env, network_alone
    agent, o = agent_at_a_switch(turn_keeping=False)
    plan = agent.act(o)
    assert agent.lane_change.active and agent.debug["phase"].startswith("lane change left")
    assert plan.poses[-1, 1] > 2.5  # laid across towards the lane 3.5 m to the left
    again = agent.replan(o)  # the dual agent's second ask: the same change, not advanced
    assert again.poses == pytest.approx(plan.poses) and agent.lane_change.changes == 1
    monkeypatch.delenv(LANE_CHANGE_ENV, raising=False)
    assert lane_change_from_env()
    with network_alone():
        assert not lane_change_from_env()
        assert not E2EAgent(agent.checkpoint).lane_change.cfg.enabled
    monkeypatch.setenv(LANE_CHANGE_ENV, "perhaps")
    with pytest.raises(ValueError, match="DUALDRIVE_E2E_LANE_CHANGE"):
        lane_change_from_env()


def test_at_a_left_turn_turn_keeping_has_the_plan_over_a_change_still_going_on():
    """A change held up before a junction is not laid straight across the turn (P2P 5002 drove on into the wrong
    connector): 12 m before a left turn turn keeping holds the plan to the route's line, the change still active."""
    agent, o = agent_at_a_switch()
    assert agent.act(o).poses[-1, 1] > 2.5 and agent.lane_change.active
    straight = np.column_stack([8.0 * np.arange(1, 11), np.zeros(10)]).astype(np.float32)  # the route's lane ahead
    o.update(obs_for(straight, np.zeros(10, np.int8), 12.0, command=int(Command.TURN_LEFT)))
    plan = agent.act(o)
    assert agent.lane_change.active and agent.turn_keeping.left_m is not None
    assert np.all(np.abs(plan.poses[:, 1]) <= agent.turn_keeping.cfg.max_offset_m + 1e-6)


def test_the_cli_switches_the_lane_change_rule_and_the_results_record_it(monkeypatch):
    import typer

    from dualdrive.agents.e2e.agent import LANE_CHANGE_ENV
    from dualdrive.cli import _e2e_meta, _use_rules, app
    monkeypatch.setenv(LANE_CHANGE_ENV, "1")
    _use_rules(None, None, None, None, False)  # --no-lane-change
    assert _e2e_meta(True, True)["e2e_lane_change"] == "off"
    for command in ("drive", "eval"):
        params = typer.main.get_command(app).commands[command].params
        assert "--no-lane-change" in {o for p in params for o in (*p.opts, *p.secondary_opts)}


def test_a_change_into_a_left_turn_lane_is_not_dropped_by_turn_keeping():
    """40 m before a left turn (turn keeping watches from 50 m) the lane change into the turn lane keeps the plan; from
    15 m on the turn is turn keeping's (the test above). With turn keeping holding the plan from 50 m regardless, the
    change was dropped and P2P 5002 crawled on in the lane beside the turn lane."""
    agent, o = agent_at_a_switch()
    o["command"] = np.array([int(Command.CHANGE_LANE_LEFT)], np.int8)
    plan = agent.act(o)
    assert agent.lane_change.active and plan.poses[-1, 1] > 2.5
    o["command"], o["command_distance_m"] = np.array([int(Command.TURN_LEFT)], np.int8), np.array([40.0], np.float32)
    plan = agent.act(o)
    assert agent.turn_keeping.left_m is not None  # turn keeping watches, and yields to the change
    assert agent.lane_change.active and plan.poses[-1, 1] > 2.5 and agent.debug["phase"].startswith("lane change")
