"""The dual agent: System 2's decisions reach System 1's plan, checked, aged and logged; a System 2
that talks nonsense, raises or is late changes nothing."""
from __future__ import annotations

import time

import numpy as np
import pytest

from dualdrive.agents.base import Agent, Plan
from dualdrive.agents.dual.agent import DualAgent, DualConfig, _path_length
from dualdrive.planning.retime import retime_plan
from dualdrive.vlm.answer import VLMAnswer, render_answer
from dualdrive.vlm.backend import VLMReply, reply_from_text


class Straight(Agent):
    """System 1 stand-in: straight ahead at 10 m/s."""
    name = "straight"
    uses_sensors = True

    def act(self, observation):
        return Plan(np.column_stack([5.0 * np.arange(1, 9), np.zeros(8), np.zeros(8)]))


class Says:
    name = "fake"

    def __init__(self, text: str | None = None, actions=("stop",), error: Exception | None = None, delay_s=0.0):
        self.text = text if text is not None else render_answer(VLMAnswer("urban", "red", meta_actions=tuple(actions)))
        self.error, self.delay_s = error, delay_s

    def ask(self, image, prompt) -> VLMReply:
        time.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return reply_from_text(self.text, self.delay_s)


def _obs(speed=5.0):
    return {"speed_mps": np.array([speed], np.float32), "command": np.array([0], np.int8),
            "command_distance_m": np.array([50.0], np.float32), "camera_front_rgb": np.zeros((96, 192, 3), np.uint8),
            "camera_front_valid": np.array([1], np.int8)}


def _drive(agent: DualAgent, ticks: int, speed=5.0) -> Plan:
    plan = None
    for _ in range(ticks):
        plan = agent.act(_obs(speed))
        for _ in range(200):  # let the System 2 thread finish before the next tick (deterministic test)
            if not agent.s2.busy:
                break
            time.sleep(0.005)
    return plan


def _stops(plan: Plan) -> bool:
    return bool(np.allclose(plan.poses[-1], plan.poses[-2]))


def test_a_stop_from_system_2_brakes_system_1s_plan_to_a_standstill():
    agent = DualAgent(system1=Straight(), backend=Says(actions=("stop", "wait")))
    plan = _drive(agent, 3)
    assert _stops(plan) and plan.poses[-1, 0] < 40.0
    assert np.allclose(plan.poses[:, 1], 0.0)  # on System 1's own path
    assert agent.s2_log and agent.s2_log[0]["meta_actions"] == ["stop", "wait"]
    assert "S2" in agent.debug["phase"]


def test_a_stop_too_late_to_make_comfortably_is_not_taken():
    agent = DualAgent(system1=Straight(), backend=Says(actions=("stop",)))
    plan = _drive(agent, 3, speed=30.0)  # 30 m/s: 112 m to stop at 4 m/s^2, the plan reaches 40 m
    assert not _stops(plan) and "not taken" in agent.debug["phase"]


def test_nonsense_failures_and_stale_answers_change_nothing():
    straight = Straight().act({})
    for backend in (Says(text="blah blah 42"), Says(error=RuntimeError("GPU on fire"))):
        agent = DualAgent(system1=Straight(), backend=backend)
        plan = _drive(agent, 3)
        np.testing.assert_allclose(plan.poses, straight.poses)
        assert agent.s2_log and "error" in agent.s2_log[0]
    agent = DualAgent(DualConfig(max_guidance_age_s=0.25, s2_rate_hz=0.01), system1=Straight(), backend=Says())
    _drive(agent, 2)
    assert agent.guidance is not None
    plan = _drive(agent, 5)  # 0.5 s later the stop is stale
    np.testing.assert_allclose(plan.poses, straight.poses)
    assert agent.guidance is None


