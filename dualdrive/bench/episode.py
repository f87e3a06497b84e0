"""One benchmark episode: drive, record the log, score it. Agent failures become failed episodes.

An agent that raises, returns NaN or something that is neither a Plan nor a Control ends its
episode there: the episode is scored on what was driven (success False) and carries the reason.
Episodes on a stock highway-env environment (``env_id``) are scored from what that env provides.
"""
from __future__ import annotations

import functools
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from dualdrive.agents.base import Control, Plan, reset_info_for
from dualdrive.agents.follower import TrajectoryFollower
from dualdrive.agents.registry import load_agent
from dualdrive.bench.metrics import CARLA_PENALTY, episode_metrics, instruction_scores
from dualdrive.bench.recorder import EpisodeRecorder
from dualdrive.run.drive import env_for
from dualdrive.world.env import ENV_IDS
from dualdrive.world.scenarios import ScenarioConfig

PDMS_ZERO = {"pdms": 0.0, "nc": 0.0, "dac": 0.0, "ttc": 0.0, "ep": 0.0, "comfort": 0.0}
STOCK_MAX_STEPS = 10_000  # a stock env that never ends is cut here (and counts as truncated early)


class AgentFailure(RuntimeError):
    """The agent raised, or returned something the loop cannot drive."""


@dataclass(frozen=True)
class EpisodeJob:
    scenario: str  # suite scenario name (or the stock env id)
    seed: int
    config: dict | None = None  # ScenarioConfig as a dict; None for a stock env
    env_id: str | None = None  # a stock highway-env id instead of a dualdrive scenario
    instruction: str | None = None  # a passenger's instruction, given `instruction_at_s` into the drive
    instruction_at_s: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.scenario}/{self.seed}"


def run_job(agent_name: str, job: EpisodeJob, record_dir: str | None = None) -> dict:
    """Drive one episode and return its row for results.json (never raises for agent faults)."""
    t0 = time.perf_counter()
    try:
        if job.env_id is not None:
            row = _stock_episode(agent_name, job)
        else:
            row = _dualdrive_episode(agent_name, job, record_dir)
    except AgentFailure as e:  # the agent cannot drive this env at all (said why)
        row = _failed_row(job, str(e))
    except Exception as e:  # a fault outside the agent (a world bug): still one failed row, not a lost run
        row = _failed_row(job, f"crashed: {type(e).__name__}: {e}", traceback.format_exc())
    row["wall_s"] = round(time.perf_counter() - t0, 3)
    return row


@functools.lru_cache(maxsize=1)
def _instruction_parser():
    """One parser per worker process (loading the embedding model takes seconds)."""
    from dualdrive.instructions.parser import InstructionParser
    return InstructionParser()


def _decide(agent, obs):
    try:
        decision = agent.act(obs)
    except Exception as e:
        raise AgentFailure(f"agent raised {type(e).__name__}: {e}") from e
    return decision


