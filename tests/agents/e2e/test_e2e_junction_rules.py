"""System 1's junction rules: the left-turn yield (oncoming traffic in the radar) and turn keeping (the plan held
within the route's lane through a turn)."""
import numpy as np
import pytest

from dualdrive.agents.base import FORWARD, Plan
from dualdrive.agents.e2e.turn_keeping import TurnKeeping, TurnKeepingConfig, keep_within, route_line
from dualdrive.agents.e2e.yielding import LeftTurnYield, YieldRuleConfig, arrival_time, oncoming, turn_ahead
from dualdrive.world.commands import Command

STRAIGHT = np.column_stack([8.0 * np.arange(1, 11), np.zeros(10)])


def radar(targets: list[tuple[float, float, float]], ego_speed: float) -> np.ndarray:
    """Radar rows (range, azimuth, range rate, RCS) of point targets at ego-frame (x, y) moving at vx along the
    ego's heading, seen from an ego at ``ego_speed``."""
    rows = []
    for x, y, vx in targets:
        az = np.arctan2(y, x)
        rows.append([np.hypot(x, y), az, (vx - ego_speed) * np.cos(az), 5.0])
    return np.array(rows, np.float32).reshape(-1, 4)


def junction_obs(command=Command.TURN_LEFT, dist=12.0, yaw_rate=0.0) -> dict:
    return {"command": np.array([int(command)], np.int8), "command_distance_m": np.array([dist], np.float32),
            "route_command": np.zeros(10, np.int8), "route_xy_ego_m": STRAIGHT.astype(np.float32),
            "yaw_rate_rps": np.array([yaw_rate], np.float32)}


def test_oncoming_traffic_is_read_along_the_road_from_the_radar():
    cfg = YieldRuleConfig()
    r = radar([(40.0, 5.0, -8.0), (30.0, 0.0, 6.0), (25.0, 6.0, 0.0), (20.0, -6.0, -8.0)], ego_speed=5.0)
    got = oncoming(r, 5.0, cfg)
    # only the car closing in the lanes to the left: not the one ahead moving away in our lane, not a standing
    # car, not one on the right
    assert got.shape == (1, 3) and got[0] == pytest.approx([40.0, 5.0, -8.0], abs=1e-3)
    assert oncoming(None, 5.0, cfg).shape == (0, 3)
    assert oncoming(np.array([[np.nan, 0, 0, 0]]), 5.0, cfg).shape == (0, 3)


def test_a_car_setting_off_is_taken_to_speed_up():
    cfg = YieldRuleConfig(assumed_accel_mps2=1.5, max_speed_mps=15.0)
    # 21 m at 1 m/s: 21 s at a constant speed, under 5 s speeding up at 1.5 m/s^2 (P2P 5003's oncoming car)
    assert arrival_time(np.array([21.0]), np.array([1.0]), cfg)[0] == pytest.approx(4.67, abs=0.01)
    # at the top speed already: distance over speed
    assert arrival_time(np.array([30.0]), np.array([15.0]), cfg)[0] == pytest.approx(2.0)


def test_the_car_waits_before_a_left_turn_while_oncoming_traffic_would_reach_it():
    rule = LeftTurnYield()
    near = radar([(40.0, 5.0, -8.0)], ego_speed=3.0)  # 18 m from the conflict zone at 8 m/s: ~2 s
    stop = rule.stop_distance(junction_obs(dist=12.0), 3.0, near)
    assert stop == pytest.approx(12.0 + rule.cfg.wait_in_m) and rule.yielded == 1  # waits in the box
    far = radar([(120.0, 5.0, -8.0)], ego_speed=3.0)  # ~10 s away: a gap to turn in
    assert rule.stop_distance(junction_obs(dist=12.0), 3.0, far) is None
    passed = radar([(5.0, 5.0, -8.0)], ego_speed=3.0)  # already by the conflict zone (22 m on)
    assert rule.stop_distance(junction_obs(dist=12.0), 3.0, passed) is None
    # a right turn, or a straight crossing, does not cross the oncoming lanes
    assert rule.stop_distance(junction_obs(Command.TURN_RIGHT), 3.0, near) is None
    assert rule.stop_distance(junction_obs(Command.GO_STRAIGHT), 3.0, near) is None
    # too fast to stop where it would wait: on through
    assert rule.stop_distance(junction_obs(dist=0.0), 10.0, radar([(40.0, 5.0, -8.0)], 10.0)) is None
    assert not LeftTurnYield(YieldRuleConfig(enabled=False)).stop_distance(junction_obs(), 3.0, near)


