"""``dualdrive collect``: demonstration episodes of a suite, driven on a Ray cluster, written to
``DIR/episodes.zarr`` as they finish, resumable.

Each worker drives, records and writes its episode's group itself (groups are independent
directories of the store, so workers never write the same file); the driver process only
schedules. Resuming: a re-run of the same command lists the store, keeps every group marked
``complete``, deletes incomplete ones (a crash or kill mid-write) and runs the rest. ``dataset.json``
pins the format version and what identifies the collection (driver, suite, DART sigma, stride,
time limit); a re-run with other settings into the same directory is refused, since mixing them
silently would make the card and the training data lie. Adding seeds to a collection is allowed.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dualdrive.data.episode import CollectJob, RecordSpec, collect_episode
from dualdrive.data.format import (FORMAT_NAME, FORMAT_VERSION, META_NAME, PARTIAL_MARK, DatasetError, check_format,
                                   store_path, write_json_atomic)
from dualdrive.world.scenarios import DEV_SEED_LIMIT, ConfigError, check_seed

# The default time limit of a demonstration. The families' own limits (150-480 s) are for scoring a
# driver that may dawdle. Collection costs ~12 ms of CPU per 10 Hz tick at stride 2 (world + expert
# ~5 ms, camera + LiDAR + labels ~14 ms per recorded frame), so 40 P2P + 40 urban + 40 highway
# episodes at full length (P2P alone runs past 200 s) are over 20 min on 2 cores: too much for a
# 45-minute collect-and-train run. At 120 s most highway routes stay whole (~75-100 s); urban ones
# (120-190 s) lose their last junctions about half the time (more of the same driving); P2P keeps
# leaving the spot (reverse gear), the city and the motorway but loses the final search and park, a
# skill of its own: collect the parking suite for it. 120 episodes take ~14 min on 2 cores (~10 min
# at --frame-stride 4).
DEFAULT_MAX_DURATION_S = 120.0


@dataclass
class CollectConfig:
    out: Path
    suite: str = "all"
    agent: str = "expert"
    episodes: int | None = None  # default: len(seeds), or 10 without seeds
    seeds: range | None = None  # default: range(0, episodes)
    workers: int = 1
    dart_noise: float = 0.0  # DART sigma, m/s^2 (dart.py)
    frame_stride: int = 2  # record every K-th tick: 5 Hz
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S  # None: each scenario's own time limit
    sampling: str = "uniform"  # or "informative": the stride depends on what a frame teaches (episode.frame_kind)
    episode_timeout_s: float = 1800.0  # wall seconds before an episode counts as hung
    ray_address: str | None = None  # None: a local cluster with ``workers`` CPUs
    meta_extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers={self.workers} must be at least 1")
        if self.dart_noise < 0 or self.dart_noise != self.dart_noise:
            raise ConfigError(f"--dart-noise {self.dart_noise} must be >= 0 (the noise's standard deviation in m/s^2)")
        if self.frame_stride < 1:
            raise ConfigError(f"--frame-stride {self.frame_stride} must be at least 1 (1 records every 10 Hz tick)")
        from dualdrive.data.format import SAMPLINGS
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"--sampling {self.sampling!r} must be one of {', '.join(SAMPLINGS)}")
        if self.max_duration_s is not None and not 1.0 <= self.max_duration_s <= 3600.0:
            raise ConfigError(f"--max-duration-s {self.max_duration_s} must be in [1, 3600] seconds")
        if self.episodes is not None and self.episodes < 1:
            raise ConfigError(f"--episodes {self.episodes} must be at least 1")
        if self.seeds is not None:
            check_seed(self.seeds.start)
            if self.seeds.stop > DEV_SEED_LIMIT:
                raise ConfigError(f"--seeds {self.seeds.start}:{self.seeds.stop} reaches into the evaluation seeds "
                                  f"(>= {DEV_SEED_LIMIT}); demonstrations use development seeds only, e.g. 0:100")
            if self.episodes is not None and self.episodes != len(self.seeds):
                raise ConfigError(f"--seeds {self.seeds.start}:{self.seeds.stop} gives {len(self.seeds)} seeds but "
                                  f"--episodes asks for {self.episodes}; give one of them, or make them agree")
        elif self.episodes is not None and self.episodes > DEV_SEED_LIMIT:
            raise ConfigError(f"--episodes {self.episodes}: at most {DEV_SEED_LIMIT} (the development seeds)")

    @property
    def seed_range(self) -> range:
        if self.seeds is not None:
            return self.seeds
        return range(0, self.episodes if self.episodes is not None else 10)

    def record_spec(self) -> RecordSpec:
        return RecordSpec(self.agent, float(self.dart_noise), int(self.frame_stride), self.sampling)


class CollectInterrupted(RuntimeError):
    """Ctrl-C: finished episodes are in the store; the same command resumes."""


def plan_jobs(cfg: CollectConfig) -> tuple[list[CollectJob], dict]:
    """The episodes of a collection (episode i: scenario i mod S, seed i of the range) and the
    description that identifies the collection."""
    from dualdrive.bench.suites import load_suite
    from dualdrive.world.scenarios import ScenarioConfig
    cfg.validate()
    suite = load_suite(cfg.suite)
    scen = suite.scenarios
    jobs = []
    for i, seed in enumerate(cfg.seed_range):
        sc = scen[i % len(scen)]
        d = sc.config.to_dict()
        if cfg.max_duration_s is not None:
            d["max_duration_s"] = min(cfg.max_duration_s, sc.config.time_limit_s)
        jobs.append(CollectJob(sc.name, seed, ScenarioConfig.from_dict(d).to_dict()))
    ident = {"agent": cfg.agent, "suite": suite.describe(), "dart_noise": float(cfg.dart_noise),
             "frame_stride": int(cfg.frame_stride), "max_duration_s": cfg.max_duration_s}
    if cfg.sampling != "uniform":  # absent means uniform: collections made before the key resume as before
        ident["sampling"] = cfg.sampling
    return jobs, ident


def open_collection(out: Path, ident: dict) -> dict:
    """Create ``out`` (dataset.json and the store) or check that it holds this same collection."""
    import zarr
    meta_path = out / META_NAME
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {str(out)!r} is a file; pass a directory")
    if meta_path.exists():
        from dualdrive.data.format import read_meta
        meta = read_meta(out)
        if _canon(meta.get("collection")) != _canon(ident):
            old = meta.get("collection", {})
            raise DatasetError(f"{str(out)!r} holds another collection (driver {old.get('agent')!r}, suite "
                               f"{old.get('suite', {}).get('name')!r}, dart_noise {old.get('dart_noise')}, stride "
                               f"{old.get('frame_stride')}, max_duration_s {old.get('max_duration_s')}); pass another "
                               "--out, or delete it to start over")
    else:
        if out.is_dir() and any(out.iterdir()):
            raise DatasetError(f"--out {str(out)!r} is a non-empty directory that is not a dualdrive dataset "
                               f"(no {META_NAME}); pass a new or empty directory")
        out.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "collection": ident, "runs": []}
        check_format(meta, str(meta_path))
        write_json_atomic(meta_path, meta)
    zarr.open_group(str(store_path(out)), mode="a")  # creates the root group once, before any worker
    return meta


def episode_status(out: Path) -> tuple[set[str], set[str]]:
    """(complete, incomplete) group names of a dataset's store (incomplete: groups without the
    ``complete`` flag and ``.partial-`` directories of interrupted writes)."""
    import zarr
    sp = store_path(out)
    if not sp.exists():
        return set(), set()
    complete, incomplete = set(), set()
    for d in sorted(p for p in sp.iterdir() if p.is_dir()):
        if PARTIAL_MARK in d.name:
            incomplete.add(d.name)
            continue
        try:
            g = zarr.open_group(str(d), mode="r")
            ok = g.attrs.get("complete") is True
        except Exception:  # a torn zarr.json from a kill mid-write
            ok = False
        (complete if ok else incomplete).add(d.name)
    return complete, incomplete


def collect(cfg: CollectConfig, on_done: Callable[[dict, int, int], None] | None = None) -> dict:
    """Run (or resume) a collection into ``cfg.out``; rewrites the dataset card; returns a summary."""
    jobs, ident = plan_jobs(cfg)
    meta = open_collection(cfg.out, ident)
    complete, incomplete = episode_status(cfg.out)
    # interrupted mid-write: deleted, and rewritten from scratch below. (A worker of a killed run that
    # is still finishing writes under its own partial name; see episode.write_episode.)
    for key in incomplete:
        shutil.rmtree(store_path(cfg.out) / key, ignore_errors=True)
    todo = [j for j in jobs if j.key not in complete]
    done_before = len(jobs) - len(todo)
    rows: list[dict] = []
    t0 = time.perf_counter()
    if todo:
        def done(row: dict) -> None:
            rows.append(row)
            if on_done:
                on_done(row, done_before + len(rows), len(jobs))
        _run_on_ray(cfg, todo, done)
    wall_s = time.perf_counter() - t0
    run = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "seeds": f"{cfg.seed_range.start}:{cfg.seed_range.stop}",
           "episodes": len(jobs), "skipped_complete": done_before, "collected": sum(r["status"] == "ok" for r in rows),
           "failed": [{"key": r["key"], "error": r["error"]} for r in rows if r["status"] != "ok"],
           "workers": cfg.workers, "wall_s": round(wall_s, 2),
           "frames": sum(r["frames"] for r in rows), "ticks": sum(r["steps"] for r in rows),
           "bytes": sum(r["bytes"] for r in rows), "cpu_s": round(sum(r.get("cpu_s", 0.0) for r in rows), 2),
           **cfg.meta_extra}
    meta.setdefault("runs", []).append(run)
    write_json_atomic(cfg.out / META_NAME, meta)
    from dualdrive.data.card import write_card
    card = write_card(cfg.out)
    return {"run": run, "rows": rows, "card": card}


def _run_on_ray(cfg: CollectConfig, todo: list[CollectJob], done: Callable[[dict], None]) -> None:
    import ray
    started_here = not ray.is_initialized()
    if started_here:
        kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=False)
        if cfg.ray_address:
            ray.init(address=cfg.ray_address, **kw)
        else:
            ray.init(num_cpus=cfg.workers, object_store_memory=256 * 1024**2, **kw)
    remote = ray.remote(num_cpus=1, max_retries=0)(collect_episode)
    spec, store = cfg.record_spec(), str(store_path(cfg.out))
    queue, pending = list(todo), {}
    try:
        while queue or pending:
            while queue and len(pending) < cfg.workers:
                job = queue.pop(0)
                pending[remote.remote(job, spec, store)] = (job, time.monotonic())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                job, _ = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as e:  # the worker died (out of memory, killed): its group stays incomplete
                    row = _failed(job, f"worker failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
                done(row)
            now = time.monotonic()
            for ref, (job, t) in list(pending.items()):
                if now - t > cfg.episode_timeout_s:
                    ray.cancel(ref, force=True)
                    pending.pop(ref)
                    done(_failed(job, f"episode timed out after {cfg.episode_timeout_s:.0f} s (a hanging driver?)"))
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise CollectInterrupted(f"interrupted: finished episodes are saved in {str(store_path(cfg.out))!r}; run the "
                                 "same command again to resume") from None
    finally:
        if started_here:
            ray.shutdown()


def _failed(job: CollectJob, error: str) -> dict:
    return {"key": job.key, "scenario": job.scenario, "seed": job.seed, "status": "failed", "error": error,
            "frames": 0, "steps": 0, "bytes": 0, "success": False, "route_completion": 0.0, "wall_s": 0.0, "cpu_s": 0.0}


def _canon(d) -> str:
    import json
    return json.dumps(d, sort_keys=True, default=str)
