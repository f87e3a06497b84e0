"""``dualdrive sensors``: one picture of every sensor of one frame, beside the ground truth."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dualdrive.sensors.suite import SensorSuite


def sensor_panel(env: SensorSuite, obs: dict, out: str | Path, title: str = "") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cams = [c.cfg.name for c in env.cameras]
    fig = plt.figure(figsize=(4.2 * (len(cams) + 3), 4.2), dpi=110)
    n = len(cams) + 3
    for i, name in enumerate(cams):
        ax = fig.add_subplot(1, n, i + 1)
        ax.imshow(obs[f"camera_{name}_rgb"])
        ok = bool(obs[f"camera_{name}_valid"][0])
        ax.set_title(f"camera {name}" + ("" if ok else " (missing)"))
        ax.axis("off")
    ax = fig.add_subplot(1, n, len(cams) + 1)
    if "lidar_points_m" in obs:
        p = obs["lidar_points_m"][: int(obs["lidar_num_points"][0])]
        sc = ax.scatter(-p[:, 1], p[:, 0], c=p[:, 2], s=0.3, cmap="viridis", vmin=0, vmax=3)
        fig.colorbar(sc, ax=ax, fraction=0.046, label="z (m)")
        ax.set_title(f"LiDAR BEV ({len(p)} points)")
    ax.set_xlim(-40, 40)
    ax.set_ylim(-30, 60)
    ax.set_aspect("equal")
    ax.set_xlabel("right (m)")
    ax.set_ylabel("forward (m)")
    ax = fig.add_subplot(1, n, len(cams) + 2)
    if "radar_returns" in obs:
        r = obs["radar_returns"][: int(obs["radar_num_returns"][0])]
        x, y = r[:, 0] * np.cos(r[:, 1]), r[:, 0] * np.sin(r[:, 1])
        sc = ax.scatter(-y, x, c=r[:, 2], cmap="coolwarm", vmin=-15, vmax=15, s=25)
        fig.colorbar(sc, ax=ax, fraction=0.046, label="radial velocity (m/s)")
        ax.set_title(f"radar ({len(r)} returns)")
    ax.set_xlim(-60, 60)
    ax.set_ylim(0, 120)
    ax.set_aspect("equal")
    ax.set_xlabel("right (m)")
    ax.set_ylabel("forward (m)")
    ax = fig.add_subplot(1, n, len(cams) + 3)
    ax.imshow(_ground_truth(env))
    ax.set_title("ground truth (top-down)")
    ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _ground_truth(env: SensorSuite) -> np.ndarray:
    if env.is_dualdrive:
        from dualdrive.viz.render import TopDownRenderer
        return TopDownRenderer(env.unwrapped.world).frame(None, "")
    frame = env.unwrapped.render() if env.unwrapped.render_mode == "rgb_array" else None
    return frame if frame is not None else np.full((64, 64, 3), 255, np.uint8)
