"""A replayed human clip drawn from above: the lanelets, the recorded cars at the planning time, the
human's path (history and the future the plan is scored against), the agent's plan and the
constant-velocity baseline, with the camera frame the agent saw beside it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from dualdrive.agents.base import Agent
from dualdrive.human.openloop import POSE_DT_S, agent_plan, baseline_poses
from dualdrive.human.replay import Clip, ReplayEnv
from dualdrive.world.geometry import box_corners, ego_to_world

VIEW_MARGIN_M = 12.0  # drawn around the paths


def draw_clip(clip: Clip, agent: Agent, out: str | Path, wrap: Callable | None = None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    log, i, t0 = clip.scene.log, clip.ego, clip.t0
    plan = agent_plan(agent, clip, wrap)
    cam = None
    if wrap is not None:  # the camera frame at t0, as the agent saw it
        env = wrap(ReplayEnv(clip))
        obs, _ = env.reset(seed=0)
        for _ in range(clip.history):
            obs, *_ = env.step(np.zeros(3))
        cam = next((v for k, v in obs.items() if k.startswith("camera_") and k.endswith("_rgb")), None)
    xy0, h0 = log.xy[t0, i], float(log.heading_rad[t0, i])
    fig, axes = plt.subplots(1, 2 if cam is not None else 1, figsize=(13 if cam is not None else 7, 6),
                             gridspec_kw={"width_ratios": [1, 1.3]} if cam is not None else None)
    ax = axes[0] if cam is not None else axes
    m = clip.scene.map
    for k in range(len(m)):
        poly = np.concatenate([m.left[k], m.right[k][::-1]])
        ax.fill(poly[:, 0], poly[:, 1], color="#d9d9d9", lw=0)
        for edge, style in ((m.left[k], m.left_style[k]), (m.right[k], m.right_style[k])):
            ax.plot(edge[:, 0], edge[:, 1], color="white", lw=0.8, ls="--" if style == 0 else "-")
    others = np.where(log.valid[t0])[0]
    for j in others:
        c = box_corners(log.xy[t0, j], np.array([log.heading_rad[t0, j]]), log.length_m[j:j + 1], log.width_m[j:j + 1])[0]
        ax.fill(c[:, 0], c[:, 1], color="#1f77b4" if j == i else "#7f7f7f", alpha=0.9 if j == i else 0.6)
    a, b = log.span(i)
    ax.plot(log.xy[a:t0 + 1, i, 0], log.xy[a:t0 + 1, i, 1], color="black", lw=1.5, label="human, history")
    fut = log.xy[t0:min(b, t0 + clip.future) + 1, i]
    ax.plot(fut[:, 0], fut[:, 1], color="#2ca02c", lw=2.5, label="human, next 3 s")
    p = ego_to_world(plan.poses[:, :2], xy0, h0)
    ax.plot(p[:, 0], p[:, 1], "o-", color="#d62728", ms=4, lw=1.5, label=f"{agent.name} plan (every {POSE_DT_S} s)")
    times = np.arange(1, len(plan.poses) + 1) * POSE_DT_S
    cv = ego_to_world(baseline_poses("constant_velocity", log.speed_mps[t0, i], 0.0, times)[:, :2], xy0, h0)
    ax.plot(cv[:, 0], cv[:, 1], "x--", color="#ff7f0e", ms=4, lw=1, label="constant velocity")
    pts = np.concatenate([log.xy[a:t0 + 1, i], fut, p, cv])
    mid = (pts.min(0) + pts.max(0)) / 2
    half = max(float((pts.max(0) - pts.min(0)).max()) / 2 + VIEW_MARGIN_M, 20.0)
    ax.set_xlim(mid[0] - half, mid[0] + half)
    ax.set_ylim(mid[1] - half, mid[1] + half)
    ax.set_aspect("equal")
    ax.set_title(f"{clip.name}  ({log.speed_mps[t0, i]:.1f} m/s)", fontsize=9)
    ax.legend(loc="lower left", fontsize=8)
    if cam is not None:
        axes[1].imshow(cam)
        axes[1].set_axis_off()
        axes[1].set_title("front camera at t0", fontsize=9)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
