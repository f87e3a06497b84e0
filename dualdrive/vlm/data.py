"""VLM datasets: the expert drives a suite, every ~1 s its front camera frame is stored with the
ground-truth answer (structured and as text) and the prompt.

Layout of ``DIR``::

    DIR/vlm_data.json              {"format": "dualdrive-vlm-data", "version": 1, "identity": {...}, "episodes": {...}}
    DIR/episodes/<scenario>_<seed>.jsonl   one line per frame: prompt, text, answer (VLMAnswer.to_dict()), t_s, ...
    DIR/episodes/<scenario>_<seed>.npz     camera_front_rgb uint8 (T, 96, 192, 3), t_s float32 (T,)

Crash safety and resume: each file is written under a temporary name and renamed; the ``.npz`` is
renamed last, so an episode exists exactly when its ``.npz`` does. A re-run of the same command
skips finished episodes; a re-run with other settings into the same ``DIR`` is refused (mixing
them would make the dataset lie about itself). Adding episodes (a larger ``--episodes``) is fine.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dualdrive.data.format import write_json_atomic
from dualdrive.vlm.answer import WAYPOINT_HORIZONS_S, VLMAnswer, render_answer
from dualdrive.world.scenarios import DEV_SEED_LIMIT, ConfigError

FORMAT_NAME = "dualdrive-vlm-data"
FORMAT_VERSION = 1
META_NAME = "vlm_data.json"
EPISODES_DIR = "episodes"
DEFAULT_SUITE = str(Path(__file__).with_name("suite.yaml"))
DEFAULT_MAX_DURATION_S = 60.0  # ~55 labelled frames an episode; long enough for every event to appear
CAMERA_KEY = "camera_front_rgb"


class VLMDataError(ValueError):
    """A dataset directory that cannot be written or read; the message names the file and the problem."""


@dataclass(frozen=True)
class GenConfig:
    out: Path
    suite: str = DEFAULT_SUITE  # a suite name or .yaml file (dualdrive.bench.suites)
    scenario: str | None = None  # only this scenario of the suite (None: all of them, in turn)
    episodes: int = 14  # episode i drives scenario i mod len(suite) with seed first_seed + i
    first_seed: int = 0
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    sample_period_s: float = 1.0  # a frame every this many seconds
    workers: int = 1

    def validate(self) -> None:
        if self.episodes < 1:
            raise ConfigError(f"--episodes {self.episodes} must be at least 1")
        if self.first_seed < 0 or self.first_seed + self.episodes > DEV_SEED_LIMIT:
            raise ConfigError(f"seeds {self.first_seed}:{self.first_seed + self.episodes} must lie in the development "
                              f"range 0:{DEV_SEED_LIMIT} (seeds >= {DEV_SEED_LIMIT} are the benchmark's)")
        if not 5.0 <= self.max_duration_s <= 600.0:
            raise ConfigError(f"--max-duration-s {self.max_duration_s} must be in [5, 600] seconds")
        if not 0.1 <= self.sample_period_s <= 10.0:
            raise ConfigError(f"--sample-period-s {self.sample_period_s} must be in [0.1, 10] seconds")
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers} must be at least 1")


@dataclass(frozen=True)
class EpisodeJob:
    scenario: str
    seed: int
    config: dict  # ScenarioConfig as a dict, the time limit applied
    sample_period_s: float

    @property
    def key(self) -> str:
        return f"{self.scenario}_{self.seed}"


def plan_jobs(cfg: GenConfig) -> tuple[list[EpisodeJob], dict]:
    from dualdrive.bench.suites import load_suite
    from dualdrive.world.scenarios import ScenarioConfig
    cfg.validate()
    suite = load_suite(cfg.suite)
    scenarios = suite.scenarios
    if cfg.scenario is not None:
        scenarios = [s for s in scenarios if s.name == cfg.scenario]
        if not scenarios:
            raise ConfigError(f"--scenario {cfg.scenario!r} is not in suite {suite.name!r}; valid: "
                              f"{', '.join(s.name for s in suite.scenarios)}")
    jobs = []
    for i in range(cfg.episodes):
        sc = scenarios[i % len(scenarios)]
        d = sc.config.to_dict()
        d["max_duration_s"] = min(cfg.max_duration_s, sc.config.time_limit_s)
        jobs.append(EpisodeJob(sc.name, cfg.first_seed + i, ScenarioConfig.from_dict(d).to_dict(), cfg.sample_period_s))
    identity = {"suite": suite.describe(), "max_duration_s": cfg.max_duration_s, "sample_period_s": cfg.sample_period_s}
    if cfg.scenario is not None:
        identity["scenario"] = cfg.scenario
    return jobs, identity


# -- one episode ------------------------------------------------------------------------------------
@dataclass
class _Drive:
    """What one expert drive leaves for labelling."""

    track: list  # TrackTick per world tick, and the final state
    samples: list  # (tick, SceneFacts, camera frame, prompt) per sampled tick
    ticks_per_s: int
    lane_map: object
    parked: bool  # the episode ended with the ego parked (its future is standing still)


def _track_tick(world, phase: str):
    from dualdrive.vlm.text import TrackTick
    return TrackTick(world.t, (float(world.ego_xy[0]), float(world.ego_xy[1])), world.ego_heading, world.ego_speed,
                     world.lane_here, phase)


def _drive_expert(job: EpisodeJob, cfg) -> _Drive:
    """The expert drives the episode; every tick goes on the track, every sampled tick is described."""
    import gymnasium as gym

    from dualdrive.agents.base import reset_info_for
    from dualdrive.agents.expert.agent import ExpertAgent
    from dualdrive.agents.follower import TrajectoryFollower
    from dualdrive.sensors.suite import SensorSuite, SensorSuiteConfig
    from dualdrive.vlm.prompt import prompt_from_observation
    from dualdrive.vlm.text import STILL_MPS, LaneRelations, describe_scene
    from dualdrive.world.env import ENV_IDS

    # the camera is all the VLM sees: no LiDAR or radar to compute
    env = SensorSuite(gym.make(ENV_IDS[cfg.family], config=cfg, disable_env_checker=True),
                      SensorSuiteConfig(lidar=None, radar=None))
    base = env.env  # stepped directly: the camera renders only on sampled ticks
    obs, info = env.reset(seed=job.seed)
    world = base.unwrapped.world
    expert = ExpertAgent()
    expert.reset(reset_info_for(expert, info))
    follower, relations = TrajectoryFollower(), LaneRelations(world.map)
    stride = max(1, int(round(job.sample_period_s / world.dt)))
    track, samples, tick = [], [], 0
    while True:
        plan = expert.act(obs)
        dbg = expert.debug
        track.append(_track_tick(world, dbg["phase"]))
        if tick > 0 and tick % stride == 0:
            samples.append((tick, describe_scene(world, relations, dbg["goal_spot"]), env.observation(obs)[CAMERA_KEY],
                            prompt_from_observation(obs)))
        obs, _, terminated, truncated, _ = base.step(follower.update(plan, world.ego_speed).to_action())
        tick += 1
        if terminated or truncated:
            break
    track.append(_track_tick(world, "done"))
    env.close()
    return _Drive(track, samples, int(round(1.0 / world.dt)), world.map,
                  bool(terminated and abs(world.ego_speed) < STILL_MPS))


def drive_and_label(job: EpisodeJob) -> tuple[np.ndarray, list[dict]]:
    """Drive one episode with the expert; returns the frames (T, H, W, 3) and their records."""
    from dualdrive.vlm.text import label_frame, lane_changes
    from dualdrive.world.scenarios import ScenarioConfig

    cfg = ScenarioConfig.from_dict(job.config)
    drive = _drive_expert(job, cfg)
    track, horizon = drive.track, len(WAYPOINT_HORIZONS_S) * drive.ticks_per_s
    if drive.parked:
        track = track + [track[-1]] * horizon
    changes = lane_changes(np.array([tk.lane for tk in track]), drive.lane_map)
    images, records = [], []
    for i0, facts, image, prompt in drive.samples:
        if i0 + horizon >= len(track):
            continue  # the episode ended before the plan's horizon: its future is unknown
        answer = label_frame(facts, track, i0, drive.ticks_per_s, changes)
        images.append(image)
        records.append({"frame": len(records), "t_s": round(track[i0].t_s, 2), "scenario": job.scenario,
                        "seed": job.seed, "family": cfg.family, "prompt": prompt, "text": render_answer(answer),
                        "answer": answer.to_dict()})
    frames = np.stack(images) if images else np.zeros((0, 96, 192, 3), np.uint8)
    return frames.astype(np.uint8), records


def write_episode(out: Path, key: str, frames: np.ndarray, records: list[dict]) -> None:
    """JSONL first, then the NPZ by rename: the NPZ's presence marks a finished episode."""
    d = out / EPISODES_DIR
    d.mkdir(parents=True, exist_ok=True)
    jl_tmp, npz_tmp = d / f"{key}.jsonl.tmp", d / f"{key}.tmp.npz"
    with open(jl_tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(jl_tmp, d / f"{key}.jsonl")
    t_s = np.array([r["t_s"] for r in records], np.float32)
    np.savez_compressed(npz_tmp, **{CAMERA_KEY: frames, "t_s": t_s})
    os.replace(npz_tmp, d / f"{key}.npz")


def generate_episode(job: EpisodeJob, out: str) -> dict:
    """Drive, label and write one episode; returns its row (a crash is a failed row, never an exception)."""
    t0 = time.perf_counter()
    try:
        frames, records = drive_and_label(job)
        write_episode(Path(out), job.key, frames, records)
        row = {"key": job.key, "status": "ok", "frames": len(records)}
    except Exception as e:
        row = {"key": job.key, "status": "failed", "frames": 0, "error": f"{type(e).__name__}: {e}",
               "traceback": traceback.format_exc()}
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    return row


# -- a whole dataset ---------------------------------------------------------------------------------
def finished_keys(out: Path) -> set[str]:
    d = out / EPISODES_DIR
    if not d.is_dir():
        return set()
    return {p.name[:-4] for p in d.glob("*.npz") if not p.name.endswith(".tmp.npz") and
            (d / (p.name[:-4] + ".jsonl")).is_file()}


def open_dataset(out: Path, identity: dict) -> dict:
    meta_path = out / META_NAME
    if out.exists() and not out.is_dir():
        raise VLMDataError(f"--out {str(out)!r} is a file; pass a directory")
    if meta_path.is_file():
        meta = read_meta(out)
        if json.dumps(meta["identity"], sort_keys=True) != json.dumps(identity, sort_keys=True, default=str):
            raise VLMDataError(f"{str(out)!r} holds a VLM dataset made with other settings (suite "
                               f"{meta['identity'].get('suite', {}).get('name')!r}, max_duration_s "
                               f"{meta['identity'].get('max_duration_s')}, sample_period_s "
                               f"{meta['identity'].get('sample_period_s')}); pass another --out or delete it")
        return meta
    if out.is_dir() and any(out.iterdir()):
        raise VLMDataError(f"--out {str(out)!r} is a non-empty directory without {META_NAME}; pass a new or empty one")
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "identity": json.loads(json.dumps(identity, default=str)),
            "episodes": {}}
    write_json_atomic(meta_path, meta)
    return meta