def test_the_dual_agent_drives_closed_loop_with_the_shipped_models():
    from dualdrive.agents.base import reset_info_for
    from dualdrive.agents.follower import TrajectoryFollower
    from dualdrive.run.drive import env_for
    from dualdrive.world.env import ENV_IDS
    from dualdrive.world.scenarios import ScenarioConfig
    agent = DualAgent(DualConfig(s2_rate_hz=2.0))
    env = env_for(agent, ENV_IDS["urban"], ScenarioConfig(family="urban"))
    obs, info = env.reset(seed=5000)
    agent.reset(reset_info_for(agent, info))
    follower, world = TrajectoryFollower(), env.unwrapped.world
    for _ in range(60):
        d = agent.act(obs)
        c = follower.update(d, world.ego_speed) if isinstance(d, Plan) else d
        obs, _, term, trunc, _ = env.step(c.to_action())
        if term or trunc:
            break
    time.sleep(0.5)
    agent._collect()
    env.close()
    assert agent.s2_log, "System 2 never answered in 6 s"
    assert all("meta_actions" in e or "error" in e for e in agent.s2_log)


def _moves(plan: Plan) -> bool:
    return float(np.linalg.norm(plan.poses[-1, :2])) > 1.0


def test_system_2_cannot_hold_the_car_standing_for_ever():
    """A VLM that says "wait" at a standstill for ever (as the builtin one did in front of a stalled car) keeps the
    car standing for ``max_hold_s``; then System 1 drives until the car has gone ``release_distance_m``."""
    cfg = DualConfig(max_hold_s=2.0, release_distance_m=5.0)
    agent = DualAgent(cfg, system1=Straight(), backend=Says(actions=("wait",)))
    assert not _moves(_drive(agent, 15, speed=0.0))  # 1.5 s: System 2's wait holds
    assert _moves(_drive(agent, 10, speed=0.0))  # past 2 s: set aside, System 1's plan stands
    assert "set aside" in agent.debug["phase"] and any("released" in e for e in agent.s2_log)
    assert _moves(_drive(agent, 9, speed=5.0))  # 4.5 m driven: still System 1's
    assert _stops(_drive(agent, 2, speed=5.0))  # 5 m on: System 2 may stop the car again
    # a hold System 1 agrees with (its own plan stands still too) is no hold: it never runs out
    agent = DualAgent(cfg, system1=Standing(), backend=Says(actions=("wait",)))
    _drive(agent, 40, speed=0.0)
    assert not any("released" in e for e in agent.s2_log)


class Standing(Agent):
    """System 1 stand-in that waits itself."""
    name = "standing"
    uses_sensors = True

    def act(self, observation):
        return Plan(np.zeros((8, 3)))


def test_repeated_slow_downs_do_not_compound_into_a_crawl():
    agent = DualAgent(system1=Straight(), backend=Says(actions=("slow down",)))
    straight = Straight().act({})
    _drive(agent, 3, speed=10.0)  # the first "slow down" arrives at 10 m/s: the cap is 7 m/s
    later = _drive(agent, 30, speed=7.0)  # three more, each seen at 7 m/s: still 7, not 4.9, 3.4, 2.4
    np.testing.assert_allclose(later.poses, retime_plan(straight, 7.0, max_speed_mps=7.0).poses)
    assert not np.allclose(later.poses, retime_plan(straight, 7.0, max_speed_mps=0.7 * 7.0).poses)


def test_a_slow_down_is_not_a_stop():
    """From a standstill 0.7 x 0 m/s would hold the car where it is: "slow down" keeps a floor."""
    agent = DualAgent(system1=Straight(), backend=Says(actions=("slow down",)))
    plan = _drive(agent, 3, speed=0.0)
    np.testing.assert_allclose(plan.poses, retime_plan(Straight().act({}), 0.0, max_speed_mps=2.0).poses)
    assert _moves(plan)


class Guided(Agent):
    """System 1 stand-in with a guidance input: stands when told to stop, else drives straight on."""
    name = "guided"
    uses_sensors = True

    def __init__(self):
        from types import SimpleNamespace
        self.info = SimpleNamespace(config=SimpleNamespace(guidance_classes=8))

    def act(self, observation):
        from dualdrive.agents.e2e.guidance import GUIDANCE
        if int(np.asarray(observation.get("guidance", [0])).reshape(-1)[0]) == GUIDANCE.index("stop"):
            return Plan(np.zeros((8, 3)))
        return Straight().act(observation)


