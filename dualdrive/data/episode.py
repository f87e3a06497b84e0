"""One demonstration episode: a driver drives, the privileged expert labels every tick, every
``frame_stride``-th tick is recorded (or, with informative sampling, a stride that depends on what
the frame teaches: ``frame_kind``), and the episode is written as one group of the zarr store.

The driver (``--agent``) and the labeller are separate roles: the expert plans from the true world
state, so it can label the states any driver visits (DAgger reuses this with a learner driving).
When the driver is the expert itself, one instance does both (its plan is the label). With DART
noise the executed control is the driver's control plus noise; the labels stay the expert's clean
plan and control.
"""
from __future__ import annotations

import os
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from dualdrive.agents.base import Agent, Control, Plan, reset_info_for
from dualdrive.agents.expert.agent import ExpertAgent
from dualdrive.agents.follower import TrajectoryFollower
from dualdrive.agents.registry import load_agent
from dualdrive.data.bev import SemanticBev
from dualdrive.data.dart import DartConfig, DartNoise
from dualdrive.data.format import (FORMAT_VERSION, FRAME_ARRAYS, PARTIAL_MARK, LIDAR_BEV_RESOLUTION_M, LIDAR_MAX_PER_CELL,
                                   SAMPLINGS, SHARD_FRAMES, SMALL_CHUNK_FRAMES, BEV_X_RANGE_M, BEV_Y_RANGE_M, episode_key)
from dualdrive.data.labels import actor_boxes, light_state_ahead
from dualdrive.sensors.lidar import bev_histogram
from dualdrive.sensors.scene import scene_from_world
from dualdrive.sensors.suite import SensorSuite
from dualdrive.world.env import ENV_IDS
from dualdrive.world.scenarios import ScenarioConfig

ZSTD_LEVEL = 3  # measured: level 3 is within a few % of level 9's size at a fraction of its time


@dataclass(frozen=True)
class CollectJob:
    scenario: str  # suite scenario name
    seed: int
    config: dict  # ScenarioConfig as a dict (the collection's time limit already applied)

    @property
    def key(self) -> str:
        return episode_key(self.scenario, self.seed)


# informative sampling (see ``frame_kind``): a waiting frame is recorded this many times more rarely,
# a decisive one every DECISIVE_STRIDE ticks (5 Hz), whatever the base stride. At 5x rarer the policy
# trained on it moved off and kept going, red lights included (4 runs in 2 urban episodes): 3x
# leaves about as many frames of a standing car staying as of one moving off
WAIT_STRIDE_FACTOR = 3
DECISIVE_STRIDE = 2
STANDSTILL_MPS = 0.5
PLAN_MOVES_M = 0.5  # a plan whose last pose is nearer than this keeps the car where it is


@dataclass(frozen=True)
class RecordSpec:
    """How an episode is driven and recorded (the same for every episode of a collection)."""

    agent: str = "expert"
    dart_noise: float = 0.0  # DART sigma in m/s^2 (see dart.py)
    frame_stride: int = 2  # record every K-th world tick: 5 Hz at the 10 Hz world
    # "uniform": every frame_stride-th tick. "informative": the stride depends on what the frame teaches
    # (``frame_kind``): waiting frames rarer, the frames where the car starts or reverses denser
    sampling: str = "uniform"

    def __post_init__(self) -> None:
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride={self.frame_stride} must be at least 1")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling={self.sampling!r} must be one of {', '.join(SAMPLINGS)}")
        DartConfig(self.dart_noise)  # validates the sigma

    def stride(self, kind: str) -> int:
        """Ticks between recorded frames for a frame of this ``frame_kind``."""
        if self.sampling == "uniform" or kind == "drive":
            return self.frame_stride
        if kind == "wait":
            return self.frame_stride * WAIT_STRIDE_FACTOR
        return min(self.frame_stride, DECISIVE_STRIDE)


def frame_kind(label: Plan, speed_mps: float) -> str:
    """What a frame teaches, from the expert's label and the car's speed.

    ``wait``: standing and the label stands too (a red light, a queue): a third of uniformly sampled
    urban frames and most of a car park's, near-identical, and what taught the policy that a car at
    rest stays at rest. ``decisive``: the label starts a standing car or drives in reverse (moving
    off at a green light, leaving a spot, the gear changes of parking): a few per cent of the
    frames, and the ones a car that never moves off got wrong. ``drive``: everything else.
    """
    standing = abs(speed_mps) < STANDSTILL_MPS
    moves = float(np.hypot(*label.poses[-1, :2])) >= PLAN_MOVES_M
    if label.gear < 0 or (standing and moves):
        return "decisive"
    return "wait" if standing else "drive"


class AgentStopped(RuntimeError):
    """The driver raised or returned something that cannot be driven: the episode ends there."""