def _dualdrive_episode(agent_name: str, job: EpisodeJob, record_dir: str | None) -> dict:
    cfg = ScenarioConfig.from_dict(job.config)
    agent = load_agent(agent_name)
    understood = None
    if job.instruction is not None:
        from dualdrive.instructions.agent import InstructedAgent
        understood = _instruction_parser().understand(job.instruction)
        agent = InstructedAgent(agent, understood.intent, job.instruction_at_s)
    env = env_for(agent, ENV_IDS[cfg.family], cfg)
    obs, info = env.reset(seed=job.seed)
    world = env.unwrapped.world
    agent.reset(reset_info_for(agent, {**info, "action_space": env.action_space, "seed": job.seed}))
    follower = TrajectoryFollower()
    rec = EpisodeRecorder(world)
    frames, renderer = [], None
    if record_dir is not None:
        from dualdrive.viz.render import TopDownRenderer
        renderer = TopDownRenderer(world)
    error, done = None, False
    while not done:
        try:
            decision = _decide(agent, obs)
            if isinstance(decision, Plan):
                control = follower.update(decision, world.ego_speed)
            elif isinstance(decision, Control):
                control = decision
            else:
                raise AgentFailure(f"agent returned {type(decision).__name__}, not a Plan or a Control")
            action = control.to_action()
            if not np.all(np.isfinite(action)):
                raise AgentFailure(f"agent's control is not finite: {action.tolist()}")
        except AgentFailure as e:
            error = str(e)
            break
        except ValueError as e:  # a malformed Plan (NaN poses, wrong shape) fails in its constructor
            error = f"agent returned a malformed plan: {e}"
            break
        if renderer is not None:
            frames.append(renderer.frame(None, f"{job.key}  t={world.t:5.1f}s  v={world.ego_speed:4.1f} m/s"))
        obs, _, terminated, truncated, info = env.step(action)
        rec.record()
        done = terminated or truncated
    summary = world.summary()
    if error is not None:
        summary["success"] = False
    log = rec.finish(agent_name, summary, {"scenario": job.scenario, "error": error})
    env.close()
    row = {"scenario": job.scenario, "seed": job.seed, "family": cfg.family, "status": "ok" if error is None else "failed",
           "error": error, **episode_metrics(log), "log_path": None, "video_path": None}
    if understood is not None:
        row.update({"instruction": job.instruction, "instruction_status": understood.status.value,
                    "instruction_intent": understood.intent.slots(), "instruction_reply": understood.reply,
                    **instruction_scores(log, understood.intent.slots(), understood.status.value, job.instruction_at_s)})
    if error is not None:
        row.update(PDMS_ZERO)  # an agent that failed has no plan to score: NAVSIM gives such a scene 0
    if record_dir is not None:
        out = Path(record_dir) / job.scenario
        row["log_path"] = str(log.save(out / f"{job.seed}.npz"))
        if frames:
            import imageio.v2 as imageio
            imageio.mimwrite(out / f"{job.seed}.mp4", frames, fps=10, macro_block_size=16)
            row["video_path"] = str(out / f"{job.seed}.mp4")
    return row


# a stock env driven by Plans/Controls: highway-env's continuous (acceleration, steering) action at 10 Hz, the
# rate dualdrive's agents and follower run at (simulation at the same rate, so one step is 0.1 s of driving)
PLAN_DRIVEN_STOCK_CONFIG = {"action": {"type": "ContinuousAction"}, "simulation_frequency": 10, "policy_frequency": 10}
# the stock envs that run so (highway-env 1.12: merge-v0 and roundabout-v0 score lane changes of the discrete
# action in their rewards, two-way-v0 and u-turn-v0 need its target speeds; parking-v0 not tried)
PLAN_DRIVEN_STOCK_ENVS = ("highway-v0", "highway-fast-v0", "intersection-v0")


def stock_action(control: Control, action_type) -> np.ndarray:
    """A follower's control as highway-env's ContinuousAction: each of acceleration and front-wheel angle
    mapped from the action type's own range onto [-1, 1] (clipped: the env caps them there too). A stock
    vehicle drives forward only: a reverse control brakes."""
    lo_a, hi_a = action_type.acceleration_range
    lo_s, hi_s = action_type.steering_range
    accel = control.accel_mps2 if control.gear >= 0 else -abs(control.accel_mps2)
    a = 2.0 * (accel - lo_a) / (hi_a - lo_a) - 1.0
    s = 2.0 * (control.steer_rad - lo_s) / (hi_s - lo_s) - 1.0
    return np.clip(np.array([a, s], np.float32), -1.0, 1.0)