def test_a_guided_system_1_is_released_from_a_hold_too():
    agent = DualAgent(DualConfig(max_hold_s=2.0, release_distance_m=5.0), system1=Guided(),
                      backend=Says(actions=("wait",)))
    assert agent.s1_takes_guidance
    assert not _moves(_drive(agent, 15, speed=0.0))  # System 2's "wait" reaches System 1 as "stop"
    assert _moves(_drive(agent, 10, speed=0.0)) and any("released" in e for e in agent.s2_log)
    assert _moves(_drive(agent, 5, speed=0.0))  # released: the stop is no longer handed to System 1


class Counts(Says):
    """A System 2 whose answers change with each question: stop, then slow down, then keep lane, ..."""

    def __init__(self, delay_s=0.0):
        super().__init__(delay_s=delay_s)
        self.n = 0

    def ask(self, image, prompt) -> VLMReply:
        time.sleep(self.delay_s)
        actions = (("stop",), ("slow down",), ("keep lane",))[self.n % 3]
        self.n += 1
        return reply_from_text(render_answer(VLMAnswer("urban", "red", meta_actions=actions)), self.delay_s)


def test_system_2_in_step_answers_at_its_simulated_latency_on_every_run():
    logs = []
    for delay_s in (0.0, 0.03):  # however long the backend takes in wall time
        agent = DualAgent(DualConfig(s2_sim_latency_s=0.3), system1=Straight(), backend=Counts(delay_s))
        for _ in range(35):
            agent.act(_obs())
        logs.append([(e["t_s"], e["frame_t_s"], e["meta_actions"]) for e in agent.s2_log])
    assert logs[0] == logs[1]
    # asked at 0, 1, 2, 3 s (1 Hz); each answer is handed over 0.3 s of simulation time after its frame
    assert [(t, f) for t, f, _ in logs[0]] == [(0.3, 0.0), (1.3, 1.0), (2.3, 2.0), (3.3, 3.0)]
    assert [a for _, _, a in logs[0]] == [["stop"], ["slow down"], ["keep lane"], ["stop"]]


def test_system_2_latency_comes_from_the_environment_and_is_checked(monkeypatch):
    from dualdrive.agents.dual.agent import S2_LATENCY_ENV
    monkeypatch.setenv(S2_LATENCY_ENV, "0.5")
    assert DualAgent(system1=Straight(), backend=Says()).s2_sim_latency_s == 0.5
    monkeypatch.setenv(S2_LATENCY_ENV, "soon")
    with pytest.raises(ValueError, match="not a number"):
        DualAgent(system1=Straight(), backend=Says())
    monkeypatch.delenv(S2_LATENCY_ENV)
    with pytest.raises(ValueError, match="0-10 s"):
        DualAgent(DualConfig(s2_sim_latency_s=-1.0), system1=Straight(), backend=Says())
    assert DualAgent(system1=Straight(), backend=Says()).s2_sim_latency_s is None  # the real thread


def test_a_dual_drive_with_system_2_in_step_is_reproducible():
    """The shipped System 1 and builtin VLM: two runs at a simulated latency say and drive the same."""
    from dualdrive.run.drive import drive_episode
    from dualdrive.world.scenarios import ScenarioConfig
    runs = []
    for _ in range(2):
        agent = DualAgent(DualConfig(s2_sim_latency_s=0.3))
        summary = drive_episode(agent, "urban", 5000, config=ScenarioConfig(family="urban", max_duration_s=3.0),
                                video=False)
        runs.append(([(e["t_s"], e.get("meta_actions")) for e in agent.s2_log], summary["route_completion"]))
    assert runs[0][0] and runs[0] == runs[1]


def test_eval_refuses_a_bad_system_2_latency():
    from typer.testing import CliRunner

    from dualdrive.cli import app
    r = CliRunner().invoke(app, ["eval", "--agent", "dual", "--suite", "longtail", "--s2-latency", "30"])
    assert r.exit_code != 0 and "--s2-latency 30" in r.output and "Traceback" not in r.output


def test_only_the_decisions_in_plan_actions_touch_system_1s_plan():
    straight = Straight().act({})
    agent = DualAgent(DualConfig(plan_actions=("slow down",)), system1=Straight(), backend=Says(actions=("stop",)))
    plan = _drive(agent, 3)
    np.testing.assert_allclose(plan.poses, straight.poses)
    assert "not acted on" in agent.debug["phase"]
    agent = DualAgent(DualConfig(plan_actions=("slow down",)), system1=Straight(), backend=Says(actions=("slow down",)))
    assert _path_length(_drive(agent, 3)) < _path_length(straight)