def add_observation(r: dict[str, list], obs: dict) -> None:
    """Append one sensor-suite observation (camera, LiDAR as a BEV count grid, radar, odometry and
    navigation) to a dataset's frame rows; shared by the expert's and the human logs' recorders."""
    r["camera_front_rgb"].append(obs["camera_front_rgb"])
    r["camera_valid"].append(obs["camera_front_valid"][0])
    lidar_ok = int(obs["lidar_valid"][0])
    if lidar_ok:
        pts = obs["lidar_points_m"][: int(obs["lidar_num_points"][0])]
        # bev_histogram normalises by the cap; the cap times that is the integer count again
        hist = bev_histogram(pts, BEV_X_RANGE_M, BEV_Y_RANGE_M, LIDAR_BEV_RESOLUTION_M, max_per_cell=LIDAR_MAX_PER_CELL)
        r["lidar_bev"].append(np.rint(hist * LIDAR_MAX_PER_CELL).astype(np.uint8))
    else:
        r["lidar_bev"].append(np.zeros(FRAME_ARRAYS["lidar_bev"].frame_shape, np.uint8))
    r["lidar_valid"].append(lidar_ok)
    r["radar_returns"].append(obs["radar_returns"])
    r["radar_num_returns"].append(obs["radar_num_returns"][0])
    r["radar_valid"].append(obs["radar_valid"][0])
    for name in ("speed_mps", "accel_mps2", "yaw_rate_rps", "steer_rad", "gear", "command", "command_distance_m"):
        r[name].append(obs[name][0])
    r["route_xy_ego_m"].append(obs["route_xy_ego_m"])
    r["route_command"].append(obs["route_command"])


class FrameBuffer:
    """The recorded frames of one episode, kept in memory and written in one go at the end
    (an episode at 5 Hz is a few thousand frames at most, tens of MB before compression)."""

    def __init__(self, world) -> None:
        self.rows: dict[str, list[np.ndarray]] = {name: [] for name in FRAME_ARRAYS}
        self.bev = SemanticBev(world.map)

    def __len__(self) -> int:
        return len(self.rows["t_s"])

    def add(self, obs: dict, world, plan: Plan, expert_control: Control, executed: Control) -> None:
        r = self.rows
        add_observation(r, obs)
        r["plan"].append(plan.poses)
        r["plan_gear"].append(plan.gear)
        r["expert_control"].append(expert_control.to_action())
        r["executed_control"].append(executed.to_action())
        scene = scene_from_world(world)
        b = scene.boxes
        r["bev_semantic"].append(self.bev.rasterise(world, (b.xy, b.heading_rad, b.length_m, b.width_m, b.cls)))
        r["light_state"].append(int(light_state_ahead(world)))
        boxes, n = actor_boxes(b, world.ego_xy, world.ego_heading)
        r["boxes"].append(boxes)
        r["num_boxes"].append(n)
        r["t_s"].append(world.t)
        r["ego_pose_world"].append([*world.ego_xy, world.ego_heading])

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for name, spec in FRAME_ARRAYS.items():
            rows = self.rows[name]
            out[name] = (np.asarray(rows, dtype=spec.dtype) if rows
                         else np.zeros((0, *spec.frame_shape), spec.dtype)).reshape(-1, *spec.frame_shape)
        return out


def drive_and_record(job: CollectJob, spec: RecordSpec) -> tuple[dict[str, np.ndarray], dict]:
    """Drive one episode; returns its arrays and its attrs (everything but ``complete``)."""
    cfg = ScenarioConfig.from_dict(job.config)
    driver = load_agent(spec.agent)
    # the expert driving labels itself (one instance, one plan per tick); any other driver gets a
    # separate expert riding along
    labeller = driver if type(driver) is ExpertAgent else ExpertAgent()
    env = SensorSuite(gym.make(ENV_IDS[cfg.family], config=cfg, disable_env_checker=True))
    base = env.env  # stepped directly: the sensors run only where they are needed (below)
    obs, info = env.reset(seed=job.seed)
    world = base.unwrapped.world
    reset_info = {**info, "action_space": env.action_space, "seed": job.seed}
    driver.reset(reset_info_for(driver, reset_info))
    if labeller is not driver:
        labeller.reset(reset_info_for(labeller, reset_info))
    follower = TrajectoryFollower()
    noise = DartNoise(DartConfig(spec.dart_noise), job.seed, world.dt)
    buf = FrameBuffer(world)
    error, tick = None, 0
    since_recorded = spec.frame_stride  # the first tick is recorded
    sensed = True  # whether ``obs`` holds the sensors (reset's does)
    while True:
        label = labeller.act(obs)
        expert_control = follower.update(label, world.ego_speed)
        record = since_recorded >= spec.stride(frame_kind(label, world.ego_speed))
        if record and not sensed:  # the expert labels from the world: the sensors only for the record
            obs, sensed = env.observation(raw), True
        try:
            control = expert_control if labeller is driver else _drive(driver, obs, follower, world.ego_speed)
        except AgentStopped as e:
            error = str(e)
            break
        executed = noise.apply(control, world.ego_speed)
        if record:
            buf.add(obs, world, label, expert_control, executed)
            since_recorded = 0
        raw, _, terminated, truncated, _ = base.step(executed.to_action())
        tick += 1
        since_recorded += 1
        if terminated or truncated:
            break
        # rendering the camera and casting the LiDAR are most of a tick's cost: a driver that does not
        # read them (the expert) gets them only on the ticks that are recorded (above)
        sensed = driver.uses_sensors
        obs = env.observation(raw) if sensed else raw
    env.close()
    summary = world.summary()
    if error is not None:
        summary["success"] = False
    attrs = {"scenario": job.scenario, "family": cfg.family, "seed": job.seed, "driver": spec.agent,
             "labeller": "expert", "dart_noise": spec.dart_noise, "frame_stride": spec.frame_stride,
             "sampling": spec.sampling,
             "dt_s": world.dt, "steps": world.steps, "frames": len(buf), "error": error,
             "summary": _jsonable(summary), "format_version": FORMAT_VERSION}
    return buf.arrays(), attrs