def _stock_episode(agent_name: str, job: EpisodeJob) -> dict:
    """A stock highway-env env: success = no crash and not truncated early; RC = share of the env's
    duration driven; IS = the vehicle-collision penalty if it crashed. An agent that plans (every
    dualdrive driver but the reference ones) drives it through the trajectory follower, with the
    navigation route of :mod:`dualdrive.sensors.stock_nav` in its sensor observation."""
    import highway_env  # noqa: F401  (registers the stock envs)
    agent = load_agent(agent_name)
    plans = not agent.stock_actions
    if plans:
        env, obs, info = _plan_driven_stock_env(job)
    else:
        env = env_for(agent, job.env_id)
        obs, info = env.reset(seed=job.seed)
    cfg = env.unwrapped.config
    agent.reset({**reset_info_for(agent, info), "action_space": env.action_space, "seed": job.seed, "stock_env": True,
                 "dt_s": 1.0 / float(cfg.get("policy_frequency", 1))})
    follower = TrajectoryFollower() if plans else None
    duration_s = float(cfg.get("duration", 40))
    crashed, steps, error, terminated, truncated = False, 0, None, False, False
    while not (terminated or truncated) and steps < STOCK_MAX_STEPS:
        try:
            action = _decide(agent, obs)
            if plans:
                action = _stock_control(action, follower, float(env.unwrapped.vehicle.speed), env.unwrapped.action_type)
            elif isinstance(action, (Plan, Control)):
                raise AgentFailure("agent returns dualdrive Plans/Controls but says stock_actions=True; a stock env "
                                   f"needs its own actions (action space {env.action_space})")
            if not env.action_space.contains(np.asarray(action, dtype=env.action_space.dtype)
                                             if not np.isscalar(action) else action):
                raise AgentFailure(f"agent action {action!r} is outside the env's action space {env.action_space}")
        except AgentFailure as e:
            error = str(e)
            break
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        crashed = crashed or bool(info.get("crashed", False))
    t_s = float(getattr(env.unwrapped, "time", steps / cfg.get("policy_frequency", 1)))
    env.close()
    rc = 100.0 * min(1.0, t_s / max(duration_s, 1e-6)) if not (terminated and not crashed) else 100.0
    inf = CARLA_PENALTY["collision_vehicle"] if crashed else 1.0
    success = error is None and not crashed and (terminated or truncated)
    return {"scenario": job.scenario, "seed": job.seed, "family": "stock", "status": "ok" if error is None else "failed",
            "error": error, "route_completion": rc, "infraction_score": 100.0 * inf, "driving_score": rc * inf,
            "success": success, "success_rate": 100.0 if success else 0.0, "duration_s": t_s,
            "infractions": {"collision_vehicle": 1} if crashed else {}, "blocked": False,
            "timeout": False, "log_path": None, "video_path": None}


def _plan_driven_stock_env(job: EpisodeJob):
    """The stock env with continuous actions at 10 Hz, in the sensor suite (a planning driver needs the
    odometry and the route it gives), reset: (env, observation, info)."""
    from dualdrive.sensors.suite import SensorSuite
    try:
        env = SensorSuite(gym.make(job.env_id, config=PLAN_DRIVEN_STOCK_CONFIG, disable_env_checker=True))
        obs, info = env.reset(seed=job.seed)
    except (ValueError, TypeError, AttributeError) as e:  # highway-env builds and resets the env in make()
        raise AgentFailure(f"{job.env_id} does not run with continuous actions ({type(e).__name__}: {e}: highway-env's "
                           f"own code for it assumes its discrete meta-actions), so a driver that plans cannot drive "
                           f"it; {', '.join(PLAN_DRIVEN_STOCK_ENVS)} can") from None
    return env, obs, info


def _stock_control(decision, follower: TrajectoryFollower, speed_mps: float, action_type) -> np.ndarray:
    if isinstance(decision, Plan):
        decision = follower.update(decision, speed_mps)
    if not isinstance(decision, Control):
        raise AgentFailure(f"agent returned {type(decision).__name__}, not a Plan or a Control")
    action = stock_action(decision, action_type)
    if not np.all(np.isfinite(action)):
        raise AgentFailure(f"agent's control is not finite: {decision}")
    return action


def _failed_row(job: EpisodeJob, error: str, tb: str | None = None) -> dict:
    """An episode that produced no log (it crashed or hung): zero scores, the reason kept."""
    row = {"scenario": job.scenario, "seed": job.seed, "family": (job.config or {}).get("family", "stock"),
           "status": "failed", "error": error, "traceback": tb, "route_completion": 0.0, "infraction_score": 100.0,
           "driving_score": 0.0, "success": False, "success_rate": 0.0, "duration_s": 0.0, "infractions": {},
           "blocked": False, "timeout": False, "log_path": None, "video_path": None}
    if job.env_id is None:  # dualdrive scenarios are PDM-scored: a failed one counts as 0, not as absent
        row.update(PDMS_ZERO)
    return row