class SaysSure(Says):
    """System 2 stand-in that is ``confidence`` sure of its answer."""

    def __init__(self, confidence: float | None, actions=("stop",)):
        super().__init__(actions=actions)
        self.confidence = confidence

    def ask(self, image, prompt) -> VLMReply:
        from dataclasses import replace
        return replace(super().ask(image, prompt), confidence=self.confidence)


def test_an_answer_below_the_confidence_threshold_is_logged_but_not_acted_on():
    straight = Straight().act({})
    agent = DualAgent(DualConfig(min_confidence=0.8), system1=Straight(), backend=SaysSure(0.6))
    plan = _drive(agent, 3)
    np.testing.assert_allclose(plan.poses, straight.poses)  # System 1 alone
    assert agent.s2_log[0]["unsure"].startswith("confidence 0.60 < 0.8") and agent.s2_log[0]["meta_actions"] == ["stop"]
    assert "unsure" in agent.debug["phase"]
    for sure in (SaysSure(0.9), SaysSure(None)):  # sure enough, or a backend that gives no confidence
        agent = DualAgent(DualConfig(min_confidence=0.8), system1=Straight(), backend=sure)
        assert _stops(_drive(agent, 3))


def test_an_unsure_answer_ends_the_decision_before_it():
    class Then(Says):
        def __init__(self):
            super().__init__()
            self.n = 0

        def ask(self, image, prompt):
            from dataclasses import replace
            self.n += 1
            return replace(super().ask(image, prompt), confidence=0.95 if self.n == 1 else 0.3)
    agent = DualAgent(DualConfig(min_confidence=0.8, s2_sim_latency_s=0.0), system1=Straight(), backend=Then())
    plans = [agent.act(_obs()) for _ in range(12)]
    assert _stops(plans[2])  # the sure stop, asked at 0 s
    plan = plans[-1]  # the unsure answer asked at 1 s: System 1 drives on its own
    assert agent.s2_log[1].get("unsure")
    np.testing.assert_allclose(plan.poses, Straight().act({}).poses)


def test_the_confidence_threshold_comes_from_the_environment_and_is_checked(monkeypatch):
    from dualdrive.agents.dual.agent import S2_CONFIDENCE_ENV
    assert DualAgent(system1=Straight(), backend=Says()).min_confidence == 0.0
    monkeypatch.setenv(S2_CONFIDENCE_ENV, "0.7")
    assert DualAgent(system1=Straight(), backend=Says()).min_confidence == 0.7
    monkeypatch.setenv(S2_CONFIDENCE_ENV, "high")
    with pytest.raises(ValueError, match="not a number"):
        DualAgent(system1=Straight(), backend=Says())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DualAgent(DualConfig(min_confidence=1.5), system1=Straight(), backend=Says())
    from typer.testing import CliRunner

    from dualdrive.cli import app
    monkeypatch.delenv(S2_CONFIDENCE_ENV)
    r = CliRunner().invoke(app, ["eval", "--agent", "dual", "--suite", "longtail", "--s2-min-confidence", "2"])
    assert r.exit_code != 0 and "--s2-min-confidence 2" in r.output and "Traceback" not in r.output


def test_system1_asked_again_in_a_tick_goes_through_replan():
    """An E2E System 1 keeps per-tick state (the leaving latch, the red-light rule, the parking assist's odometry):
    the dual agent's second question in a tick must not advance it (E2EAgent.replan); a System 1 without replan
    is asked through act."""
    class Counting(Straight):
        def __init__(self) -> None:
            self.acts = self.replans = 0

        def act(self, observation):
            self.acts += 1
            return super().act(observation)

        def replan(self, observation):
            self.replans += 1
            return super().act(observation)

    s1 = Counting()
    agent = DualAgent(system1=s1, backend=Says())
    agent._s1_again({})
    assert (s1.acts, s1.replans) == (0, 1)
    plain = DualAgent(system1=Straight(), backend=Says())
    assert plain._s1_again({}).poses.shape == (8, 3)
