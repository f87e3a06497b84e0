"""The LiDAR plan guard: the rollout follows the plan, contacts are found where they are, and the
verdicts (drive it, ease the turn, the other gear, brake) are the ones the module promises."""
import numpy as np
import pytest

from dualdrive.agents.base import FORWARD, PLAN_DT_S, REVERSE, Plan
from dualdrive.agents.guard import (GuardConfig, PlanGuard, first_contact, obstacle_points, radar_targets, rollout,
                                    straightened, truncated, turned)


def straight(speed_mps: float, gear: int = FORWARD) -> Plan:
    t = PLAN_DT_S * np.arange(1, 9)
    return Plan(np.column_stack([gear * speed_mps * t, np.zeros(8), np.zeros(8)]), gear)


def arc(speed_mps: float, radius_m: float, gear: int = FORWARD) -> Plan:
    """A plan along a circle of ``radius_m`` (> 0: to the left), driven in ``gear``."""
    s = gear * speed_mps * PLAN_DT_S * np.arange(1, 9)
    th = s / radius_m
    return Plan(np.column_stack([radius_m * np.sin(th), radius_m * (1 - np.cos(th)), th]), gear)


def wall(x_m: float, y_from: float = -3.0, y_to: float = 3.0, z_m: float = 1.0) -> np.ndarray:
    """LiDAR returns (x, y, z, intensity) off a wall across the road at ``x_m``."""
    y = np.linspace(y_from, y_to, 60)
    return np.column_stack([np.full_like(y, x_m), y, np.full_like(y, z_m), np.full_like(y, 0.5)])


def bay(gap_m: float = 0.65, length_m: float = 5.0) -> np.ndarray:
    """Two cars parked beside the ego, ``gap_m`` from its sides, over the ego's length."""
    x = np.linspace(-length_m / 2, length_m / 2, 50)
    side = 1.0 + gap_m
    return np.vstack([np.column_stack([x, np.full_like(x, s * side), np.full_like(x, 1.2), np.full_like(x, 0.6)])
                      for s in (-1, 1)])


def stops(verdict) -> bool:
    """The guard changed the plan into one that comes to rest (the network's path, cut short)."""
    return verdict.reason is not None and np.allclose(verdict.plan.poses[-1], verdict.plan.poses[-2])


def test_rollout_follows_a_straight_plan_at_its_speed():
    poses = rollout(straight(5.0), 5.0, 0.0, horizon_s=2.0)
    assert poses.shape == (20, 3)
    np.testing.assert_allclose(poses[-1, 0], 10.0, atol=0.3)
    assert np.abs(poses[:, 1:]).max() < 1e-6


def test_rollout_turns_with_the_plan_and_reverses_with_it():
    left = rollout(arc(3.0, 10.0), 3.0, 0.0, horizon_s=2.0)
    assert left[-1, 1] > 0.5 and left[-1, 2] > 0.2
    back = rollout(straight(1.5, REVERSE), 0.0, 0.0, horizon_s=2.0)
    assert back[-1, 0] < -1.0 and np.all(np.diff(back[:, 0]) <= 1e-9)


def test_ground_and_overhead_returns_are_not_obstacles():
    pts = np.vstack([wall(5.0, z_m=0.02), wall(6.0, z_m=4.0), wall(7.0, z_m=1.0)])
    obs = obstacle_points(pts, GuardConfig())
    assert len(obs) == 60 and np.allclose(obs[:, 0], 7.0)


def test_contact_ahead_is_found_and_one_beside_the_path_is_not():
    poses = rollout(straight(5.0), 5.0, 0.0, horizon_s=2.0)
    k = first_contact(poses, obstacle_points(wall(8.0), GuardConfig()), 0.3, 0.1)
    assert k is not None and 3 <= k <= 12  # the bumper (2.5 m) plus the margin reaches x = 8 at ~5.2 m driven
    beside = obstacle_points(wall(8.0, y_from=1.5, y_to=3.0), GuardConfig())
    assert first_contact(poses, beside, 0.3, 0.1) is None


def test_points_already_inside_the_footprint_do_not_block_moving_away():
    inside = obstacle_points(wall(2.0, y_from=-0.5, y_to=0.5), GuardConfig())  # touching the front bumper
    poses = rollout(straight(1.0, REVERSE), 0.0, 0.0, horizon_s=2.0)
    assert first_contact(poses, inside, 0.2, 0.05) is None


def test_a_clear_plan_is_driven_unchanged():
    plan = straight(5.0)
    v = PlanGuard().check(plan, 5.0, 0.0, wall(40.0))
    assert v.plan is plan and v.reason is None


