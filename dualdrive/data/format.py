"""The on-disk format of a demonstration dataset: one zarr v3 store, one group per episode.

Layout of ``DIR``::

    DIR/dataset.json          {"format": "dualdrive-demos", "version": 1, "collection": {...}, "runs": [...]}
    DIR/episodes.zarr/        zarr v3 store
        <scenario>_<seed>/    one group per episode; attrs below, arrays in FRAME_ARRAYS
    DIR/card.md, card.json    the dataset card (``card.py``)

Every array is time-major: axis 0 is the recorded frame (every ``frame_stride``-th world tick, so
5 Hz at the default stride 2 and the 10 Hz world). Frames: *ego* is x forward, y left, heading
counter-clockwise, at the time of the frame; SI units, named in the array names.

Sensors (what a System 1 policy may read):

- ``camera_front_rgb`` uint8 (T, 96, 192, 3), ``camera_valid`` int8 (T,) (0: a dropped frame, all zeros)
- ``lidar_bev`` uint8 (T, 2, 128, 128): point counts per 0.5 m cell below / above 0.2 m, capped at
  ``LIDAR_MAX_PER_CELL`` (``bev_histogram`` before its normalisation); rows x from -16 to 48 m,
  columns y from -32 to 32 m (ego frame); ``lidar_valid`` int8 (T,)
- ``radar_returns`` float32 (T, 32, 4) rows (range_m, azimuth_rad, radial_velocity_mps, rcs_dbsm),
  the first ``radar_num_returns`` int32 (T,) real; ``radar_valid`` int8 (T,)
- odometry ``speed_mps``, ``accel_mps2``, ``yaw_rate_rps``, ``steer_rad`` float32 (T,); ``gear`` int8 (T,) (+1/-1)
- navigation ``route_xy_ego_m`` float32 (T, 10, 2) (ego frame, 8 m apart), ``route_command`` int8 (T, 10),
  ``command`` int8 (T,) (``dualdrive.world.route.Command``), ``command_distance_m`` float32 (T,)

Labels (from the privileged expert, which plans from the true world state at every tick):

- ``plan`` float32 (T, 8, 3): the expert's ``Plan.poses`` (x_m, y_m, heading_rad), ego frame, 0.5 s apart;
  ``plan_gear`` int8 (T,) (+1 forward, -1 reverse)
- ``expert_control`` float32 (T, 3): the follower's control for that plan (accel_mps2, steer_rad, gear);
  ``executed_control`` float32 (T, 3): what was actually applied (the driver's control, plus DART noise)

Privileged auxiliary labels (the world's ground truth):

- ``bev_semantic`` uint8 (T, 64, 64): :class:`BevClass` per 1 m cell, same area and row/column
  convention as ``lidar_bev``
- ``light_state`` int8 (T,): :class:`LightState` of the signal governing the ego's route within 50 m
- ``boxes`` float32 (T, 128, 7): actors within 50 m, nearest first, rows (x_m, y_m, yaw_rad, length_m,
  width_m, speed_mps, class) in the ego frame, class a ``dualdrive.sensors.scene.BoxClass``
  (0 car, 1 truck, 2 emergency, 3 pedestrian, 4 static car, 5 cone); the first ``num_boxes`` int32 (T,) real

Bookkeeping: ``t_s`` float32 (T,) world time of the frame, ``ego_pose_world`` float32 (T, 3)
(x_m, y_m, heading_rad in the world frame, for visualisation; not an input).

Episode group attrs: scenario, family, seed, driver, dart_noise, frame_stride, steps (world ticks),
frames (T), dt_s, error (None or why the driver stopped), summary (the world's summary: success,
route_completion, infractions, ...), format_version and, written last, ``complete: true``.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

# how a collection picks its recorded ticks (dualdrive.data.episode.RecordSpec): every frame_stride-th, or
# by what the frame teaches (episode.frame_kind); a collection without the key is uniform
SAMPLINGS = ("uniform", "informative")

FORMAT_NAME = "dualdrive-demos"
FORMAT_VERSION = 1
STORE_NAME = "episodes.zarr"
META_NAME = "dataset.json"

CAMERA_HW = (96, 192)
LIDAR_BEV_RESOLUTION_M = 0.5  # 128 x 128 cells over the 64 m x 64 m area
LIDAR_BEV_CELLS = 128
LIDAR_MAX_PER_CELL = 5  # TransFuser's cap; the reader divides by it
BEV_X_RANGE_M = (-16.0, 48.0)  # rows: x forward (ego frame); the LiDAR BEV covers the same area
BEV_Y_RANGE_M = (-32.0, 32.0)  # columns: y left
BEV_SEMANTIC_CELLS = 64  # 1 m cells
RADAR_RETURNS = 32
ROUTE_POINTS = 10
PLAN_POSES = 8
MAX_BOXES = 128  # a lot at 60 % occupancy has ~100 parked cars within 50 m; the farthest are dropped
BOX_RANGE_M = 50.0
BOX_COLUMNS = ("x_m", "y_m", "yaw_rad", "length_m", "width_m", "speed_mps", "class")
PARTIAL_MARK = ".partial-"  # an episode group being written is named <key>.partial-<random> until complete
SHARD_FRAMES = 64  # frames per file for the per-frame-chunked arrays (one chunk = one frame)
SMALL_CHUNK_FRAMES = 1024  # the small arrays: one chunk covers a whole episode at 5 Hz up to 200 s


class BevClass(IntEnum):
    OFF_ROAD = 0
    ROAD = 1  # lanes, junction boxes, parking lots (aisles and spots)
    ROUTE = 2  # the ego's route corridor (its lanes at their width)
    VEHICLE = 3
    PEDESTRIAN = 4
    STATIC = 5  # parked or stalled cars, cones


class LightState(IntEnum):
    NONE = 0
    GREEN = 1
    YELLOW = 2
    RED = 3


@dataclass(frozen=True)
class ArraySpec:
    dtype: str
    frame_shape: tuple[int, ...]
    per_frame_chunks: bool = False  # big arrays: one chunk per frame (random access reads one frame)


def frame_arrays() -> dict[str, ArraySpec]:
    """Every array of an episode group: name -> dtype and the shape of one frame."""
    out = {"camera_front_rgb": ArraySpec("uint8", (*CAMERA_HW, 3), True)}
    out.update({
        "camera_valid": ArraySpec("int8", ()),
        "lidar_bev": ArraySpec("uint8", (2, LIDAR_BEV_CELLS, LIDAR_BEV_CELLS), True),
        "lidar_valid": ArraySpec("int8", ()),
        "radar_returns": ArraySpec("float32", (RADAR_RETURNS, 4)),
        "radar_num_returns": ArraySpec("int32", ()),
        "radar_valid": ArraySpec("int8", ()),
        "speed_mps": ArraySpec("float32", ()),
        "accel_mps2": ArraySpec("float32", ()),
        "yaw_rate_rps": ArraySpec("float32", ()),
        "steer_rad": ArraySpec("float32", ()),
        "gear": ArraySpec("int8", ()),
        "route_xy_ego_m": ArraySpec("float32", (ROUTE_POINTS, 2)),
        "route_command": ArraySpec("int8", (ROUTE_POINTS,)),
        "command": ArraySpec("int8", ()),
        "command_distance_m": ArraySpec("float32", ()),
        "plan": ArraySpec("float32", (PLAN_POSES, 3)),
        "plan_gear": ArraySpec("int8", ()),
        "expert_control": ArraySpec("float32", (3,)),
        "executed_control": ArraySpec("float32", (3,)),
        "bev_semantic": ArraySpec("uint8", (BEV_SEMANTIC_CELLS, BEV_SEMANTIC_CELLS), True),
        "light_state": ArraySpec("int8", ()),
        "boxes": ArraySpec("float32", (MAX_BOXES, len(BOX_COLUMNS))),
        "num_boxes": ArraySpec("int32", ()),
        "t_s": ArraySpec("float32", ()),
        "ego_pose_world": ArraySpec("float32", (3,)),
    })
    return out


FRAME_ARRAYS = frame_arrays()


# what an episode needs to be read; without the privileged labels (bev_semantic, light_state) it still is
REQUIRED_ARRAYS = ("camera_front_rgb", "lidar_bev", "speed_mps", "command", "route_xy_ego_m", "plan", "plan_gear",
                   "camera_valid", "lidar_valid")


class DatasetError(ValueError):
    """A dataset directory that cannot be used as asked; the message says what is wrong and how to fix it."""


def episode_key(scenario: str, seed: int) -> str:
    return f"{scenario}_{seed}"


def store_path(root: str | Path) -> Path:
    return Path(root) / STORE_NAME


def read_meta(root: str | Path) -> dict[str, Any]:
    """``dataset.json`` of a dataset directory, checked for our format and version."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset directory {str(root)!r} does not exist; collect one with "
                           f"`dualdrive collect --out {root}`")
    meta_path = root / META_NAME
    if not meta_path.is_file():
        raise DatasetError(f"{str(root)!r} is not a dualdrive demonstration dataset (no {META_NAME}); "
                           "point at a directory written by `dualdrive collect`")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{str(meta_path)!r} is not valid JSON ({e}); the dataset is damaged: collect it again "
                           "into a new directory") from None
    check_format(meta, str(meta_path))
    return meta


