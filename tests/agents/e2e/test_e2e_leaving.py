"""The leaving-the-spot latch: the car finishes backing out of its bay after the command says FOLLOW_LANE."""
import numpy as np
import pytest

from dualdrive.agents.e2e.leaving import LeavingConfig, LeavingLatch, facing_route
from dualdrive.world.commands import Command

LEAVE, FOLLOW, PARK = int(Command.LEAVE_SPOT), int(Command.FOLLOW_LANE), int(Command.PARK)
# the route's targets 5 m apart, seen from a car crosswise in the aisle (the route goes off to its right)
CROSSWISE = np.array([[-2.0, -8.0], [-1.5, -13.0], [-1.0, -18.0]])
ALONG = np.array([[6.0, -0.5], [11.0, -0.8], [16.0, -1.0]])  # ... and from a car that has turned onto it


def test_it_holds_from_leave_spot_until_the_car_drives_along_its_route():
    latch = LeavingLatch()
    assert not latch.update(FOLLOW, 0.0, CROSSWISE)  # never without LEAVE_SPOT first
    assert latch.update(LEAVE, 0.0, CROSSWISE)
    assert latch.update(FOLLOW, -1.5, CROSSWISE)  # half out of the bay, backing up
    assert latch.update(FOLLOW, 0.0, ALONG)  # facing its way, but standing: not on its way yet
    assert latch.update(FOLLOW, 1.0, CROSSWISE)  # forwards, still crosswise (a multi-point turn)
    assert latch.update(PARK, 0.5, CROSSWISE)  # a car-park command holds it whatever the car does
    assert not latch.update(FOLLOW, 1.0, ALONG)  # forwards along the route: left
    assert not latch.update(FOLLOW, -1.0, CROSSWISE)  # ... and it does not come back on its own


def test_it_lets_the_car_reverse_only_while_it_stands_across_its_way():
    latch = LeavingLatch()
    latch.update(LEAVE, 0.0, CROSSWISE)
    assert latch.update(FOLLOW, -1.5, CROSSWISE) and latch.may_reverse  # the route lies behind, to the side
    diagonal = np.array([[6.0, -6.5], [11.0, -6.5]])  # 47 deg off the nose: where the expert drives off
    assert latch.update(FOLLOW, -1.0, diagonal) and not latch.may_reverse  # still leaving, but forwards now
    assert latch.update(FOLLOW, 0.0, CROSSWISE) and latch.may_reverse
    assert not latch.update(FOLLOW, 1.0, ALONG) and not latch.may_reverse
    latch.reset()
    assert not latch.may_reverse


def test_it_ends_at_road_speed_and_after_its_decision_limit():
    latch = LeavingLatch()
    latch.update(LEAVE, 0.0, CROSSWISE)
    assert not latch.update(FOLLOW, 3.5, CROSSWISE)
    latch = LeavingLatch(LeavingConfig(max_decisions=3))
    latch.update(LEAVE, 0.0, CROSSWISE)
    assert [latch.update(FOLLOW, -1.0, CROSSWISE) for _ in range(4)] == [True, True, True, False]
    latch.update(LEAVE, 0.0, CROSSWISE)
    assert latch.update(FOLLOW, -1.0, CROSSWISE)  # a new LEAVE_SPOT starts the count again
    latch.reset()
    assert not latch.active


def test_off_it_never_holds():
    latch = LeavingLatch(LeavingConfig(enabled=False))
    assert not latch.update(LEAVE, 0.0, CROSSWISE) and not latch.update(FOLLOW, -1.0, CROSSWISE)
    with pytest.raises(ValueError, match="aligned_deg"):
        LeavingConfig(aligned_deg=95.0)


def test_facing_route_reads_the_first_target_far_enough_ahead():
    assert facing_route(ALONG, 30.0, 4.0)
    assert not facing_route(CROSSWISE, 30.0, 4.0)
    assert not facing_route(-ALONG, 30.0, 4.0)  # behind the car
    near_then_ahead = np.array([[0.5, -2.0], [8.0, 1.0]])  # the first target is too near to tell
    assert facing_route(near_then_ahead, 30.0, 4.0)
    assert not facing_route(np.array([[1.0, 1.0]]), 30.0, 4.0)  # nothing far enough
    assert not facing_route(np.array([[np.nan, 0.0], [np.inf, 1.0]]), 30.0, 4.0)


def test_the_network_alone_has_no_latch_and_the_switch_is_checked(monkeypatch):
    from dualdrive.agents.e2e.agent import LEAVING_ENV, leaving_from_env, network_alone
    from dualdrive.cli import _e2e_meta
    monkeypatch.delenv(LEAVING_ENV, raising=False)
    assert leaving_from_env()
    with network_alone():  # DAgger's drives and open-loop scoring: the reverse rule as it always was
        assert not leaving_from_env()
        assert _e2e_meta(False, False)["e2e_leaving"] == "off"
    assert leaving_from_env()
    monkeypatch.setenv(LEAVING_ENV, "sometimes")
    with pytest.raises(ValueError, match="DUALDRIVE_E2E_LEAVING"):
        leaving_from_env()
