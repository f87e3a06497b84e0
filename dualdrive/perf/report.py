"""``dualdrive bench``: every speed measurement in one run, as JSON with ratios, and a plot."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Callable

from dualdrive.perf.closed_loop import bench_closed_loop, bench_eval_throughput
from dualdrive.perf.sensors import bench_sensors
from dualdrive.perf.sim import bench_scaling, bench_sim_vs_highway_env


def run_bench(frames: int = 100, steps: int = 300, with_eval: bool = True,
              progress: Callable[[str], None] = lambda name: None) -> dict:
    res: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                             "processor": platform.processor()}}
    progress("world vs highway-env")
    res["sim"] = bench_sim_vs_highway_env(steps)
    progress("scaling")
    res["scaling"] = bench_scaling(max(steps // 2, 50))
    progress("sensors")
    res["sensors"] = bench_sensors(frames)
    progress("closed loop")
    res["closed_loop"] = bench_closed_loop("idle", max(steps // 2, 50))
    progress("closed loop with System 1")
    res["closed_loop_e2e"] = bench_closed_loop("e2e", max(steps // 2, 50))
    progress("e2e decision")
    res["e2e"] = bench_e2e_decision()
    progress("dual system")
    from dualdrive.perf.dual import bench_dual
    res["dual"] = bench_dual(n_paced=max(steps // 3, 20))  # paced ticks take 0.1 s each
    if with_eval:
        progress("eval throughput")
        res["eval"] = bench_eval_throughput()
    res["ratios"] = {"sim_vs_highway_env": res["sim"]["ratio"], "s1_with_s2_vs_alone": res["dual"]["s1_with_s2_vs_alone"],
                     "s1_with_s2_process_vs_alone": res["dual"]["s1_with_s2_process_vs_alone"],
                     "dual_tick_vs_s1": res["dual"]["dual_thread_tick_vs_s1"]}
    if with_eval:
        res["ratios"]["eval_2_vs_1_workers"] = (res["eval"]["workers_2"]["episodes_per_min"]
                                               / res["eval"]["workers_1"]["episodes_per_min"])
    return res


def bench_e2e_decision(n: int = 50) -> dict:
    """ms per E2E decision (observation -> Plan) at 1 thread, with the shipped checkpoint's config and size
    (the architecture's defaults when none is shipped: the cost depends on the config, not the weights)."""
    from dualdrive.agents.e2e.agent import DEFAULT_CHECKPOINT
    from dualdrive.agents.e2e.bench import measure_guard, measure_latency
    from dualdrive.agents.e2e.checkpoint import read_info, sidecar_path
    from dualdrive.agents.e2e.config import E2EConfig
    shipped = DEFAULT_CHECKPOINT.is_file()
    cfg = read_info(DEFAULT_CHECKPOINT).config if shipped else E2EConfig()
    res = {"threads": 1, "checkpoint": str(DEFAULT_CHECKPOINT) if shipped else None, **measure_latency(cfg, n, threads=1),
           **measure_guard(n)}
    if shipped:
        res["checkpoint_mb"] = (DEFAULT_CHECKPOINT.stat().st_size + sidecar_path(DEFAULT_CHECKPOINT).stat().st_size) / 1e6
    return res


def plot_bench(res: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
    s = res["sim"]
    ax[0].bar(["dualdrive", "highway-env"], [s["dualdrive_steps_per_s"], s["highway_env_steps_per_s"]], color=["C0", "C1"])
    ax[0].set_ylabel("steps / s")
    ax[0].set_title(f"4-lane motorway, 50 vehicles: {s['ratio']:.1f}x")
    sc = res["scaling"]
    ax[1].loglog(sc["vehicles"], sc["ms_per_tick"], "o-")
    ax[1].set_xlabel("vehicles")
    ax[1].set_ylabel("ms per tick")
    ax[1].set_title(f"scaling (exponent {sc['exponent']:.2f})")
    sn = res["sensors"]
    ax[2].bar(["camera", "LiDAR", "radar"], [sn["camera_96x192_ms"], sn["lidar_32_beams_ms"], sn["radar_ms"]], color="C2")
    ax[2].set_ylabel("ms per frame")
    ax[2].set_title(f"sensors, {sn['actors_in_scene']} vehicles")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
