"""Open-loop evaluation against what people actually did: an agent's plan on replayed human clips
against the human's recorded future, with constant-velocity and constant-acceleration baselines
scored in the same run on the same clips.

For each clip the agent drives the replay with the ego held on the human's log for the clip's
history (so that stateful agents, trackers and odometry warm up on real inputs), then plans once at
``t0``. Measured on the plan's poses that fall inside the recorded future (every 0.5 s up to 3 s):

- L2 displacement at 1, 2 and 3 s, the average over the poses (ADE) and at the last (FDE);
- plan collision: the ego's recorded box placed at a planned pose overlaps a recorded car at that
  time (non-reactive, as NAVSIM's and nuPlan's open-loop scores are);
- off-road: a planned pose's centre outside every lanelet.

The human's own future is scored for collision and off-road too: it is the floor the recording's
own noise sets (NGSIM boxes sometimes overlap). Baselines: the human's speed at ``t0`` held
(constant velocity) and its acceleration held until standstill (constant acceleration), both along
the heading at ``t0``; and the speed held along the navigation route (``constant_velocity_route``,
nuPlan's simple centre-line planner): the route is the human's own path, the input every agent is
given, so this baseline gets the path right and leaves only the speed to guess. Its gap to constant
velocity is what following the route is worth; what is left of its error is the speed profile.
A diagnostic row, not a planner: ``route_at_human_distance``, the route at the distances the human
really covered (the path's own error, the floor of any plan that follows the route).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dualdrive.agents.base import Agent, Control, Plan, reset_info_for
from dualdrive.human.pack import HumanDataError
from dualdrive.human.replay import Clip, ReplayEnv, human_route
from dualdrive.human.scene import HumanScene
from dualdrive.world.geometry import (box_corners, boxes_overlap, ego_to_world, polyline_arclength, polyline_headings,
                                      project_to_polyline, world_to_ego)

HORIZONS_S = (1.0, 2.0, 3.0)
POSE_DT_S = 0.5
BASELINES = ("constant_velocity", "constant_acceleration", "constant_velocity_route")


class PlanRequired(HumanDataError):
    """The agent answers with controls, not a plan: open-loop scores compare plans."""


@dataclass
class _Scores:
    l2: dict[float, list[float]] = field(default_factory=lambda: {h: [] for h in HORIZONS_S})
    ade: list[float] = field(default_factory=list)
    fde: list[float] = field(default_factory=list)
    collision: list[bool] = field(default_factory=list)
    offroad: list[bool] = field(default_factory=list)

    def add(self, err: dict) -> None:
        for h in HORIZONS_S:
            if h in err["l2"]:
                self.l2[h].append(err["l2"][h])
        self.ade.append(err["ade"])
        self.fde.append(err["fde"])
        self.collision.append(err["collision"])
        self.offroad.append(err["offroad"])

    def result(self) -> dict:
        mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
        out = {f"l2_{int(h)}s_m": mean(self.l2[h]) for h in HORIZONS_S}
        out.update(ade_m=mean(self.ade), fde_m=mean(self.fde), collision_rate=mean(self.collision),
                   offroad_rate=mean(self.offroad), clips=len(self.ade))
        return out


def baseline_poses(kind: str, speed_mps: float, accel_mps2: float, times_s: np.ndarray) -> np.ndarray:
    """(n, 3) ego-frame poses of a constant-velocity or constant-acceleration (to standstill) rollout."""
    v = max(0.0, float(speed_mps))
    if kind == "constant_velocity":
        s = v * times_s
    elif kind == "constant_acceleration":
        a = float(accel_mps2) if np.isfinite(accel_mps2) else 0.0
        t_stop = v / -a if a < 0 else np.inf
        t = np.minimum(times_s, t_stop)
        s = v * t + 0.5 * a * t ** 2
    else:
        raise ValueError(f"unknown baseline {kind!r}; valid: constant_velocity, constant_acceleration "
                         "(the route baseline is poses_along_route)")
    return np.column_stack([s, np.zeros_like(s), np.zeros_like(s)])


def poses_along_route(route_xy: np.ndarray, ego_xy: np.ndarray, ego_heading_rad: float,
                      dist_m: np.ndarray) -> np.ndarray:
    """(n, 3) ego-frame poses ``dist_m`` ahead along the route polyline (world frame) from the ego's
    projection onto it; past the route's end, straight on along its last segment."""
    route_xy = np.asarray(route_xy, np.float64)
    s0, _, _ = project_to_polyline(route_xy, np.asarray(ego_xy, np.float64))
    s = polyline_arclength(route_xy)
    target = s0 + np.asarray(dist_m, np.float64)
    heading = np.unwrap(polyline_headings(route_xy))
    xy = np.column_stack([np.interp(target, s, route_xy[:, 0]), np.interp(target, s, route_xy[:, 1])])
    over = np.maximum(target - s[-1], 0.0)  # np.interp holds the end point: go on along the last heading
    xy += over[:, None] * np.array([np.cos(heading[-1]), np.sin(heading[-1])])
    h = np.interp(target, s, heading) - ego_heading_rad
    return np.column_stack([world_to_ego(xy, ego_xy, ego_heading_rad), (h + np.pi) % (2 * np.pi) - np.pi])