def test_a_plan_into_a_wall_at_speed_brakes_short_of_it():
    guard = PlanGuard()
    v = guard.check(straight(8.0), 8.0, 0.0, wall(9.0))
    assert stops(v) and guard.interventions == 1
    assert v.plan.gear == FORWARD and np.all(np.diff(v.plan.poses[:, 0]) >= -1e-9)
    stop_x = v.plan.poses[-1, 0]
    assert stop_x + 2.5 < 9.0 and np.allclose(v.plan.poses[-2], v.plan.poses[-1])  # it stops before the wall


def test_turning_out_of_a_bay_too_early_is_eased_into_backing_straight():
    guard = PlanGuard()
    tight = arc(1.5, 4.0, REVERSE)  # swings the front corner into the neighbour
    v = guard.check(tight, 0.0, 0.0, bay(), car_park=True)
    assert v.reason and "less turn" in v.reason and v.plan.gear == REVERSE
    assert np.abs(v.plan.poses[:, 1]).max() < np.abs(tight.poses[:, 1]).max()


def test_the_other_gears_plan_is_driven_when_this_one_is_blocked_in_the_car_park():
    guard = PlanGuard()
    blocked_ahead = wall(3.2)
    v = guard.check(straight(1.0), 0.0, 0.0, blocked_ahead, alternative=straight(1.0, REVERSE), car_park=True)
    assert v.plan.gear == REVERSE and guard.gear_swaps == 1
    # off a car-park manoeuvre, a wall 2 m off the bumper is a stop, not a reason to reverse
    v = PlanGuard().check(straight(1.0), 0.0, 0.0, wall(4.7), alternative=straight(1.0, REVERSE))
    assert v.plan.gear == FORWARD and stops(v)
    # nor when boxed in on a road: the way ahead is bent round what blocks it, never backed out of
    v = PlanGuard().check(straight(1.0), 0.0, 0.0, wall(3.2, y_from=-3.0, y_to=-0.95), alternative=straight(1.0, REVERSE))
    assert v.plan.gear == FORWARD and "turned +" in v.reason
    # at speed there is no gear swap and no path made up: it brakes
    v = PlanGuard().check(straight(6.0), 6.0, 0.0, wall(7.0), alternative=straight(1.0, REVERSE))
    assert v.plan.gear == FORWARD and stops(v)


def test_a_plan_that_clips_a_corner_ahead_is_turned_round_it():
    corner = np.array([[x, y, 1.0, 0.6] for x in np.linspace(4.5, 8.0, 20) for y in np.linspace(-3.0, -0.9, 10)])
    v = PlanGuard().check(straight(1.0), 1.0, 0.0, corner, car_park=True)
    assert v.reason and "turned +" in v.reason and v.plan.poses[-1, 1] > 0.3  # to the left, away from it
    # in town nothing is made up while the car is still rolling: it brakes
    v = PlanGuard().check(straight(1.0), 1.0, 0.0, corner)
    assert stops(v)


def test_stuck_off_the_car_park_it_backs_up_after_a_while_and_never_creeps_into_contact():
    guard = PlanGuard(GuardConfig(stuck_decisions=3))
    blocked = wall(2.9)  # 0.4 m off the bumper, right across
    verdicts = [guard.check(straight(1.0), 0.0, 0.0, blocked, alternative=straight(1.0, REVERSE)) for _ in range(3)]
    assert [v.plan.gear for v in verdicts] == [FORWARD, FORWARD, REVERSE]
    assert np.allclose(verdicts[0].plan.poses, 0.0)  # the contact is 0.2 m off: a stop where it stands


def test_a_disabled_guard_passes_every_plan():
    plan = straight(8.0)
    assert PlanGuard(GuardConfig(enabled=False)).check(plan, 8.0, 0.0, wall(5.0)).plan is plan


def test_truncated_keeps_the_path_up_to_the_cut_and_stops_there():
    plan = arc(4.0, 10.0)
    cut = truncated(plan, 5.0)
    path = np.vstack([[0.0, 0.0], cut.poses[:, :2]])
    assert np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1)) == pytest.approx(5.0, abs=1e-6)
    np.testing.assert_allclose(cut.poses[:2], plan.poses[:2])  # 4 m/s: the first two poses lie before 5 m
    assert np.allclose(cut.poses[3:], cut.poses[-1]) and cut.poses[-1, 1] > 0  # at rest, on the arc
    assert np.allclose(truncated(plan, 0.0).poses, 0.0)


def test_straightened_keeps_progress_and_scales_the_turn():
    plan = arc(3.0, 8.0)
    half = straightened(plan, 0.5)
    np.testing.assert_allclose(half.poses[:, 0], plan.poses[:, 0])
    np.testing.assert_allclose(half.poses[:, 1:], 0.5 * plan.poses[:, 1:])