def test_past_the_entry_the_car_waits_where_it_meant_to_by_its_odometry():
    """The navigation's distance stays 0 from the entry on: the wait point is counted down by the distance driven."""
    rule = LeftTurnYield()
    near = radar([(40.0, 5.0, -8.0)], ego_speed=2.0)
    stops = [rule.stop_distance(junction_obs(dist=0.0), 2.0, near) for _ in range(10)]  # 2 m in 1 s at 2 m/s
    assert stops[0] == pytest.approx(rule.cfg.wait_in_m - 0.2) and stops[-1] == pytest.approx(rule.cfg.wait_in_m - 2.0)
    assert rule.stop_distance(junction_obs(dist=0.0), 0.0, near) == pytest.approx(rule.cfg.wait_in_m - 2.0)


def test_a_car_already_turning_is_not_held_back():
    rule = LeftTurnYield()
    near = radar([(40.0, 5.0, -8.0)], ego_speed=3.0)
    assert rule.stop_distance(junction_obs(dist=4.0, yaw_rate=0.0), 3.0, near) is not None
    for _ in range(6):  # 0.6 s at 0.6 rad/s: 21 degrees turned since the approach began
        out = rule.stop_distance(junction_obs(dist=4.0, yaw_rate=0.6), 3.0, near)
    assert out is None
    # past the junction, the next one starts afresh
    rule.stop_distance(junction_obs(Command.FOLLOW_LANE, 80.0), 3.0, near)
    assert rule.turned_rad == 0.0 and rule.stop_distance(junction_obs(dist=12.0), 3.0, near) is not None


def test_the_turn_stays_the_cars_when_the_navigation_moves_on_at_the_entry():
    """Past the entry the navigation's progress runs into the turn's connector and its command is the next
    manoeuvre's already: the car, not yet turning, still waits in the box for oncoming traffic (urban 5001)."""
    rule = LeftTurnYield()
    near = radar([(40.0, 5.0, -8.0)], ego_speed=2.0)
    assert rule.stop_distance(junction_obs(dist=2.0), 2.0, near) == pytest.approx(2.0 + rule.cfg.wait_in_m)
    moved_on = junction_obs(Command.FOLLOW_LANE, 50.0)
    stop = rule.stop_distance(moved_on, 2.0, near)
    assert stop is not None and stop <= rule.cfg.wait_in_m  # how far in, from the odometry
    assert rule.stop_distance(moved_on, 2.0, radar([(120.0, 5.0, -8.0)], 2.0)) is None  # a gap: go
    for _ in range(60):  # driven on past the conflict zone: the rule lets go and the next junction starts afresh
        rule.stop_distance(moved_on, 2.0, None)
    assert not rule.approaching and rule.stop_distance(moved_on, 2.0, near) is None
    # a car that was not at the entry when the command moved on (a route that changed) is not held
    far = LeftTurnYield()
    far.stop_distance(junction_obs(dist=20.0), 2.0, near)
    assert far.stop_distance(moved_on, 2.0, near) is None


def test_the_junction_turn_is_seen_behind_a_lane_change():
    o = junction_obs(Command.CHANGE_LANE_LEFT)
    o["route_command"] = np.array([4, 4, 1, 1, 0, 0, 0, 0, 0, 0], np.int8)
    assert turn_ahead(o) == Command.TURN_LEFT
    o["route_command"] = np.zeros(10, np.int8)
    assert turn_ahead(o) is None


def test_bad_yield_settings_are_refused():
    with pytest.raises(ValueError, match="yield rule"):
        YieldRuleConfig(gap_s=0.0)
    with pytest.raises(ValueError, match="yield rule"):
        YieldRuleConfig(min_lateral_m=20.0, max_lateral_m=15.0)


LEFT_TURN = np.array([[8.0, 0.0], [16.0, 0.0], [22.0, 3.0], [25.5, 9.0], [27.0, 17.0], [27.0, 25.0], [27.0, 33.0]])


def test_a_plan_cutting_the_turn_is_kept_within_the_route_lane():
    line = route_line(LEFT_TURN)
    assert line[0] == pytest.approx([0.0, 0.0])  # one spacing before the first target: the ego's foot
    cutting = np.array([[3.0, 0.0], [7.0, 0.3], [11.0, 1.5], [14.0, 4.0], [16.0, 8.0], [17.0, 13.0], [17.5, 18.0],
                        [17.5, 23.0]])  # 9 m inside the turn by its end (P2P 5003: up to 5 m)
    kept = keep_within(cutting, line, 1.0)
    d = np.linalg.norm(kept - keep_within(kept, line, 0.0), axis=1)
    assert d.max() <= 1.0 + 1e-6 and np.allclose(kept[0], cutting[0])  # the first pose was within a metre already
    rule = TurnKeeping()
    assert rule.update(junction_obs(Command.TURN_LEFT, dist=10.0), 5.0)
    o = {"route_xy_ego_m": LEFT_TURN.astype(np.float32)}
    plan = rule.apply(Plan(np.column_stack([cutting, np.zeros(8)]), FORWARD), o)
    assert np.abs(plan.poses[:, :2] - kept).max() < 1e-6 and rule.kept == 1
    # the headings follow the moved path (the follower steers by them)
    step = np.diff(np.vstack([[0.0, 0.0], plan.poses[:, :2]]), axis=0)
    assert plan.poses[:, 2] == pytest.approx(np.arctan2(step[:, 1], step[:, 0]))
    # a plan within the lane is the network's, untouched
    inside = Plan(np.column_stack([np.linspace(1.0, 8.0, 8), np.full(8, 0.5), np.zeros(8)]), FORWARD)
    assert rule.apply(inside, o) is inside


