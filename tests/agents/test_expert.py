"""Closed-loop expert episodes. The fast ones drive a short stretch or a small task; the full
episodes (and the long-tail events) are marked slow and run with `make test-all`."""
from __future__ import annotations

import numpy as np
import pytest

from dualdrive.agents.base import FORWARD, PLAN_POSES, Plan
from dualdrive.agents.expert.agent import ExpertAgent
from dualdrive.run.drive import drive_episode
from dualdrive.world.scenarios import EventConfig, ScenarioConfig


def _episode(family: str, seed: int, max_s: float | None = None, events: bool = False) -> dict:
    cfg = ScenarioConfig(family=family, max_duration_s=max_s,
                         events=EventConfig.all_on(family) if events else EventConfig())
    return drive_episode(ExpertAgent(), family, seed, None, cfg, video=False)


def _collisions(s: dict) -> list[dict]:
    return [i for i in s["infractions"] if i["type"].startswith("collision")]


def test_expert_plans_have_the_contract_shape():
    import gymnasium as gym
    from dualdrive.world.env import ENV_IDS
    env = gym.make(ENV_IDS["urban"], config=ScenarioConfig(family="urban"), disable_env_checker=True)
    obs, info = env.reset(seed=1)
    agent = ExpertAgent()
    agent.reset(info)
    plan = agent.act(obs)
    assert isinstance(plan, Plan) and plan.poses.shape == (PLAN_POSES, 3) and plan.gear == FORWARD
    assert np.all(np.isfinite(plan.poses))
    # the plan moves forward along the route at urban speed: 8 poses over 4 s, a few metres to a few tens
    assert 1.0 < plan.poses[-1, 0] < 60.0


@pytest.mark.parametrize("family,seed", [("highway", 1), ("urban", 2)])
def test_expert_drives_a_stretch_without_incident(family, seed):
    s = _episode(family, seed, max_s=25.0)
    assert not _collisions(s), s["infractions"]
    assert not any(i["type"] in ("red_light", "off_road") for i in s["infractions"]), s["infractions"]
    assert s["route_completion"] > 10.0  # it actually went somewhere


def test_expert_parks_from_the_lot_entrance():
    cfg = ScenarioConfig(family="parking", start_in_spot=False)
    s = drive_episode(ExpertAgent(), "parking", 0, None, cfg, video=False)
    assert s["success"], s
    assert s["parking_position_error_m"] < 0.5 and s["parking_heading_error_deg"] < 10.0
    assert not _collisions(s)


@pytest.mark.slow
def test_expert_leaves_a_spot_and_parks_again():
    cfg = ScenarioConfig(family="parking", start_in_spot=True)
    s = drive_episode(ExpertAgent(), "parking", 1, None, cfg, video=False)
    assert s["success"] and not _collisions(s), s


@pytest.mark.slow
@pytest.mark.parametrize("family", ["highway", "urban", "p2p"])
def test_expert_completes_full_episodes(family):
    for seed in range(3):
        s = _episode(family, seed)
        assert s["success"], (seed, s["infractions"], s["route_completion"])


@pytest.mark.slow
@pytest.mark.parametrize("family", ["highway", "urban"])
def test_expert_never_collides_with_events_on(family):
    for seed in range(3):
        s = _episode(family, seed, events=True)
        assert not _collisions(s), (seed, s["infractions"])


@pytest.mark.parametrize("seed", [35, 95])  # spots a few metres from the aisle's end, both neighbours taken
def test_leaving_a_spot_keeps_clear_of_the_neighbours(seed):
    import gymnasium as gym
    from dualdrive.planning.manoeuvre import path_is_free
    from dualdrive.world.env import ENV_IDS
    from dualdrive.world.world import EGO_LENGTH_M, EGO_WIDTH_M
    env = gym.make(ENV_IDS["p2p"], config=ScenarioConfig(family="p2p"), disable_env_checker=True)
    obs, info = env.reset(seed=seed)
    agent = ExpertAgent()
    agent.reset(info)
    w = env.unwrapped.world
    st = w.statics
    # the planned way out passes the parked cars with room to spare once out of the spot's own box
    segs = agent.tracker.segments
    assert path_is_free(segs, (st.xy, st.heading_rad, st.length_m, st.width_m), EGO_LENGTH_M, EGO_WIDTH_M,
                        clearance_m=0.2, skip_first_m=4.5)
    # and driving it touches nothing
    from dualdrive.agents.follower import TrajectoryFollower
    follower = TrajectoryFollower()
    for _ in range(150):
        obs, *_ = env.step(follower.update(agent.act(obs), w.ego_speed).to_action())
    assert not [i for i in w.summary()["infractions"] if i["type"].startswith("collision")]


def test_a_blocked_aisle_clears_and_the_expert_parks():
    s = _episode("parking", 0, events=True)
    assert any(e["event"] == "blocked_aisle" for e in s["events"])
    assert s["success"] and not _collisions(s)


@pytest.mark.slow
def test_a_permissive_left_turn_goes_when_the_oncoming_cars_are_held():
    # p2p seed 12: oncoming cars stand at their line for pedestrians through whole green phases;
    # the expert used to wait for them for ever
    s = _episode("p2p", 12)
    assert s["success"] and not _collisions(s)


@pytest.mark.slow
def test_expert_drives_through_the_roundabout():
    from dualdrive.world.scenarios import ScenarioConfig
    from dualdrive.world.world import World
    w = World(ScenarioConfig(family="urban"), 3)
    assert any(w.map.lanes[x].roundabout >= 0 for x in w.layout.route_lanes)  # the route goes round it
    s = _episode("urban", 3)
    assert s["success"], (s["infractions"], s["route_completion"])
