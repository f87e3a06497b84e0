"""Open-loop evaluation of an E2E checkpoint on recorded episodes: the planned trajectory against the
expert's plan (L2 displacement at 1/2/3 s) and against the other actors (plan collision rate).

A metric of the model on a dataset, not of a closed-loop drive: every frame is scored from the
expert's state distribution, so it says how well the model imitates, not how well it drives.

Collision (the ST-P3 / UniAD open-loop convention, with our labels): the ego box (the world's ego
size) placed at the planned pose at horizon h is tested against the actors' boxes of the frame
recorded h seconds later, moved into the planning frame with the recorded ego poses. Only the
horizons that fall on a recorded frame inside the episode are scored (at ``--frame-stride`` 2 or 10
every whole second does). The same test of the expert's own plan is reported beside it: the
floor set by the labels (the expert re-plans, and DART noise moves the car off its plan).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dualdrive.agents.e2e.checkpoint import load_checkpoint
from dualdrive.agents.e2e.model import MODEL_INPUT_KEYS
from dualdrive.world.geometry import box_corners, boxes_overlap, ego_to_world, world_to_ego
from dualdrive.world.world import EGO_LENGTH_M, EGO_WIDTH_M

HORIZONS_S = (1, 2, 3)
PLAN_DT_S = 0.5
FRAME_TIME_TOL_S = 1e-3  # a horizon "falls on a frame" recorded within this of it (t_s is float32)


def evaluate_openloop(checkpoint: str | Path, data_dirs: list[str | Path], batch_size: int = 32,
                      device: str = "cpu") -> dict:
    """Scores of ``checkpoint`` on every complete episode of ``data_dirs``; see the module doc."""
    from dualdrive.data.dataset import DemoDataset
    model, info = load_checkpoint(checkpoint, device)
    sums = _Sums()
    episodes = 0
    for d in data_dirs:
        ds = DemoDataset(d)
        for key in ds.episodes:
            plans = _predict(model, ds, key, batch_size, device)
            _score_episode(sums, plans, _episode_arrays(ds.root, key))
            episodes += 1
    return {"checkpoint": str(checkpoint), "data": [str(d) for d in data_dirs], "episodes": episodes,
            **sums.result()}


def _predict(model: torch.nn.Module, ds, key: str, batch_size: int, device: str) -> np.ndarray:
    """(T, P, 3) plans of the model for every frame of one episode."""
    start = ds.episodes.index(key)
    lo, hi = int(ds._starts[start]), int(ds._starts[start + 1])
    out = []
    with torch.inference_mode():
        for a in range(lo, hi, batch_size):
            items = [ds[i] for i in range(a, min(hi, a + batch_size))]
            batch = {k: torch.stack([it[k] for it in items]).to(device) for k in MODEL_INPUT_KEYS if k in items[0]}
            out.append(model(**batch, with_aux=False)["plan"].double().cpu().numpy())
    return np.concatenate(out)


def _episode_arrays(root: Path, key: str) -> dict:
    import zarr

    from dualdrive.data.format import store_path
    g = zarr.open_group(str(store_path(root)), mode="r")[key]
    return {"plan": np.asarray(g["plan"][:], np.float64), "boxes": np.asarray(g["boxes"][:], np.float64),
            "num_boxes": np.asarray(g["num_boxes"][:]), "pose": np.asarray(g["ego_pose_world"][:], np.float64),
            "t_s": np.asarray(g["t_s"][:], np.float64)}


class _Sums:
    def __init__(self) -> None:
        self.frames = 0
        self.l2 = {h: 0.0 for h in HORIZONS_S}
        self.l2_n = {h: 0 for h in HORIZONS_S}
        self.coll = {h: [0, 0, 0] for h in HORIZONS_S}  # model hits, expert-plan hits, scored

    def result(self) -> dict:
        res: dict = {"frames": self.frames}
        for h in HORIZONS_S:
            res[f"l2_{h}s_m"] = self.l2[h] / self.l2_n[h] if self.l2_n[h] else None
        res["l2_avg_m"] = float(np.mean([res[f"l2_{h}s_m"] for h in HORIZONS_S])) if self.frames else None
        for h in HORIZONS_S:
            hit, ref, n = self.coll[h]
            res[f"collision_{h}s"] = hit / n if n else None
            res[f"expert_plan_collision_{h}s"] = ref / n if n else None
            res[f"collision_{h}s_scored"] = n
        scored = [res[f"collision_{h}s"] for h in HORIZONS_S if res[f"collision_{h}s"] is not None]
        res["collision_avg"] = float(np.mean(scored)) if scored else None
        return res


def _score_episode(sums: _Sums, plans: np.ndarray, ep: dict) -> None:
    n_frames = len(plans)
    sums.frames += n_frames
    for h in HORIZONS_S:
        i = round(h / PLAN_DT_S) - 1
        sums.l2[h] += float(np.linalg.norm(plans[:, i, :2] - ep["plan"][:, i, :2], axis=1).sum())
        sums.l2_n[h] += n_frames
        # the recorded frame h seconds on, where there is one (informative sampling spaces frames unevenly)
        t_s = ep["t_s"]
        later = np.searchsorted(t_s, t_s + h - FRAME_TIME_TOL_S)
        for t in range(n_frames):
            f = int(later[t])
            if f >= n_frames or abs(t_s[f] - t_s[t] - h) > FRAME_TIME_TOL_S:
                continue  # this horizon falls between recorded frames, or after the episode
            boxes = _future_boxes_in_frame(ep, t, f)
            sums.coll[h][0] += int(plan_collides(plans[t, i], boxes))
            sums.coll[h][1] += int(plan_collides(ep["plan"][t, i], boxes))
            sums.coll[h][2] += 1


def _future_boxes_in_frame(ep: dict, t: int, f: int) -> np.ndarray:
    """Actor boxes (N, 5: x, y, yaw, length, width) of frame ``f``, in the ego frame of frame ``t``."""
    b = ep["boxes"][f, :int(ep["num_boxes"][f])]
    pose_f, pose_t = ep["pose"][f], ep["pose"][t]
    xy_world = ego_to_world(b[:, 0:2], pose_f[:2], pose_f[2])
    out = b[:, :5].copy()
    out[:, 0:2] = world_to_ego(xy_world, pose_t[:2], pose_t[2])
    out[:, 2] = b[:, 2] + pose_f[2] - pose_t[2]
    return out


def plan_collides(pose: np.ndarray, boxes: np.ndarray) -> bool:
    """Whether the ego box at ``pose`` (x_m, y_m, heading_rad) overlaps any of ``boxes`` (N, 5)."""
    if len(boxes) == 0:
        return False
    ego = box_corners(pose[None, :2], pose[2:3], np.array([EGO_LENGTH_M]), np.array([EGO_WIDTH_M]))[0]
    others = box_corners(boxes[:, 0:2], boxes[:, 2], boxes[:, 3], boxes[:, 4])
    return bool(boxes_overlap(ego, others).any())
