"""The world against stock highway-env on the identical scene, and how the world's tick scales.

The scene: a straight 4-lane motorway with 50 vehicles, simulated and controlled at 10 Hz, the
ego under a continuous action held constant (so both simulators do the same work: no policy).
For highway-env that is ``highway-v0`` with ``lanes_count=4``, ``vehicles_count=50``,
``simulation_frequency=policy_frequency=10`` and ``ContinuousAction``; for dualdrive it is
``dualdrive/Motorway-v0`` with ``vehicles=50``. Both are stepped through their gym interface
(observation, reward and info included), one process, one core.
"""
from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

from dualdrive.world.scenarios import ScenarioConfig
from dualdrive.world.world import World

SCALING_COUNTS = (10, 50, 100, 200, 400)


def _steps_per_s(env: gym.Env, steps: int, action) -> float:
    env.reset(seed=0)
    done_steps, t0 = 0, time.perf_counter()
    while done_steps < steps:
        _, _, te, tr, _ = env.step(action)
        done_steps += 1
        if te or tr:
            env.reset(seed=done_steps)
    return done_steps / (time.perf_counter() - t0)


def highway_env_scene(n_vehicles: int = 50) -> gym.Env:
    import highway_env  # noqa: F401
    return gym.make("highway-v0", config={
        "lanes_count": 4, "vehicles_count": n_vehicles, "simulation_frequency": 10, "policy_frequency": 10,
        "action": {"type": "ContinuousAction"}, "duration": 10_000, "offscreen_rendering": True})


def dualdrive_scene(n_vehicles: int = 50) -> gym.Env:
    from dualdrive.world.env import ENV_IDS
    cfg = ScenarioConfig(family="motorway", vehicles=n_vehicles, max_duration_s=3600.0)
    return gym.make(ENV_IDS["motorway"], config=cfg, disable_env_checker=True)


def bench_sim_vs_highway_env(steps: int = 300) -> dict:
    ours = _steps_per_s(dualdrive_scene(50), steps, np.array([0.0, 0.0, 1.0]))
    theirs = _steps_per_s(highway_env_scene(50), max(steps // 5, 30), np.zeros(2, np.float32))
    return {"scene": "4-lane motorway, 50 vehicles, 10 Hz, continuous ego action held constant",
            "dualdrive_steps_per_s": ours, "highway_env_steps_per_s": theirs, "ratio": ours / theirs}


def bench_scaling(ticks: int = 200) -> dict:
    """Cost per world tick against the number of vehicles, and the fitted exponent of cost ~ n^k."""
    ms = []
    for n in SCALING_COUNTS:
        w = World(ScenarioConfig(family="motorway", vehicles=n, max_duration_s=3600.0), 0)
        for _ in range(10):
            w.step([0.0, 0.0, 1])
        t0 = time.perf_counter()
        for _ in range(ticks):
            w.step([0.0, 0.0, 1])
        ms.append(1000.0 * (time.perf_counter() - t0) / ticks)
    k, _ = np.polyfit(np.log(SCALING_COUNTS), np.log(ms), 1)
    return {"vehicles": list(SCALING_COUNTS), "ms_per_tick": ms, "exponent": float(k)}


def profile_tick(n_vehicles: int = 50, ticks: int = 300, top: int = 12) -> str:
    """cProfile of the gym step on the comparison scene: the functions with the most own time."""
    import cProfile
    import io
    import pstats
    env = dualdrive_scene(n_vehicles)
    env.reset(seed=0)
    action = np.array([0.0, 0.0, 1.0])
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(ticks):
        env.step(action)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()
