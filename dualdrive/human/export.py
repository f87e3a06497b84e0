"""Human driving as System 1 training data: every recorded car replayed through the sensor suite and
written as an episode of a demonstration dataset (``dualdrive.data.format``), labelled with what the
human did next.

- One episode per recorded car (key ``<scenario>_<car id>``), frames every ``frame_stride`` steps
  (0.5 s at NGSIM's 0.1 s by default) wherever the car has the plan's full horizon (8 poses, 4 s)
  of recorded future: the label ``plan`` is the human's own poses 0.5 ... 4 s ahead, in the ego
  frame; ``plan_gear`` forward (no recorded car reverses).
- Inputs as the agent sees them in replay (``ReplayEnv``, ego on the log): camera, LiDAR, radar,
  odometry, and the route (the human's path, continued along the lanelets).
- No privileged labels beyond what the log holds: no BEV semantics and no light state (the
  trainer masks those heads; the reader fills -1), no expert controls. ``boxes`` are the other
  recorded cars (what open-loop collision checks need).

Crash-safe and resumable as ``dualdrive collect`` is: every episode is written whole under a private
name and renamed into place; a re-run skips the episodes already complete.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dualdrive.data.episode import add_observation
from dualdrive.data.format import FORMAT_VERSION, FRAME_ARRAYS, PLAN_POSES, complete_episodes, episode_key
from dualdrive.human.openloop import human_future, usable_scenes
from dualdrive.human.replay import Clip, ReplayEnv
from dualdrive.human.scene import HumanScene
from dualdrive.sensors.suite import SensorSuite

PLAN_DT_S = 0.5
HUMAN_ARRAYS = [n for n in FRAME_ARRAYS if n not in ("bev_semantic", "light_state", "expert_control", "executed_control")]


@dataclass(frozen=True)
class HumanExportConfig:
    frame_stride: int = 5  # log steps between recorded frames (0.5 s at 0.1 s)
    source: str = "ngsim:train"  # what the files are (recorded in dataset.json)

    def __post_init__(self) -> None:
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride={self.frame_stride} must be at least 1")


def export_human(files: list[Path], out: Path, cfg: HumanExportConfig = HumanExportConfig(),
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Write every car of ``files`` as an episode of the dataset ``out``; returns counts."""
    from dualdrive.data.collect import open_collection
    from dualdrive.data.episode import write_episode
    from dualdrive.data.format import store_path
    out = Path(out)
    ident = {"agent": "human", "suite": {"name": cfg.source}, "dart_noise": 0.0, "frame_stride": cfg.frame_stride,
             "max_duration_s": None, "labeller": "human log"}
    open_collection(out, ident)
    done = set(complete_episodes(out)[0])
    written = skipped = frames = 0
    for n, scene in enumerate(usable_scenes(files)):
        for i in range(scene.log.vehicles):
            key = episode_key(scene.log.name, int(scene.log.ids[i]))
            if key in done:
                skipped += 1
                continue
            arrays, attrs = record_car(scene, i, cfg)
            if attrs["frames"] == 0:
                continue  # a track shorter than the plan's horizon: nothing to learn from
            write_episode(store_path(out), key, arrays, attrs)
            written += 1
            frames += attrs["frames"]
        if progress is not None:
            progress(n + 1, len(files))
    return {"episodes_written": written, "episodes_already_there": skipped, "frames_written": frames}


def record_car(scene: HumanScene, i: int, cfg: HumanExportConfig) -> tuple[dict[str, np.ndarray], dict]:
    """Replay car ``i`` of ``scene`` through the sensors; its frames and episode attrs."""
    log = scene.log
    a, b = max(log.runs(i), key=lambda r: r[1] - r[0], default=(0, -1))  # the longest gap-free stretch
    horizon = int(round(PLAN_POSES * PLAN_DT_S / log.dt_s))
    times = np.arange(1, PLAN_POSES + 1) * PLAN_DT_S
    rows: dict[str, list] = {k: [] for k in HUMAN_ARRAYS}
    last = b - horizon
    if last >= a:
        clip = Clip(scene, i, a, 0, b - a)
        env = SensorSuite(ReplayEnv(clip, ego_mode="log"))
        base = env.env
        raw, _ = base.reset()
        env.rng = np.random.default_rng([0x5E_A5, int(log.ids[i])])  # seeded sensor noise per car
        for t in range(a, last + 1):
            if (t - a) % cfg.frame_stride == 0:
                _add_frame(rows, env.observation(raw), base, Clip(scene, i, t, 0, horizon), times)
            if t < last:
                raw, *_ = base.step(np.zeros(3))
    arrays = {k: np.asarray(v, FRAME_ARRAYS[k].dtype).reshape(-1, *FRAME_ARRAYS[k].frame_shape)
              for k, v in rows.items()}
    attrs = {"scenario": log.name, "family": "human", "seed": int(log.ids[i]), "driver": "human",
             "labeller": "human log", "dart_noise": 0.0, "frame_stride": cfg.frame_stride, "dt_s": log.dt_s,
             "steps": int(b - a + 1), "frames": int(len(rows["t_s"])), "error": None, "source": str(scene.path),
             "summary": {"success": True, "route_completion": 100.0}, "format_version": FORMAT_VERSION}
    return arrays, attrs


def _add_frame(r: dict, obs: dict, env: ReplayEnv, clip_now: Clip, times: np.ndarray) -> None:
    from dualdrive.data.labels import actor_boxes
    add_observation(r, obs)
    r["plan"].append(human_future(clip_now, times))
    r["plan_gear"].append(1)
    boxes, n = actor_boxes(env.sensor_scene().boxes, env.ego_xy, env.ego_heading)
    r["boxes"].append(boxes)
    r["num_boxes"].append(n)
    r["t_s"].append(clip_now.t0 * env.dt)
    r["ego_pose_world"].append([*env.ego_xy, env.ego_heading])
