"""Many episodes of one agent on one family, in parallel worker processes (no video).

This is the measuring tool behind the README's numbers until the benchmark (bench/) lands.
"""
from __future__ import annotations

import multiprocessing as mp
from collections import Counter

from dualdrive.world.scenarios import EventConfig, ScenarioConfig


def _one(args: tuple[str, str, int, bool]) -> dict:
    from dualdrive.agents.registry import load_agent
    from dualdrive.run.drive import drive_episode
    agent, family, seed, events = args
    cfg = ScenarioConfig(family=family, events=EventConfig.all_on(family) if events else EventConfig())
    try:
        return drive_episode(load_agent(agent), family, seed, None, cfg, video=False)
    except Exception as e:  # one crashing episode must not lose the others: record it and go on
        import traceback
        return {"seed": seed, "family": family, "success": False, "crashed": True,
                "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(),
                "infractions": [], "route_completion": 0.0, "duration_s": 0.0, "collisions": 0}


def run_batch(agent: str, family: str, seeds: range, events: bool = False, workers: int = 2, on_done=None) -> list[dict]:
    jobs = [(agent, family, s, events) for s in seeds]
    out = []
    with mp.get_context("spawn").Pool(workers) as pool:
        for res in pool.imap_unordered(_one, jobs):
            out.append(res)
            if on_done:
                on_done(res)
    return sorted(out, key=lambda r: r["seed"])


def failure_reason(s: dict) -> str:
    if s["success"]:
        return "ok"
    if s.get("crashed"):
        return f"crashed ({s['error']})"
    kinds = Counter(i["type"] for i in s["infractions"] if i["type"].startswith("collision") or i["type"] == "red_light")
    if kinds:
        return "+".join(sorted(kinds))
    if s.get("blocked"):
        return "blocked"
    if s.get("timeout"):
        return "timeout"
    return "not_parked" if "parked" in s and not s["parked"] else "other"
