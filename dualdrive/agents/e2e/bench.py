"""Latency and size of the E2E decision: the numbers the 10 ms / 20 MB budget is checked against."""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dualdrive.agents.e2e.agent import E2EAgent, observation_to_inputs
from dualdrive.agents.e2e.checkpoint import save_checkpoint, sidecar_path
from dualdrive.agents.e2e.config import E2EConfig
from dualdrive.agents.e2e.model import E2EModel, count_parameters
from dualdrive.data.dataset import RADAR_ROWS

WARMUP_DECISIONS = 5  # first calls allocate buffers and pick kernels
LIDAR_POINTS = 11_520  # the default LiDAR's capacity: 32 beams x 360 azimuths
BYTES_PER_MB = 1e6


RADAR_SYNTHETIC_RETURNS = 6


def synthetic_observation(cfg: E2EConfig = E2EConfig(), seed: int = 0, n_points: int = LIDAR_POINTS) -> dict:
    """A SensorSuite-shaped observation with random content (for benchmarks and tests)."""
    rng = np.random.default_rng(seed)
    points = np.zeros((LIDAR_POINTS, 4), np.float32)
    points[:n_points] = np.column_stack([rng.uniform(-20, 50, n_points), rng.uniform(-35, 35, n_points),
                                         rng.uniform(-0.1, 2.0, n_points), rng.uniform(0, 1, n_points)])
    return {"camera_front_rgb": rng.integers(0, 256, (cfg.camera_height_px, cfg.camera_width_px, 3), dtype=np.uint8),
            "camera_front_valid": np.array([1], np.int8), "lidar_points_m": points,
            "lidar_num_points": np.array([n_points], np.int32), "lidar_valid": np.array([1], np.int8),
            "speed_mps": np.array([8.0], np.float32), "yaw_rate_rps": np.zeros(1, np.float32),
            "accel_mps2": np.zeros(1, np.float32), "gear": np.array([1], np.int8),
            "route_xy_ego_m": np.column_stack([8.0 * np.arange(1, cfg.route_points + 1),
                                               np.zeros(cfg.route_points)]).astype(np.float32),
            "route_command": np.zeros(cfg.route_points, np.int8), "command": np.array([0], np.int8),
            "command_distance_m": np.array([50.0], np.float32),
            # a few radar returns ahead, padded to the sensor's 32 rows
            "radar_returns": np.vstack([np.column_stack([rng.uniform(5, 80, RADAR_SYNTHETIC_RETURNS),
                                                         rng.uniform(-0.8, 0.8, RADAR_SYNTHETIC_RETURNS),
                                                         rng.uniform(-10, 3, RADAR_SYNTHETIC_RETURNS),
                                                         rng.uniform(0, 20, RADAR_SYNTHETIC_RETURNS)]),
                                        np.zeros((RADAR_ROWS - RADAR_SYNTHETIC_RETURNS, 4))]).astype(np.float32),
            "radar_num_returns": np.array([RADAR_SYNTHETIC_RETURNS], np.int32), "radar_valid": np.array([1], np.int8)}


def measure_latency(cfg: E2EConfig = E2EConfig(), n: int = 50, threads: int = 1) -> dict[str, float]:
    """Time ``n`` full decisions (observation -> Plan: preprocessing + model at batch 1 under
    inference_mode, on ``threads`` CPU threads) of a randomly initialised model of ``cfg``.

    Returns ms_mean / ms_p95 (wall time of the whole decision), cpu_ms_mean (its CPU time, which other
    processes on a shared machine do not inflate), model_ms_mean (the network alone), ms_mean_probing (a
    decision well below the speed limit, where the speed probe runs the frame twice in one batch: see
    dualdrive.agents.e2e.probe) beside ms_mean_slow_no_probe (the same decision without it), params and
    checkpoint_mb (safetensors + sidecar).
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = save_checkpoint(Path(tmp) / "model.safetensors", E2EModel(cfg))
            size_mb = (path.stat().st_size + sidecar_path(path).stat().st_size) / BYTES_PER_MB
            agent = E2EAgent(path)
            with_probe, without = E2EAgent(path, probe=True), E2EAgent(path, probe=False)
        obs = synthetic_observation(cfg)
        decision_ms = time_ms(lambda: agent.act(obs), n)
        cpu_ms = time_ms(lambda: agent.act(obs), n, clock=time.thread_time)
        # the same slow frame on the road with the probe asked and not (the guard's share is the same in both)
        slow = {**obs, "speed_mps": np.array([1.0], np.float32), "speed_limit_mps": np.array([30.0], np.float32)}
        probing_ms = time_ms(lambda: with_probe.act(slow), n)
        slow_ms = time_ms(lambda: without.act(slow), n)
        batch = {k: v.unsqueeze(0) for k, v in _tensors(obs, agent).items()}
        with torch.inference_mode():
            model_ms = time_ms(lambda: agent.model(**batch, with_aux=False), n)
    finally:
        torch.set_num_threads(previous_threads)
    return {"ms_mean": float(np.mean(decision_ms)), "ms_p95": float(np.percentile(decision_ms, 95)),
            "cpu_ms_mean": float(np.mean(cpu_ms)), "model_ms_mean": float(np.mean(model_ms)),
            "ms_mean_probing": float(np.mean(probing_ms)), "ms_mean_slow_no_probe": float(np.mean(slow_ms)),
            "params": count_parameters(agent.model),
            "checkpoint_mb": size_mb}


def measure_guard(n: int = 50) -> dict[str, float]:
    """ms of the LiDAR plan guard alone (dualdrive.agents.guard), in the scene it works hardest in: the car
    in a bay between two parked cars (0.65 m a side). ``clear``: a plan backing straight out (one rollout,
    the usual tick); ``blocked``: a plan turning too early, eased into backing straight (three rollouts);
    ``boxed_in``: a plan into a wall, where every fallback is tried before braking."""
    from dualdrive.agents.base import PLAN_DT_S, REVERSE, Plan
    from dualdrive.agents.guard import PlanGuard
    x = np.linspace(-2.5, 2.5, 200)
    bay = np.vstack([np.column_stack([x, np.full_like(x, side), np.full_like(x, 1.2), np.full_like(x, 0.6)])
                     for side in (-1.65, 1.65)])
    y = np.linspace(-3.0, 3.0, 100)
    boxed = np.vstack([bay, np.column_stack([np.full_like(y, 3.2), y, np.full_like(y, 1.0), np.full_like(y, 0.5)])])
    t = PLAN_DT_S * np.arange(1, 9)
    back = Plan(np.column_stack([-1.5 * t, np.zeros(8), np.zeros(8)]), REVERSE)
    th = -1.5 * t / 4.0
    turning = Plan(np.column_stack([4.0 * np.sin(th), 4.0 * (1 - np.cos(th)), th]), REVERSE)
    ahead = Plan(np.column_stack([1.5 * t, np.zeros(8), np.zeros(8)]))
    guard = PlanGuard()
    out = {}
    for name, plan, pts in (("clear", back, bay), ("blocked", turning, bay), ("boxed_in", ahead, boxed)):
        out[f"guard_{name}_ms"] = float(np.mean(time_ms(lambda: guard.check(plan, 0.0, 0.0, pts), n)))
    return out


def _tensors(obs: dict, agent: E2EAgent) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.asarray(v)) for k, v in observation_to_inputs(obs, agent.info.config).items()}


def time_ms(fn: Callable[[], object], n: int, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    for _ in range(WARMUP_DECISIONS):
        fn()
    out = []
    for _ in range(n):
        t0 = clock()
        fn()
        out.append(1000.0 * (clock() - t0))
    return out