def human_future(clip: Clip, times_s: np.ndarray) -> np.ndarray:
    """(n, 3) the human's recorded poses ``times_s`` after ``t0``, in the ego frame at ``t0``."""
    log, i = clip.scene.log, clip.ego
    steps = clip.t0 + np.round(times_s / log.dt_s).astype(int)
    xy0, h0 = log.xy[clip.t0, i], float(log.heading_rad[clip.t0, i])
    xy = world_to_ego(log.xy[steps, i], xy0, h0)
    return np.column_stack([xy, (log.heading_rad[steps, i] - h0 + np.pi) % (2 * np.pi) - np.pi])


def score_poses(clip: Clip, poses_ego: np.ndarray, times_s: np.ndarray) -> dict:
    """Errors of ``poses_ego`` (n, 3, ego frame at ``t0``, one per ``times_s``) against the human and the scene."""
    truth = human_future(clip, times_s)
    d = np.linalg.norm(poses_ego[:, :2] - truth[:, :2], axis=1)
    l2 = {h: float(d[k]) for h in HORIZONS_S for k in np.where(np.isclose(times_s, h))[0]}
    log, i = clip.scene.log, clip.ego
    xy0, h0 = log.xy[clip.t0, i], float(log.heading_rad[clip.t0, i])
    xy_w = ego_to_world(poses_ego[:, :2], xy0, h0)
    head_w = poses_ego[:, 2] + h0
    steps = clip.t0 + np.round(times_s / log.dt_s).astype(int)
    hit = any(_collides(clip, xy_w[k], head_w[k], int(steps[k])) for k in range(len(times_s)))
    off = not bool(clip.scene.map.on_road(xy_w).all())
    return {"l2": l2, "ade": float(d.mean()), "fde": float(d[-1]), "collision": hit, "offroad": off}


def _collides(clip: Clip, xy_world: np.ndarray, heading_rad: float, step: int) -> bool:
    log, i = clip.scene.log, clip.ego
    others = log.valid[step].copy()
    others[i] = False
    if not others.any():
        return False
    ego = box_corners(xy_world, np.array([heading_rad]), log.length_m[i:i + 1], log.width_m[i:i + 1])[0]
    b = box_corners(log.xy[step, others], log.heading_rad[step, others], log.length_m[others], log.width_m[others])
    return bool(boxes_overlap(ego, b).any())


def agent_plan(agent: Agent, clip: Clip, wrap: Callable | None = None) -> Plan:
    """Drive the clip's history with the ego held on the log, then return the agent's plan at ``t0``."""
    env = ReplayEnv(clip, ego_mode="log")
    env = wrap(env) if wrap is not None else env
    obs, info = env.reset(seed=0)
    agent.reset(reset_info_for(agent, info))
    out = agent.act(obs)
    for _ in range(clip.history):
        obs, *_ = env.step(np.zeros(3))
        out = agent.act(obs)
    if isinstance(out, Control):
        raise PlanRequired(f"agent {agent.name!r} returns controls, not a plan; open-loop scores compare planned "
                           "poses with the human's (use an agent that plans: e2e, modular)")
    return out