def test_turned_rotates_the_plan_about_the_rear_axle():
    plan = turned(straight(2.0), np.pi / 2)
    np.testing.assert_allclose(plan.poses[:, 0], -2.5, atol=1e-9)  # the rear axle is 2.5 m behind the centre
    np.testing.assert_allclose(plan.poses[:, 2], np.pi / 2)
    assert np.all(plan.poses[:, 1] > 2.5)


@pytest.mark.parametrize("field,value", [("horizon_s", 0.0), ("margin_lat_m", -0.1), ("min_height_m", 3.0)])
def test_bad_guard_config_names_the_field(field, value):
    with pytest.raises(ValueError, match="guard"):
        GuardConfig(**{field: value})


def test_a_point_within_the_margin_still_blocks_driving_into_it():
    near = obstacle_points(wall(2.7, y_from=-0.5, y_to=0.5), GuardConfig())  # 0.2 m off the bumper
    poses = rollout(straight(1.0), 0.0, 0.0, horizon_s=2.0)
    assert first_contact(poses, near, 0.3, 0.1) is not None
    away = rollout(straight(1.0, REVERSE), 0.0, 0.0, horizon_s=2.0)
    assert first_contact(away, near, 0.3, 0.1) is None


def test_after_a_gear_change_it_keeps_to_that_gear_for_a_while():
    guard = PlanGuard(GuardConfig(commit_decisions=3))
    forward, back = straight(1.0), straight(1.0, REVERSE)
    assert guard.check(forward, 0.0, 0.0, wall(3.2), alternative=back, car_park=True).plan.gear == REVERSE
    open_road = wall(40.0)  # the way ahead is clear now, and the network wants to go forward again
    gears = [guard.check(forward, 0.0, 0.0, open_road, alternative=back, car_park=True).plan.gear for _ in range(5)]
    assert gears == [REVERSE] * 3 + [FORWARD] * 2
    # a committed gear that becomes blocked is dropped at once
    guard = PlanGuard(GuardConfig(commit_decisions=3))
    guard.check(forward, 0.0, 0.0, wall(3.2), alternative=back, car_park=True)
    assert guard.check(forward, 0.0, 0.0, wall(-3.2), alternative=back, car_park=True).plan.gear == FORWARD


def test_with_nothing_clear_it_drives_the_variant_that_goes_furthest_and_stops_there():
    block = np.array([[x, y, 1.0, 0.6] for x in np.linspace(3.0, 4.5, 10) for y in np.linspace(-3.0, -1.15, 10)])
    pts = np.vstack([block, wall(5.5)])
    guard = PlanGuard()
    plan = turned(straight(1.5), -0.3)  # sharp right, into the block 0.4 m on; straight on, the wall 2.8 m on
    v = guard.check(plan, 0.0, 0.0, pts)
    assert stops(v) and "less turn up to" in v.reason
    assert v.plan.poses[-1, 0] > 1.5 and v.plan.poses[-1, 0] + 2.5 < 5.5  # further than the network's, short of the wall


def radar_return(x_m: float, y_m: float, ground_vx_mps: float, ego_speed_mps: float, rcs_dbsm: float = 5.0) -> list:
    """The front radar's row (range, azimuth, radial velocity, RCS) for a target at (x, y) in the ego frame that
    moves along x at ``ground_vx_mps``, seen from the ego driving at ``ego_speed_mps``."""
    az = np.arctan2(y_m, x_m)
    return [np.hypot(x_m, y_m), az, (ground_vx_mps - ego_speed_mps) * np.cos(az), rcs_dbsm]


def test_radar_targets_take_the_egos_own_motion_out_of_the_doppler_velocity():
    cfg = GuardConfig()
    rows = np.array([radar_return(30.0, 0.0, 0.0, 20.0), radar_return(40.0, 0.5, 12.0, 20.0)])
    t = radar_targets(rows, 20.0, np.zeros((0, 2)), cfg)
    np.testing.assert_allclose(t[0], [30.0, 0.0, 0.0, 0.0], atol=1e-9)  # a car standing in the lane
    np.testing.assert_allclose(t[1], [40.0, 0.5, 12.0, 0.0], atol=1e-9)  # a slower car ahead, along the road
    wide = np.array([radar_return(3.0, 6.0, 0.0, 20.0)])  # 63 degrees off the nose: left to the LiDAR
    assert len(radar_targets(wide, 20.0, np.zeros((0, 2)), cfg)) == 0


def test_a_weak_echo_counts_only_where_the_lidar_sees_something():
    cfg = GuardConfig()
    weak = np.array([radar_return(30.0, 0.0, 0.0, 20.0, rcs_dbsm=-10.0)])
    assert len(radar_targets(weak, 20.0, np.zeros((0, 2)), cfg)) == 0  # clutter
    assert len(radar_targets(weak, 20.0, np.array([[30.4, 0.3]]), cfg)) == 1  # a cone the LiDAR sees too
    assert len(radar_targets(np.full((1, 4), np.nan), 20.0, np.zeros((0, 2)), cfg)) == 0


