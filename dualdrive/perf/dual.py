"""The dual system's latencies: one System 2 answer (builtin VLM, one thread), and System 1's
decision alone against System 1's decision while System 2 answers without pause beside it."""
from __future__ import annotations

import threading
import time

import numpy as np


def bench_dual(n_s1: int = 50, n_s2: int = 10) -> dict:
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
    stop = threading.Event()

    def system2_busy() -> None:  # the worst case: System 2 never idle
        while not stop.is_set():
            s2.ask(frame, prompt)
    th = threading.Thread(target=system2_busy, daemon=True)
    th.start()
    try:
        beside = np.array(time_ms(lambda: s1.act(obs), n_s1))
    finally:
        stop.set()
        th.join()
    return {"s2_ms_mean": float(s2_ms.mean()), "s2_ms_p95": float(np.percentile(s2_ms, 95)),
            "s2_cpu_ms_mean": float(s2_cpu_ms.mean()),
            "s1_ms_mean_alone": float(alone.mean()), "s1_ms_p95_alone": float(np.percentile(alone, 95)),
            "s1_ms_mean_with_s2": float(beside.mean()), "s1_ms_p95_with_s2": float(np.percentile(beside, 95)),
            "s1_with_s2_vs_alone": float(beside.mean() / alone.mean())}