def test_a_lost_car_is_not_pulled_back_across_the_lanes_and_the_rule_lets_go_in_time():
    line = np.array([[8.0, -6.0], [16.0, -6.0], [24.0, -6.0]])  # the route two lanes to the right: lost
    rule = TurnKeeping()
    assert rule.update(junction_obs(Command.TURN_LEFT, dist=10.0), 1.0)
    moving = Plan(np.column_stack([2.0 * np.arange(1, 9), np.zeros(8), np.zeros(8)]), FORWARD)
    assert rule.apply(moving, {"route_xy_ego_m": line.astype(np.float32)}) is moving
    for _ in range(int(rule.cfg.max_hold_s / 0.1) + 1):  # creeping at 0.1 m/s: 2 m in 20 s, far short of 50 m
        held = rule.update(junction_obs(Command.FOLLOW_LANE, dist=200.0), 0.1)
    assert not held
    # standing (held at the entry by the left-turn yield) does not count: urban 5001 lost the rule half way round
    waiting = TurnKeeping()
    waiting.update(junction_obs(Command.TURN_LEFT, dist=10.0), 1.0)
    for _ in range(int(waiting.cfg.max_hold_s / 0.1) + 10):
        assert waiting.update(junction_obs(Command.FOLLOW_LANE, dist=200.0), 0.0)


def test_a_car_off_the_route_comes_back_gradually_and_a_standing_one_is_left_alone():
    line = np.array([[-8.0, 2.5], [0.0, 2.5], [8.0, 2.5], [16.0, 2.5], [24.0, 2.5]])  # the route 2.5 m to the left
    rule = TurnKeeping()
    assert not rule.update(junction_obs(Command.TURN_RIGHT, dist=5.0), 0.0)  # right turns are left alone
    rule.update(junction_obs(Command.TURN_LEFT, dist=5.0), 0.0)
    o = {"route_xy_ego_m": line[1:].astype(np.float32)}
    standing = Plan(np.zeros((8, 3)), FORWARD)
    assert rule.apply(standing, o) is standing
    moving = Plan(np.column_stack([2.0 * np.arange(1, 9), np.zeros(8), np.zeros(8)]), FORWARD)
    y = rule.apply(moving, o).poses[:, 1]
    # at most 0.25 m back across per metre along the plan, and within a metre of the route by 6 m on
    assert y[0] == pytest.approx(0.5) and y[1] == pytest.approx(1.0) and np.all(y[2:] >= 1.5 - 1e-6)


def test_turn_keeping_holds_from_before_the_turn_until_after_it():
    rule = TurnKeeping(TurnKeepingConfig(watch_m=15.0, after_m=40.0))
    assert not rule.update(junction_obs(Command.TURN_LEFT, dist=30.0), 10.0)  # not yet
    assert not rule.update(junction_obs(Command.GO_STRAIGHT, dist=10.0), 10.0)  # straight on: not a turn
    assert rule.update(junction_obs(Command.TURN_LEFT, dist=10.0), 10.0)  # 50 m to go
    for _ in range(49):  # 49 m at 10 m/s, the command already the next one's
        assert rule.update(junction_obs(Command.FOLLOW_LANE, dist=200.0), 10.0)
    assert not rule.update(junction_obs(Command.FOLLOW_LANE, dist=200.0), 10.0)
    assert not TurnKeeping(TurnKeepingConfig(enabled=False)).update(junction_obs(Command.TURN_LEFT, 5.0), 5.0)


