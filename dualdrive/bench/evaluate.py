"""``dualdrive eval``: many episodes of one agent on a suite (or a stock env), on a Ray cluster,
saved as they finish and resumable.

Every finished episode is appended to a journal (``<out>.episodes.jsonl``, one JSON line each,
flushed and fsync'd) before anything else happens, so a crash or Ctrl-C loses nothing: re-running
the same command skips what is in the journal and runs only the rest. ``results.json`` is written
(atomically) from the journal at the end. An episode that raises outside the agent, or runs past
``episode_timeout_s`` (a hanging agent), is recorded as a failed episode with its reason and the
run goes on. Episodes are independent and deterministic, so the summary does not depend on the
number of workers or on the order in which they finish.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dualdrive.bench.episode import EpisodeJob, _failed_row, run_job
from dualdrive.bench.stats import summarize
from dualdrive.bench.suites import load_suite
from dualdrive.world.scenarios import ConfigError, check_seed

RESULTS_FORMAT = "dualdrive-results/1"


@dataclass
class EvalConfig:
    agent: str
    seeds: range
    out: Path
    suite: str | None = None
    env_id: str | None = None
    workers: int = 1
    record: bool = False
    episode_timeout_s: float = 1800.0
    ray_address: str | None = None  # None: start a local cluster with ``workers`` CPUs
    meta_extra: dict = field(default_factory=dict)


class EvalInterrupted(RuntimeError):
    """Ctrl-C: what finished is in the journal; the same command resumes."""


def parse_seeds(text: str) -> range:
    a, sep, b = text.partition(":")
    try:
        lo, hi = int(a), int(b)
    except ValueError:
        raise ConfigError(f"--seeds {text!r} must be A:B with integers (as Python's range, B excluded)") from None
    if not sep or hi <= lo:
        raise ConfigError(f"--seeds {text!r}: need A < B (as Python's range, B excluded), e.g. 0:20")
    check_seed(lo)
    check_seed(hi - 1)
    return range(lo, hi)


def plan_jobs(cfg: EvalConfig) -> tuple[list[EpisodeJob], dict]:
    """The episodes of a run and the description that identifies it (for resuming safely)."""
    if (cfg.suite is None) == (cfg.env_id is None):
        raise ConfigError("give exactly one of --suite NAME or --env GYM_ID")
    if cfg.env_id is not None:
        import gymnasium as gym
        import highway_env  # noqa: F401  (registers the stock envs)
        if cfg.env_id not in gym.registry:
            stock = sorted(k for k in gym.registry if k.endswith("-v0") and "/" not in k and any(
                w in k for w in ("highway", "merge", "roundabout", "intersection", "parking", "racetrack", "exit", "lane")))
            raise ConfigError(f"unknown env id {cfg.env_id!r}; stock highway-env ids include: {', '.join(stock)}")
        jobs = [EpisodeJob(cfg.env_id, s, None, cfg.env_id) for s in cfg.seeds]
        ident = {"agent": cfg.agent, "env": cfg.env_id}
    else:
        suite = load_suite(cfg.suite)
        jobs = [EpisodeJob(sc.name, s, sc.config.to_dict(), instruction=sc.instruction, instruction_at_s=sc.instruction_at_s)
                for sc in suite.scenarios for s in cfg.seeds]
        ident = {"agent": cfg.agent, "suite": suite.describe()}
    # the agent's weights, System 1's aids (plan guard, speed probe, leaving latch, red-light rule, parking assist, left-turn
    # yield, turn keeping, lane changes) and
    # System 2's timing: a run of other weights, aids or timing must not resume this one
    for key in ("checkpoint", "e2e_guard", "e2e_probe", "e2e_leaving", "e2e_lights", "e2e_park_assist", "e2e_yield",
                "e2e_turn_keeping", "e2e_lane_change", "vlm",
                "s2_sim_latency_s"):
        if cfg.meta_extra.get(key) is not None:
            ident[key] = cfg.meta_extra[key]
    return jobs, ident


class Journal:
    """Append-only record of finished episodes; tolerates a torn last line from a crash."""

    def __init__(self, path: Path, ident: dict) -> None:
        self.path = path
        self.rows: dict[str, dict] = {}
        if path.exists():
            self._load(ident)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write_line({"run": ident})

    def _load(self, ident: dict) -> None:
        raw = self.path.read_bytes()
        if not raw.strip():  # a crash during the very first write: nothing was saved yet
            self.path.write_bytes(b"")
            self._write_line({"run": ident})
            return
        lines = raw.split(b"\n")
        good = 0  # bytes of complete, parseable lines
        header = None
        for line in lines[:-1] if not raw.endswith(b"\n") else lines:
            if not line.strip():
                good += len(line) + 1
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn write: everything before it is kept
            good += len(line) + 1
            if header is None:
                header = rec.get("run") if isinstance(rec, dict) else None
                if header is None:
                    raise ConfigError(f"{str(self.path)!r} is not a dualdrive results journal; pass another --out")
                continue
            self.rows[f"{rec['scenario']}/{rec['seed']}"] = rec
        if header is None:
            if good == 0 and raw.lstrip().startswith(b'{"run"'):  # only our own header, torn: nothing saved yet
                self.path.write_bytes(b"")
                self._write_line({"run": ident})
                return
            raise ConfigError(f"{str(self.path)!r} is not a dualdrive results journal; pass another --out")
        if json.dumps(header, sort_keys=True) != json.dumps(ident, sort_keys=True):
            raise ConfigError(f"{str(self.path)!r} holds a different run (agent {header.get('agent')!r}, "
                              f"{'env ' + repr(header['env']) if 'env' in header else 'suite ' + repr(header.get('suite', {}).get('name'))}); "
                              "pass another --out, or delete it to start over")
        if good < len(raw):
            with open(self.path, "r+b") as f:  # drop the torn tail so appends start on a clean line
                f.truncate(good)

    def _write_line(self, rec: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def add(self, row: dict) -> None:
        self._write_line(row)
        self.rows[f"{row['scenario']}/{row['seed']}"] = row


def journal_path(out: Path) -> Path:
    return out.with_name(out.stem + ".episodes.jsonl")


def evaluate(cfg: EvalConfig, on_done: Callable[[dict, int, int], None] | None = None) -> dict:
    """Run (or resume) an evaluation and write ``cfg.out``; returns the results dict."""
    jobs, ident = plan_jobs(cfg)
    journal = Journal(journal_path(cfg.out), ident)
    todo = [j for j in jobs if j.key not in journal.rows]
    t0 = time.perf_counter()
    done_before = len(jobs) - len(todo)
    keys = {j.key for j in jobs}
    if todo:
        _run_on_ray(cfg, todo, journal,
                    lambda row: on_done and on_done(row, len(keys & set(journal.rows)), len(jobs)))
    rows = [journal.rows[j.key] for j in jobs]
    results = build_results(cfg, ident, rows, time.perf_counter() - t0, resumed=done_before)
    tmp = cfg.out.with_name(cfg.out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(cfg.out)
    return results


def _run_on_ray(cfg: EvalConfig, todo: list[EpisodeJob], journal: Journal, done: Callable[[dict], None]) -> None:
    import ray
    started_here = not ray.is_initialized()
    if started_here:
        kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=False)
        if cfg.ray_address:
            ray.init(address=cfg.ray_address, **kw)
        else:
            ray.init(num_cpus=cfg.workers, object_store_memory=256 * 1024**2, **kw)
    remote = ray.remote(num_cpus=1, max_retries=0)(run_job)
    record_dir = str(cfg.out.with_name(cfg.out.stem + "_episodes")) if cfg.record else None
    queue = list(todo)
    pending: dict = {}
    try:
        while queue or pending:
            while queue and len(pending) < cfg.workers:
                job = queue.pop(0)
                pending[remote.remote(cfg.agent, job, record_dir)] = (job, time.monotonic())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                job, _ = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as e:  # the worker died (out of memory, killed): one failed episode
                    row = _failed_row(job, f"worker failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
                journal.add(row)
                done(row)
            # the clock runs from submission: at most ``workers`` tasks are out at once, so on the local
            # cluster (one CPU per worker) that is when they start; a busy external cluster adds its queue
            now = time.monotonic()
            for ref, (job, t) in list(pending.items()):
                if now - t > cfg.episode_timeout_s:
                    ray.cancel(ref, force=True)
                    pending.pop(ref)
                    row = _failed_row(job, f"episode timed out after {cfg.episode_timeout_s:.0f} s (a hanging agent?)")
                    journal.add(row)
                    done(row)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise EvalInterrupted(f"interrupted: {len(journal.rows)} finished episodes are saved in "
                              f"{str(journal.path)!r}; run the same command again to resume") from None
    finally:
        if started_here:
            ray.shutdown()


def build_results(cfg: EvalConfig, ident: dict, rows: list[dict], wall_s: float, resumed: int = 0) -> dict:
    rows = sorted(rows, key=lambda r: (r["scenario"], r["seed"]))
    by_scenario = {}
    for name in dict.fromkeys(r["scenario"] for r in rows):
        by_scenario[name] = summarize([r for r in rows if r["scenario"] == name])
    walls = [r.get("wall_s", 0.0) for r in rows]
    meta = {
        "format": RESULTS_FORMAT, "agent": cfg.agent, "suite": ident.get("suite", {}).get("name"),
        "suite_version": ident.get("suite", {}).get("version"), "env": ident.get("env"),
        "seeds": f"{cfg.seeds.start}:{cfg.seeds.stop}", "scenarios": list(by_scenario), "workers": cfg.workers,
        "ray_address": cfg.ray_address, "versions": _versions(), "git_commit": _git_commit(),
        "wall_time_s": round(wall_s, 2), "resumed_episodes": resumed,
        "wall_s_per_episode": round(sum(walls) / max(len(walls), 1), 3), "machine": _machine(), **cfg.meta_extra,
    }
    return {"meta": meta, "episodes": rows, "summary": summarize(rows), "by_scenario": by_scenario}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": platform.python_version()}
    for pkg in ("dualdrive", "highway-env", "gymnasium", "numpy", "ray", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                           cwd=Path(__file__).resolve().parent)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()}