def read_meta(root: Path) -> dict:
    path = Path(root) / META_NAME
    if not path.is_file():
        raise VLMDataError(f"{str(root)!r} is not a VLM dataset (no {META_NAME}); make one with `dualdrive gen-vlm-data`")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VLMDataError(f"{str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
        raise VLMDataError(f"{str(path)!r} is not a {FORMAT_NAME} version {FORMAT_VERSION} file")
    return meta


def generate_dataset(cfg: GenConfig, on_done: Callable[[dict, int, int], None] | None = None) -> dict:
    """Generate (or resume) a dataset into ``cfg.out``; returns the updated metadata."""
    jobs, identity = plan_jobs(cfg)
    out = Path(cfg.out)
    meta = open_dataset(out, identity)
    done = finished_keys(out)
    todo = [j for j in jobs if j.key not in done]
    finished = len(jobs) - len(todo)

    def record(row: dict) -> None:
        nonlocal finished
        finished += 1
        meta["episodes"][row["key"]] = {k: v for k, v in row.items() if k != "key"}
        write_json_atomic(out / META_NAME, meta)
        if on_done:
            on_done(row, finished, len(jobs))

    if cfg.workers == 1:
        for job in todo:
            record(generate_episode(job, str(out)))
    else:
        with ProcessPoolExecutor(cfg.workers) as pool:
            futures = [pool.submit(generate_episode, job, str(out)) for job in todo]
            for fut in as_completed(futures):
                record(fut.result())
    meta["stats"] = dataset_stats(out)
    write_json_atomic(out / META_NAME, meta)
    return meta


# -- reading ---------------------------------------------------------------------------------------
@dataclass
class Frames:
    """Every frame of some episodes, in memory: images (N, H, W, 3) uint8 and one record per frame."""

    images: np.ndarray
    records: list[dict]

    def __len__(self) -> int:
        return len(self.records)

    def answers(self) -> list[VLMAnswer]:
        return [VLMAnswer.from_dict(r["answer"]) for r in self.records]


def episode_keys(root: Path) -> list[str]:
    read_meta(root)
    return sorted(finished_keys(Path(root)))


def load_frames(root: Path, keys: list[str] | None = None) -> Frames:
    root = Path(root)
    keys = episode_keys(root) if keys is None else keys
    images, records = [], []
    for key in keys:
        npz, jl = root / EPISODES_DIR / f"{key}.npz", root / EPISODES_DIR / f"{key}.jsonl"
        try:
            with np.load(npz) as z:
                img = z[CAMERA_KEY]
            recs = [json.loads(line) for line in jl.read_text().splitlines() if line.strip()]
        except (OSError, ValueError, KeyError) as e:
            raise VLMDataError(f"episode {key!r} of {str(root)!r} is damaged ({type(e).__name__}: {e}); delete "
                               f"{npz.name} and re-run the same gen-vlm-data command") from None
        if len(recs) != len(img):
            raise VLMDataError(f"episode {key!r} of {str(root)!r}: {len(img)} frames but {len(recs)} records; delete "
                               f"{npz.name} and re-run the same gen-vlm-data command")
        images.append(img)
        records += recs
    if not records:
        raise VLMDataError(f"{str(root)!r} has no labelled frames in {len(keys)} episode(s)")
    return Frames(np.concatenate(images), records)


def dataset_stats(root: Path) -> dict:
    """Counts that show whether rare cases are represented: frames per family, first meta-actions, findings."""
    from collections import Counter
    fam, first, subj = Counter(), Counter(), Counter()
    n = 0
    for key in sorted(finished_keys(Path(root))):
        for line in (Path(root) / EPISODES_DIR / f"{key}.jsonl").read_text().splitlines():
            r = json.loads(line)
            n += 1
            fam[r["family"]] += 1
            first[r["answer"]["meta_actions"][0]] += 1
            subj.update({f"{f['subject']}/{f['state']}" for f in r["answer"]["analysis"]})
    return {"frames": n, "by_family": dict(fam), "first_action": dict(first.most_common()),
            "findings": dict(subj.most_common())}