def test_turn_keeping_holds_the_plan_to_a_left_turn_pocket_on_the_approach():
    """The route moves into a left-turn pocket that opens beside the through lane 40 m before the junction; the
    network's plan runs straight on. By default the rule holds the plan within a metre of the pocket from 50 m out
    (from 15 m, the default of before, urban 5001 had drifted on into the through lane, 4.5 m off the route)."""
    x = 8.0 * np.arange(1, 11)
    pocket = np.column_stack([x, np.clip((x - 10.0) * 0.15, 0.0, 3.5)])  # the route eases 3.5 m left over ~25 m
    obs = junction_obs(Command.TURN_LEFT, dist=40.0)
    obs["route_xy_ego_m"] = pocket.astype(np.float32)
    rule = TurnKeeping()
    assert rule.cfg.watch_m >= 40.0 and rule.update(obs, 10.0)
    straight = Plan(np.column_stack([5.0 * np.arange(1, 9), np.zeros(8), np.zeros(8)]), FORWARD)
    kept = rule.apply(straight, obs).poses
    off = np.abs(kept[:, 1] - np.interp(kept[:, 0], pocket[:, 0], pocket[:, 1]))
    assert np.all(off <= 1.05) and kept[-1, 1] > 2.0  # into the pocket (1 m square to the route), not straight on
    assert not TurnKeeping(TurnKeepingConfig(watch_m=15.0)).update(obs, 10.0)
    assert rule.yields_to_a_change(obs)  # 40 m out a lane change going on keeps the plan; 12 m out the turn is its
    assert not rule.yields_to_a_change(junction_obs(Command.TURN_LEFT, dist=12.0))


def test_a_lost_route_gives_no_line():
    """Where the route has a long segment (a lane change), the targets along it all read as its end: the line runs
    straight there; all targets in one place give no line to keep to."""
    repeated = np.array([[9.0, 2.0], [16.0, 2.2], [46.0, 6.6], [46.0, 6.6], [46.0, 6.6], [54.0, 6.8]])
    assert len(route_line(repeated)) == 5
    assert route_line(np.repeat([[37.8, 5.2]], 10, axis=0)) is None
    assert route_line(np.zeros((0, 2))) is None


def test_the_agent_yields_and_keeps_its_turn_and_both_are_off_for_the_network_alone(monkeypatch):
    from dualdrive.agents.e2e.agent import (TURN_KEEPING_ENV, YIELD_ENV, E2EAgent, network_alone,
                                            turn_keeping_from_env, yield_from_env)
    from dualdrive.agents.e2e.bench import synthetic_observation
    agent = E2EAgent(guard=False, probe=False, lights=False, park_assist=False)
    o = synthetic_observation(agent.info.config)
    o.update(junction_obs(Command.TURN_LEFT, dist=12.0))
    o["speed_mps"] = np.array([3.0], np.float32)
    r = radar([(40.0, 5.0, -8.0)], 3.0)
    o["radar_returns"] = np.vstack([r, np.zeros((31, 4), np.float32)])
    o["radar_num_returns"] = np.array([1], np.int32)
    plan = agent.act(o)
    assert plan.poses[:, 0].max() <= 12.0 + agent.yielding.cfg.wait_in_m + 1e-6
    assert agent.debug["phase"].startswith("yielding") and agent.yielding.yielded == 1
    again = agent.replan(o)  # the dual agent's second ask: the same stop, the rule not advanced
    assert again.poses[:, 0].max() <= 15.0 + 1e-6 and agent.yielding.yielded == 1
    assert agent.turn_keeping.left_m is not None  # a left turn 12 m ahead: turn keeping holds
    monkeypatch.delenv(YIELD_ENV, raising=False)
    monkeypatch.delenv(TURN_KEEPING_ENV, raising=False)
    assert yield_from_env() and turn_keeping_from_env()
    with network_alone():
        assert not yield_from_env() and not turn_keeping_from_env()
    monkeypatch.setenv(YIELD_ENV, "sometimes")
    with pytest.raises(ValueError, match="DUALDRIVE_E2E_YIELD"):
        yield_from_env()



def test_the_cli_switches_the_junction_rules_and_the_results_record_it(monkeypatch):
    import typer

    from dualdrive.agents.e2e.agent import TURN_KEEPING_ENV, YIELD_ENV
    from dualdrive.cli import _e2e_meta, _use_rules, app
    monkeypatch.setenv(YIELD_ENV, "1")  # monkeypatch restores both after the test
    monkeypatch.setenv(TURN_KEEPING_ENV, "1")
    _use_rules(None, None, False, False)  # --no-yield --no-turn-keeping
    meta = _e2e_meta(True, True)
    assert meta["e2e_yield"] == meta["e2e_turn_keeping"] == "off"
    _use_rules(None, None, None, True)  # --yield not given: the env var's setting stands
    meta = _e2e_meta(True, True)
    assert meta["e2e_yield"] == "off" and meta["e2e_turn_keeping"] == "on"
    for command in ("drive", "eval"):
        params = typer.main.get_command(app).commands[command].params
        flags = {o for p in params for o in (*p.opts, *p.secondary_opts)}
        assert {"--no-yield", "--no-turn-keeping"} <= flags
