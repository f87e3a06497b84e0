"""The dual system's latencies: one System 2 answer (builtin VLM, one thread), and System 1's
decision alone against System 1's decision while System 2 answers without pause beside it, in a
thread of System 1's process and in a process of its own (``process:builtin``)."""
from __future__ import annotations

import threading
import time

import numpy as np


def bench_dual(n_s1: int = 50, n_s2: int = 10, n_paced: int = 100) -> dict:
    import torch

    from dualdrive.agents.e2e.agent import E2EAgent
    from dualdrive.agents.e2e.bench import synthetic_observation, time_ms
    from dualdrive.sensors.camera import Camera
    from dualdrive.sensors.scene import scene_from_world
    from dualdrive.vlm.backend import BuiltinBackend
    from dualdrive.vlm.prompt import make_prompt
    from dualdrive.world.scenarios import ScenarioConfig
    from dualdrive.world.world import World

    torch.set_num_threads(1)
    s1 = E2EAgent()  # the shipped System 1
    obs = synthetic_observation(s1.info.config)
    s2 = BuiltinBackend(threads=1)
    w = World(ScenarioConfig(family="urban"), 4321)
    frame, prompt = Camera().render(scene_from_world(w)), make_prompt(w.ego_speed, 0, 50.0)
    s2.ask(frame, prompt)  # warm-up
    s2_ms = np.array(time_ms(lambda: s2.ask(frame, prompt), n_s2))
    s2_cpu_ms = np.array(time_ms(lambda: s2.ask(frame, prompt), n_s2, clock=time.thread_time))
    s1.act(obs)
    alone = np.array(time_ms(lambda: s1.act(obs), n_s1))
    beside = _s1_beside(s1, obs, s2, frame, prompt, n_s1)
    from dualdrive.vlm.process import ProcessBackend
    s2p = ProcessBackend("builtin", threads=1)
    try:
        s2p.ask(frame, prompt)  # warm-up
        s2p_ms = np.array(time_ms(lambda: s2p.ask(frame, prompt), n_s2))
        beside_p = _s1_beside(s1, obs, s2p, frame, prompt, n_s1)
        # the dual agent as it runs: ticks at 10 Hz of wall time, System 2 asked at its 1 Hz
        obs_urban = {**obs, "camera_front_rgb": frame}
        paced_alone = _paced(s1.act, obs_urban, n_paced)
        paced_thread = _paced(_dual(s1, s2).act, obs_urban, n_paced)
        paced_process = _paced(_dual(s1, s2p).act, obs_urban, n_paced)
    finally:
        s2p.close()
    return {"s2_ms_mean": float(s2_ms.mean()), "s2_ms_p95": float(np.percentile(s2_ms, 95)),
            "s2_cpu_ms_mean": float(s2_cpu_ms.mean()), "s2_process_ms_mean": float(s2p_ms.mean()),
            "s1_ms_mean_alone": float(alone.mean()), "s1_ms_p95_alone": float(np.percentile(alone, 95)),
            "s1_ms_mean_with_s2": float(beside.mean()), "s1_ms_p95_with_s2": float(np.percentile(beside, 95)),
            "s1_with_s2_vs_alone": float(beside.mean() / alone.mean()),
            "s1_ms_mean_with_s2_process": float(beside_p.mean()),
            "s1_ms_p95_with_s2_process": float(np.percentile(beside_p, 95)),
            "s1_with_s2_process_vs_alone": float(beside_p.mean() / alone.mean()),
            "paced_ticks": n_paced, "tick_ms_mean_s1": float(paced_alone.mean()),
            "tick_ms_mean_dual_thread": float(paced_thread.mean()),
            "tick_ms_mean_dual_process": float(paced_process.mean()),
            "tick_ms_p95_s1": float(np.percentile(paced_alone, 95)),
            "tick_ms_p95_dual_thread": float(np.percentile(paced_thread, 95)),
            "tick_ms_p95_dual_process": float(np.percentile(paced_process, 95)),
            "dual_thread_tick_vs_s1": float(paced_thread.mean() / paced_alone.mean()),
            "dual_process_tick_vs_s1": float(paced_process.mean() / paced_alone.mean())}


def _dual(s1, backend):
    from dualdrive.agents.dual.agent import DualAgent, DualConfig
    agent = DualAgent(DualConfig(s2_rate_hz=1.0), system1=s1, backend=backend)
    agent.reset({})
    return agent


def _paced(act, obs, n: int, hz: float = 10.0) -> np.ndarray:
    """ms per decision when decisions come at ``hz`` of wall time, as in a car."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        act(obs)
        dt = time.perf_counter() - t0
        out.append(1e3 * dt)
        time.sleep(max(1.0 / hz - dt, 0.0))
    return np.array(out)


def _s1_beside(s1, obs, s2, frame, prompt, n: int) -> np.ndarray:
    """System 1's decision times while a thread keeps System 2 asking without pause (the worst case)."""
    from dualdrive.agents.e2e.bench import time_ms
    stop = threading.Event()

    def system2_busy() -> None:
        while not stop.is_set():
            s2.ask(frame, prompt)
    th = threading.Thread(target=system2_busy, daemon=True)
    th.start()
    try:
        return np.array(time_ms(lambda: s1.act(obs), n))
    finally:
        stop.set()
        th.join()