def test_rollout_at_speed_keeps_going_past_the_end_of_the_plan():
    poses = rollout(straight(20.0), 20.0, 0.0, 6.0, 0.2)  # 6 s of a 4 s plan: the car re-plans, it does not brake
    assert len(poses) == 30 and poses[-1, 0] == pytest.approx(120.0, rel=0.02)
    assert np.diff(poses[:, 0]).min() > 0.95 * 20.0 * 0.2


@pytest.mark.parametrize("lead_mps, verdict", [(11.0, "follows"), (0.0, "stops"), (24.0, None)])
def test_at_speed_the_radar_follows_a_slower_car_stops_for_a_standing_one_and_leaves_one_keeping_pace(lead_mps,
                                                                                                      verdict):
    guard = PlanGuard()
    lidar = wall(35.0, -1.0, 1.0)  # the lead car's rear, as the LiDAR sees it now (it cannot tell its speed)
    v = guard.check(straight(24.0), 24.0, 0.0, lidar, radar=np.array([radar_return(35.0, 0.0, lead_mps, 24.0)]))
    if verdict is None:
        assert v.reason is None
    elif verdict == "stops":  # cut short of the car: the follower brakes to a stop there
        assert stops(v) and v.plan.poses[-1, 0] < 35.0 - 2.5 and "touches" in v.reason
    else:  # slowed towards the car's speed along the same path, as gently as clears it, not stopped
        speeds = np.diff(np.concatenate([[0.0], v.plan.poses[:, 0]])) / PLAN_DT_S
        assert not stops(v) and "slowing" in v.reason and np.all(np.diff(speeds) <= 1e-9)
        assert 11.0 - 1e-6 <= speeds[-1] <= 13.0 and speeds[0] > 20.0  # towards its 11 m/s, never below
        assert np.allclose(v.plan.poses[:, 1:], 0.0)


@pytest.mark.parametrize("y_m, vx_mps", [(3.0, 5.0), (3.5, -12.0)])
def test_the_radar_does_not_brake_for_cars_in_the_next_lane_slower_or_oncoming(y_m, vx_mps):
    v = PlanGuard().check(straight(24.0), 24.0, 0.0, wall(30.0, y_m, y_m + 2.0),
                          radar=np.array([radar_return(30.0, y_m, vx_mps, 24.0)]))
    assert v.reason is None


def test_the_radar_is_not_read_through_a_turn():
    """Its velocity is read along the car's heading: mid-turn that is not the road's, so a turning plan is left to
    the LiDAR check (and here a car standing where the turn goes would stop the car if the radar were read)."""
    turning = arc(8.0, 25.0)
    assert abs(turning.poses[-1, 2]) > np.radians(GuardConfig().radar_max_turn_deg)
    x, y = turning.poses[4, :2]  # 2.5 s into the turn, on its path
    target = np.array([radar_return(x, y, 0.0, 8.0)])
    assert np.degrees(abs(target[0, 1])) < GuardConfig().radar_max_azimuth_deg
    read_anyway = PlanGuard(GuardConfig(radar_max_turn_deg=180.0)).check(turning, 8.0, 0.0, np.zeros((0, 4)),
                                                                         radar=target)
    assert read_anyway.reason is not None  # the target is on the turning path: the gate is what lets it pass
    assert PlanGuard().check(turning, 8.0, 0.0, np.zeros((0, 4)), radar=target).reason is None
    straight_on = PlanGuard().check(straight(8.0), 8.0, 0.0, np.zeros((0, 4)),
                                    radar=np.array([radar_return(20.0, 0.0, 0.0, 8.0)]))
    assert stops(straight_on)


def test_with_the_radar_part_off_only_the_lidar_is_checked():
    lead = np.array([radar_return(35.0, 0.0, 0.0, 24.0)])  # standing in the lane, beyond the LiDAR's 0.8 s
    assert PlanGuard().check(straight(24.0), 24.0, 0.0, np.zeros((0, 4)), radar=lead).reason is not None
    assert PlanGuard(GuardConfig(radar=False)).check(straight(24.0), 24.0, 0.0, np.zeros((0, 4)), radar=lead).reason is None


@pytest.mark.parametrize("field, value, says", [("radar_max_azimuth_deg", 90.0, "radar_max_azimuth_deg"),
                                                ("radar_margin_long_m", -1.0, "margins must be >= 0"),
                                                ("radar_follow_decels_mps2", (1.5, 0.0), "radar_follow_decels")])
def test_bad_radar_config_is_refused(field, value, says):
    with pytest.raises(ValueError, match=says):
        GuardConfig(**{field: value})