def evaluate_human_openloop(clips: list[Clip], agent: Agent | None = None, wrap: Callable | None = None,
                            progress: Callable[[int], None] | None = None) -> dict:
    """Scores of ``agent`` (None: the baselines only), both baselines and the human's own future on ``clips``."""
    if not clips:
        raise HumanDataError("no clips to score: the scenarios are shorter than the clips' history plus future "
                             "(1 s + 3 s by default)")
    methods = ([agent.name] if agent is not None else []) + list(BASELINES) + ["human", "route_at_human_distance"]
    scores = {m: _Scores() for m in methods}
    by_location: dict[str, dict[str, _Scores]] = {}
    per_clip = []
    for n, clip in enumerate(clips):
        future_s = clip.future * clip.scene.log.dt_s
        times = np.arange(1, int(round(future_s / POSE_DT_S)) + 1) * POSE_DT_S
        log, i = clip.scene.log, clip.ego
        v0, a0 = log.speed_mps[clip.t0, i], log.accel_mps2[clip.t0, i]
        rows = {b: baseline_poses(b, v0, a0, times) for b in BASELINES if b != "constant_velocity_route"}
        route_xy, _ = human_route(clip)
        xy0, h0 = log.xy[clip.t0, i], float(log.heading_rad[clip.t0, i])
        rows["constant_velocity_route"] = poses_along_route(route_xy, xy0, h0, max(0.0, float(v0)) * times)
        rows["human"] = human_future(clip, times)
        covered = np.cumsum(np.linalg.norm(np.diff(np.vstack([[0.0, 0.0], rows["human"][:, :2]]), axis=0), axis=1))
        rows["route_at_human_distance"] = poses_along_route(route_xy, xy0, h0, covered)
        if agent is not None:
            plan = agent_plan(agent, clip, wrap)
            k = min(len(times), len(plan.poses))
            rows[agent.name] = plan.poses[:k]
        loc = _location(clip.scene.path)
        row = {"clip": clip.name, "location": loc, "speed_mps": round(float(log.speed_mps[clip.t0, i]), 2)}
        for m, poses in rows.items():
            err = score_poses(clip, poses, times[:len(poses)])
            scores[m].add(err)
            by_location.setdefault(loc, {x: _Scores() for x in methods})[m].add(err)
            row[m] = {"l2_3s_m": err["l2"].get(3.0), "collision": err["collision"], "offroad": err["offroad"]}
        per_clip.append(row)
        if progress is not None:
            progress(n + 1)
    res = {m: s.result() for m, s in scores.items()}
    summary = {"agent": agent.name if agent is not None else None, "clips": len(clips),
               "scenarios": len({c.scene.path for c in clips})}
    cv = res["constant_velocity"]["l2_3s_m"]
    for m in methods:
        if m not in ("human", "route_at_human_distance") and cv and res[m]["l2_3s_m"] is not None:
            summary[f"{m}_l2_3s_ratio_to_constant_velocity"] = res[m]["l2_3s_m"] / cv
    if agent is not None:  # None where constant velocity is exact on every clip (the ratio is undefined)
        summary["l2_3s_ratio_to_constant_velocity"] = summary.get(f"{agent.name}_l2_3s_ratio_to_constant_velocity")
    return {"summary": summary, "methods": res,
            "by_location": {loc: {m: s.result() for m, s in d.items()} for loc, d in sorted(by_location.items())},
            "per_clip": per_clip}


def _location(path: Path) -> str:
    """US101, Lankershim, Peachtree (the pack's folder), or the file's parent folder for other scenarios."""
    return Path(path).parent.name or "scenarios"


def load_clips(files: list[Path], history_s: float, future_s: float, stride_s: float,
               max_clips: int | None = None) -> list[Clip]:
    """Clips of every scenario file, in file order; ``max_clips`` keeps an even spread over them."""
    from dualdrive.human.replay import cut_clips
    if min(history_s, future_s, stride_s) <= 0:
        raise HumanDataError(f"history_s={history_s}, future_s={future_s} and stride_s={stride_s} must be positive")
    clips: list[Clip] = []
    for f in usable_scenes(files):
        clips += cut_clips(f, history_s, future_s, stride_s)
    if max_clips is not None and 0 < max_clips < len(clips):
        clips = [clips[k] for k in np.linspace(0, len(clips) - 1, max_clips).round().astype(int)]
    return clips


def usable_scenes(files: list[Path]) -> Iterator[HumanScene]:
    """Each file that reads as a scenario; one that does not is skipped with a warning naming it and why
    (the others still load). None readable at all is an error."""
    from dualdrive.human.scene import load_scene
    ok, bad = 0, []
    for f in files:
        try:
            scene = load_scene(f)
        except HumanDataError as e:
            bad.append(str(e))
            warnings.warn(f"skipped: {e}", stacklevel=2)
            continue
        ok += 1
        yield scene
    if not ok:
        raise HumanDataError(f"none of the {len(files)} scenario file(s) could be read; the first: {bad[0]}" if bad
                             else "no scenario files given")