def _drive(driver: Agent, obs: dict, follower: TrajectoryFollower, speed_mps: float) -> Control:
    try:
        decision = driver.act(obs)
    except Exception as e:
        raise AgentStopped(f"driver raised {type(e).__name__}: {e}") from e
    if isinstance(decision, Plan):
        control = follower.update(decision, speed_mps)
    elif isinstance(decision, Control):
        control = decision
    else:
        raise AgentStopped(f"driver returned {type(decision).__name__}, not a Plan or a Control")
    if not np.all(np.isfinite(control.to_action())):
        raise AgentStopped(f"driver's control is not finite: {control.to_action().tolist()}")
    return control


def write_episode(store: str | Path, key: str, arrays: dict[str, np.ndarray], attrs: dict) -> int:
    """Write one episode group; returns its bytes on disk.

    Crash safety: the group is written under a temporary name of its own (``<key>.partial-<random>``),
    its attrs get ``complete: true`` in a last write after every array is on disk, and only then is
    the directory renamed to ``<key>`` (atomic on a local filesystem; a zarr v3 parent lists no
    children, so a rename is all it takes). A group therefore appears only whole. The private name
    matters when a killed collection's Ray worker is still finishing an episode while the re-run
    writes the same one: the two never write into the same files, and whoever renames first wins
    (episodes are deterministic, so both hold the same data). Leftover partial directories and
    groups without the flag are deleted by the next collection and skipped by readers."""
    import zarr
    from zarr.codecs import ZstdCodec
    store = Path(store)
    tmp_key = f"{key}{PARTIAL_MARK}{uuid.uuid4().hex[:12]}"
    g = zarr.open_group(str(store), mode="a").create_group(tmp_key, attributes=dict(attrs))
    n = max(len(arrays["t_s"]), 1)
    for name, spec in FRAME_ARRAYS.items():
        if name not in arrays:  # a human log has no privileged labels (see dualdrive.human.export)
            continue
        data = arrays[name]
        fs = spec.frame_shape
        if spec.per_frame_chunks:  # one frame per chunk (a reader decodes only the frame it wants), many per file
            chunks, shards = (1, *fs), (min(SHARD_FRAMES, n), *fs)
        else:  # tiny per frame: the whole episode in one chunk
            chunks, shards = (min(SMALL_CHUNK_FRAMES, n), *fs), None
        a = g.create_array(name, shape=data.shape, dtype=spec.dtype, chunks=chunks, shards=shards,
                           compressors=ZstdCodec(level=ZSTD_LEVEL), fill_value=0)
        if len(data):
            a[...] = data
    g.attrs["complete"] = True
    tmp_dir, final = store / tmp_key, store / key
    size = sum(f.stat().st_size for f in tmp_dir.rglob("*") if f.is_file())
    if final.exists():
        if _is_complete(final):  # another writer of this same episode finished first
            shutil.rmtree(tmp_dir, ignore_errors=True)
            return size
        shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover
    os.rename(tmp_dir, final)
    return size


def _is_complete(group_dir: Path) -> bool:
    import zarr
    try:
        return zarr.open_group(str(group_dir), mode="r").attrs.get("complete") is True
    except Exception:
        return False


def collect_episode(job: CollectJob, spec: RecordSpec, store: str) -> dict:
    """Drive, record and write one episode; returns its row (never raises: a crash is a failed row)."""
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        arrays, attrs = drive_and_record(job, spec)
        size = write_episode(store, job.key, arrays, attrs)
        s = attrs["summary"]
        row = {"key": job.key, "scenario": job.scenario, "seed": job.seed, "status": "ok", "error": attrs["error"],
               "frames": attrs["frames"], "steps": attrs["steps"], "bytes": size, "success": s["success"],
               "route_completion": s["route_completion"]}
    except Exception as e:
        row = {"key": job.key, "scenario": job.scenario, "seed": job.seed, "status": "failed",
               "error": f"crashed: {type(e).__name__}: {e}", "traceback": traceback.format_exc(), "frames": 0,
               "steps": 0, "bytes": 0, "success": False, "route_completion": 0.0}
    row["wall_s"] = round(time.perf_counter() - t0, 3)
    row["cpu_s"] = round(time.process_time() - c0, 3)  # the cost on a core, whatever else the machine runs
    return row


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return o
