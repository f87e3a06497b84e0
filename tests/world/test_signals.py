import numpy as np

from dualdrive.world.signals import ALL_RED_S, AMBER_S, GREEN_S, LEFT_ARROW_S, Light, SignalController


def test_cycle_red_amber_green_and_never_conflicting():
    ctl = SignalController(4, [{"groups": [0, 1, 2, 3], "protected_left": True}], np.array([0.0]))
    cycle = 2 * (LEFT_ARROW_S + GREEN_S + AMBER_S + ALL_RED_S)
    seen = {g: set() for g in range(4)}
    for t in np.arange(0, cycle, 0.1):
        st = ctl.states(t)
        for g in range(4):
            seen[g].add(int(st[g]))
        ns_moving = st[0] != Light.RED or st[1] != Light.RED
        ew_moving = st[2] != Light.RED or st[3] != Light.RED
        assert not (ns_moving and ew_moving), f"conflicting greens at t={t}"
    for g in range(4):
        assert seen[g] == {Light.RED, Light.AMBER, Light.GREEN}
    # periodic
    assert np.array_equal(ctl.states(3.0), ctl.states(3.0 + cycle))
    # the protected-left arrow comes first: only the NS left group is green at t=1
    assert ctl.states(1.0).tolist() == [Light.RED, Light.GREEN, Light.RED, Light.RED]
    # amber follows green and lasts AMBER_S
    t_amber = LEFT_ARROW_S + GREEN_S + 0.5
    assert ctl.states(t_amber)[0] == Light.AMBER
    assert ctl.states(t_amber + AMBER_S)[0] == Light.RED