def check_format(meta: Any, where: str) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DatasetError(f"{where} holds format {got!r}, not {FORMAT_NAME!r}: this is not a dualdrive "
                           "demonstration dataset")
    version = meta.get("version")
    if version != FORMAT_VERSION:
        raise DatasetError(f"{where} is format version {version!r}, this dualdrive reads version {FORMAT_VERSION}: "
                           "re-collect it with `dualdrive collect` (the same command, into a new --out), or use the "
                           "dualdrive version that wrote it")


def complete_episodes(root: str | Path) -> tuple[list[str], int]:
    """Sorted keys of the complete, readable episodes with at least one frame, and how many groups
    were skipped (incomplete or damaged; each with a warning naming it)."""
    import zarr
    sp = store_path(root)
    if not sp.is_dir():
        raise DatasetError(f"{str(root)!r} has no {sp.name}; the collection never started: run `dualdrive collect`")
    keys, skipped = [], 0
    for d in sorted(p for p in sp.iterdir() if p.is_dir()):
        why = None
        if PARTIAL_MARK in d.name:  # a write that was interrupted before its rename (or is still running)
            skipped += 1
            continue
        try:
            g = zarr.open_group(str(d), mode="r")
            if g.attrs.get("complete") is not True:
                why = "incomplete (interrupted while being written)"
            else:
                missing = [k for k in REQUIRED_ARRAYS if k not in g]
                n = int(g.attrs.get("frames", -1))
                if missing:
                    why = f"damaged: missing arrays {', '.join(missing)}"
                elif any(g[k].shape[0] != n for k in REQUIRED_ARRAYS):
                    why = f"damaged: array lengths differ from its {n} frames"
                elif n == 0:
                    continue  # a driver that failed on its first tick: nothing to learn from, not an error
        except Exception as e:  # an unreadable zarr.json (a kill mid-write)
            why = f"unreadable ({type(e).__name__}: {e})"
        if why:
            warnings.warn(f"skipping episode {d.name!r} of {str(root)!r}: {why}; re-run the same "
                          "`dualdrive collect` command to rewrite it", stacklevel=2)
            skipped += 1
        else:
            keys.append(d.name)
    return keys, skipped


def write_json_atomic(path: Path, data: Any) -> None:
    """Write, fsync, rename: a crash leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=1, default=_json_default))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, range):
        return f"{o.start}:{o.stop}"
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)
