"""The closed loop for one episode: env -> agent -> (follower) -> env, writing a video and a summary."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np

from dualdrive.agents.base import Agent, Control, Plan, reset_info_for
from dualdrive.agents.follower import TrajectoryFollower
from dualdrive.world.env import ENV_IDS
from dualdrive.world.scenarios import ConfigError, ScenarioConfig, check_seed

VIDEO_FPS = 10


def resolve_scenario(name: str) -> tuple[str, str]:
    """Short name or registered gym id -> (family, env id)."""
    if name in ENV_IDS:
        return name, ENV_IDS[name]
    for family, env_id in ENV_IDS.items():
        if name == env_id:
            return family, env_id
    raise ConfigError(f"unknown scenario {name!r}; valid: {', '.join(ENV_IDS)} or {', '.join(ENV_IDS.values())}")


def env_for(agent: Agent, env_id: str, config: ScenarioConfig | None = None) -> gym.Env:
    """The env an agent drives: wrapped in the sensor suite when the agent drives on sensors."""
    env = gym.make(env_id, config=config, disable_env_checker=True) if config is not None else \
        gym.make(env_id, disable_env_checker=True)
    if agent.uses_sensors:
        from dualdrive.sensors.suite import SensorSuite
        env = SensorSuite(env)
    return env


def drive_episode(agent: Agent, scenario: str, seed: int, out_dir: str | Path | None = None,
                  config: ScenarioConfig | None = None, video: bool = True,
                  on_step: Callable[[float, float], None] | None = None, notes: dict | None = None) -> dict:
    """Drive one episode; with `out_dir`, write video.mp4, summary.json and report.md there. `notes`
    (e.g. the passenger's instruction as understood) go into the summary and the report."""
    family, env_id = resolve_scenario(scenario)
    check_seed(seed)
    cfg = config or ScenarioConfig(family=family)
    if cfg.family != family:
        raise ConfigError(f"config family {cfg.family!r} does not match scenario {scenario!r}")
    env = env_for(agent, env_id, cfg)
    obs, info = env.reset(seed=seed)
    world = env.unwrapped.world
    agent.reset(reset_info_for(agent, info))
    follower = TrajectoryFollower()
    frames: list[np.ndarray] = []
    renderer = None
    if video and out_dir is not None:
        from dualdrive.viz.render import TopDownRenderer, plan_to_world
        renderer = TopDownRenderer(world)
    done = False
    while not done:
        decision = agent.act(obs)
        control = follower.update(decision, world.ego_speed) if isinstance(decision, Plan) else decision
        if not isinstance(control, Control):
            raise TypeError(f"agent {type(agent).__name__}.act returned {type(decision).__name__}, not Plan or Control")
        if renderer is not None:
            plan_xy = plan_to_world(decision.poses, world) if isinstance(decision, Plan) else None
            phase = getattr(agent, "debug", {}).get("phase", "")
            frames.append(renderer.frame(plan_xy, f"{family} seed {seed}  t={world.t:5.1f}s  v={world.ego_speed:4.1f} m/s  {phase}"))
        obs, _, terminated, truncated, info = env.step(control.to_action())
        done = terminated or truncated
        if on_step is not None:
            on_step(world.t, world.config.time_limit_s)
    summary = info["summary"]
    summary["agent"] = getattr(agent, "name", type(agent).__name__)
    summary.update(notes or {})
    if getattr(agent, "s2_log", None) is not None:  # the dual agent: everything System 2 said
        summary["system2"] = agent.s2_log
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if frames:
            import imageio.v2 as imageio
            imageio.mimwrite(out / "video.mp4", frames, fps=VIDEO_FPS, macro_block_size=16)
            summary["video"] = str(out / "video.mp4")
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
        (out / "report.md").write_text(report_markdown(summary))
    env.close()
    return summary


def report_markdown(s: dict) -> str:
    lines = [f"# {s.get('agent', 'agent')} on {s['family']} (seed {s['seed']})", "",
             f"- success: **{s['success']}**", f"- route completion: {s['route_completion']:.1f} %",
             f"- collisions: {s['collisions']}", f"- duration: {s['duration_s']:.1f} s ({s['steps']} steps)"]
    if "parking_position_error_m" in s:
        lines += [f"- parked: {s['parked']} (position error {s['parking_position_error_m']:.2f} m, heading error "
                  f"{s['parking_heading_error_deg']:.1f} deg, {s['gear_changes']} gear changes)"]
    if "instruction" in s:
        ins = s["instruction"]
        lines += [f"- instruction: \"{ins['text']}\" -> {ins['status']} {ins['intent']}", f"  - the car: {ins['reply']}"]
        lines += [f"  - not acted on: {u}" for u in ins.get("unsupported", [])]
    lines += ["", "## Infractions", ""] + ([f"- {i['type']} at {i['t_s']} s" for i in s["infractions"]] or ["- none"])
    lines += ["", "## Events", ""] + ([f"- {e}" for e in s.get("events", [])] or ["- none"])
    return "\n".join(lines) + "\n"


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)
