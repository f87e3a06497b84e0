"""Closed-loop throughput: world + sensor suite + an agent, and evaluation episodes per minute."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import gymnasium as gym

from dualdrive.agents.base import Plan, reset_info_for
from dualdrive.agents.follower import TrajectoryFollower
from dualdrive.agents.registry import load_agent
from dualdrive.sensors.suite import SensorSuite
from dualdrive.world.env import ENV_IDS
from dualdrive.world.scenarios import ScenarioConfig

WARMUP_STEPS = 10
EVAL_SUITE = """name: bench
version: 1
scenarios:
  - {name: highway, family: highway, config: {max_duration_s: 20}}
  - {name: urban, family: urban, config: {max_duration_s: 20}}
"""


def bench_closed_loop(agent: str = "idle", steps: int = 200) -> dict:
    """Steps per second of the full loop on one core: world, all sensors, the agent's decision and,
    for an agent that plans, the trajectory follower. Torch is held to one thread."""
    import torch
    torch.set_num_threads(1)
    env = SensorSuite(gym.make(ENV_IDS["urban"], config=ScenarioConfig(family="urban", max_duration_s=3600.0),
                               disable_env_checker=True))
    obs, info = env.reset(seed=0)
    drv, follower = load_agent(agent), TrajectoryFollower()
    drv.reset(reset_info_for(drv, info))
    world = env.unwrapped.world
    for k in range(WARMUP_STEPS + steps):
        if k == WARMUP_STEPS:  # the first decisions pay for allocations and caches
            t0 = time.perf_counter()
        decision = drv.act(obs)  # a Plan is followed as `drive` follows it
        control = follower.update(decision, world.ego_speed) if isinstance(decision, Plan) else decision
        obs, _, te, tr, info = env.step(control.to_action())
        if te or tr:
            obs, info = env.reset(seed=1)
            world = env.unwrapped.world
            drv.reset(reset_info_for(drv, info))
    return {"agent": agent, "scene": "urban, all sensors", "steps_per_s": steps / (time.perf_counter() - t0)}


def bench_eval_throughput(seeds: int = 4, workers: tuple[int, ...] = (1, 2)) -> dict:
    """Episodes per minute of ``dualdrive eval`` (the expert, 20 s episodes, Ray start included)."""
    from dualdrive.bench.evaluate import EvalConfig, evaluate
    out = {}
    with tempfile.TemporaryDirectory() as d:
        suite = Path(d) / "bench.yaml"
        suite.write_text(EVAL_SUITE)
        for n in workers:
            t0 = time.perf_counter()
            res = evaluate(EvalConfig("expert", range(0, seeds), Path(d) / f"w{n}.json", suite=str(suite), workers=n))
            wall = time.perf_counter() - t0
            out[f"workers_{n}"] = {"episodes": len(res["episodes"]), "wall_s": wall,
                                   "episodes_per_min": 60.0 * len(res["episodes"]) / wall}
    return out
