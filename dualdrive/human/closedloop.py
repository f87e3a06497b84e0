"""Closed-loop log replay: a driver takes over a recorded car and is scored with the benchmark's own
metrics, and the human's logged drive is scored the same way as the reference.

Each clip is one recorded car: the ego is held on the human's log for the clip's history (1 s),
then driven by the agent (plan -> the shared trajectory follower -> the kinematic bicycle) for
``CLOSED_LOOP_S`` (4 s, NAVSIM's horizon) while every other car replays its log (non-reactive, as
NAVSIM does). The driven part is written as a benchmark :class:`~dualdrive.bench.log.EpisodeLog`
and scored by ``dualdrive.bench.metrics`` (PDMS and its sub-scores NC, DAC, TTC, EP, comfort): the
metrics are the benchmark's pure functions, not a copy of them. The human's own drive goes through
the same recorder and the same metrics (``agent=None``).

Per clip also: collisions with recorded cars (any, and at fault as NAVSIM counts them), leaving the
lanelets, the progress made along the human's path against the human's, and the distance to the
human's position at the end.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from dualdrive.agents.base import Agent, Control, Plan, reset_info_for
from dualdrive.agents.follower import TrajectoryFollower
from dualdrive.bench.log import EpisodeLog
from dualdrive.bench.metrics import collision_at_fault, pdm_scores
from dualdrive.human.pack import HumanDataError
from dualdrive.human.replay import Clip, ReplayEnv, cut_clips
from dualdrive.human.scene import HumanScene
from dualdrive.world.geometry import box_corners, boxes_overlap

CLOSED_LOOP_S = 4.0
ACTOR_RANGE_M = 60.0  # as the benchmark's recorder keeps
SCORES = ("pdms", "nc", "dac", "ttc", "ep", "comfort")


def replay_clips(scene: HumanScene, stride_s: float = 2.0) -> list[Clip]:
    """The closed-loop clips of a scene: 1 s of history, ``CLOSED_LOOP_S`` driven."""
    return cut_clips(scene, history_s=1.0, future_s=CLOSED_LOOP_S, stride_s=stride_s)


def run_replay(clip: Clip, agent: Agent | None = None, wrap: Callable | None = None, reactive: bool = False) -> dict:
    """Drive ``clip`` with ``agent`` (None: the human's log) and score it; one row of results. With
    ``reactive``, the other cars are handed to IDM once the ego gets in their way."""
    base = ReplayEnv(clip, ego_mode="log" if agent is None else "drive", others="reactive" if reactive else "log")
    env = wrap(base) if (wrap is not None and agent is not None) else base
    obs, info = env.reset(seed=0)
    if agent is not None:
        agent.reset(reset_info_for(agent, info))
    follower = TrajectoryFollower()
    # the scored drive starts at t0 (the history before it is the human's, in every mode)
    rec = _Recorder(base) if base.step_index >= clip.t0 else None
    error = None
    while True:
        action = np.zeros(3)
        if agent is not None:
            try:
                decision = agent.act(obs)
                control = follower.update(decision, base.ego.speed) if isinstance(decision, Plan) else decision
                if not isinstance(control, Control) or not np.all(np.isfinite(control.to_action())):
                    raise ValueError(f"the agent returned {type(decision).__name__}, not a finite Plan or Control")
                action = control.to_action()
            except Exception as e:  # noqa: BLE001 - an agent fault ends its clip as a failure, never the run
                error = f"{type(e).__name__}: {e}"
                if rec is None:
                    rec = _Recorder(base)
                break
        obs, _, _, over, _ = env.step(action)
        if rec is None and base.step_index >= clip.t0:
            rec = _Recorder(base)
        elif rec is not None:
            rec.record()
        if over:
            break
    return rec.score(agent.name if agent is not None else "human", error)


class _Recorder:
    """The driven part of a replay as a benchmark EpisodeLog (what ``EpisodeRecorder`` is for the world)."""

    def __init__(self, env: ReplayEnv) -> None:
        self.env = env
        self.rows: list[tuple] = []
        self.actors: list[np.ndarray] = []
        self.ids: list[np.ndarray] = []
        self.infractions: list[dict] = []
        self._hit: set[int] = set()
        self.record()  # the state at t0

    def record(self) -> None:
        e, log = self.env, self.env.log
        t, i = e.step_index, e.clip.ego
        xy, heading, speed, present = e.others
        others = present & (np.linalg.norm(np.nan_to_num(xy) - e.ego_xy, axis=1) < ACTOR_RANGE_M)
        idx = np.where(others)[0]
        self.actors.append(np.column_stack([xy[idx], heading[idx], speed[idx], log.length_m[idx], log.width_m[idx]]))
        self.ids.append(idx)
        corners = box_corners(e.ego_xy, np.array([e.ego_heading]), log.length_m[i:i + 1], log.width_m[i:i + 1])[0]
        off_road = not bool(e.scene.map.on_road(corners).all())
        tick = (t - e.clip.t0) * e.dt
        if len(idx):
            hit = boxes_overlap(corners, box_corners(xy[idx], heading[idx], log.length_m[idx], log.width_m[idx]))
            for k in idx[hit]:
                if int(k) not in self._hit:  # one infraction per car touched, at first contact
                    self._hit.add(int(k))
                    self.infractions.append({"type": "collision_vehicle", "t_s": round(tick, 3), "id": int(k)})
        self.rows.append((tick, *e.ego_xy, e.ego_heading, float(e.ego.speed), e.accel, e.yaw_rate, e.gear,
                          e.progress_m, e.speed_limit_mps, off_road))

    def score(self, agent: str, error: str | None) -> dict:
        e, clip = self.env, self.env.clip
        n = len(self.rows)
        k_max = max([len(a) for a in self.actors] + [1])
        actors = np.zeros((n, k_max, 6))
        kind = np.full((n, k_max), -1, np.int8)
        ids = np.full((n, k_max), -1, np.int64)
        for j, (a, ix) in enumerate(zip(self.actors, self.ids)):
            actors[j, :len(a)], kind[j, :len(a)], ids[j, :len(a)] = a, 0, ix
        cols = list(zip(*self.rows))
        human_m = _human_progress(e)
        progress = np.array(cols[8], float) - cols[8][0]
        outcome = {"success": error is None, "collisions": len(self.infractions), "infractions": self.infractions}
        log = EpisodeLog(
            meta={"family": "ngsim-replay", "seed": int(e.log.ids[clip.ego]), "agent": agent, "dt_s": e.dt,
                  "ego_length_m": float(e.log.length_m[clip.ego]), "ego_width_m": float(e.log.width_m[clip.ego]),
                  "arrival_m": 1e9, "stop_lines": [], "infractions": self.infractions, "outcome": outcome},
            t_s=np.array(cols[0], float), ego=np.column_stack(cols[1:7]).astype(float),
            gear=np.array(cols[7], np.int8), progress_m=progress, speed_limit_mps=np.array(cols[9], float),
            off_road=np.array(cols[10], bool), wrong_lane=np.zeros(n, bool), lights=np.zeros((n, 0), np.int8),
            actors=actors, actor_kind=kind, actor_id=ids, route_xy=np.zeros((0, 2)), route_progress_m=np.zeros(0))
        scores = pdm_scores(log) if error is None else {k: 0.0 for k in SCORES}
        t_end = clip.t0 + n - 1  # the last recorded step
        end_gap = float(np.linalg.norm(e.ego_xy - e.log.xy[min(t_end, e.log.steps - 1), clip.ego]))
        return {"clip": clip.name, "location": e.scene.path.parent.name, "agent": agent, "error": error,
                **{k: float(scores[k]) for k in SCORES},
                "collision": bool(self.infractions),
                "at_fault_collision": any(collision_at_fault(log, i) for i in self.infractions),
                "off_road": bool(log.off_road.any()),
                "progress_m": float(progress[-1]), "human_progress_m": human_m,
                "progress_ratio": float(progress[-1] / human_m) if human_m > 1.0 else None,
                "end_distance_to_human_m": end_gap}


def _human_progress(env: ReplayEnv) -> float:
    """Route progress the human made over the driven span (the route is the human's path)."""
    log, c = env.log, env.clip
    end = min(c.t0 + c.future, log.steps - 1)
    d = np.linalg.norm(np.diff(log.xy[c.t0:end + 1, c.ego], axis=0), axis=1)
    return float(d.sum())


def evaluate_replay(clips: list[Clip], agent: Agent | None, wrap: Callable | None = None,
                    progress: Callable[[int], None] | None = None, reactive: bool = False) -> dict:
    """Closed-loop replay scores of ``agent`` (None: the human's log) on ``clips``: per clip and summary."""
    if not clips:
        raise HumanDataError("no clips to drive: the scenarios are shorter than 1 s of history plus "
                             f"{CLOSED_LOOP_S:g} s driven")
    rows = []
    for n, clip in enumerate(clips):
        rows.append(run_replay(clip, agent, wrap, reactive))
        if progress is not None:
            progress(n + 1)
    return {"summary": summarise(rows), "by_location": {loc: summarise([r for r in rows if r["location"] == loc])
                                                        for loc in sorted({r["location"] for r in rows})},
            "clips": rows}


def summarise(rows: list[dict]) -> dict:
    mean = lambda xs: float(np.mean(xs)) if len(xs) else None  # noqa: E731
    ratios = [r["progress_ratio"] for r in rows if r["progress_ratio"] is not None]
    return {"clips": len(rows), "failed": sum(r["error"] is not None for r in rows),
            **{k: mean([r[k] for r in rows]) for k in SCORES},
            "collision_rate": mean([r["collision"] for r in rows]),
            "at_fault_collision_rate": mean([r["at_fault_collision"] for r in rows]),
            "off_road_rate": mean([r["off_road"] for r in rows]),
            "progress_ratio_median": float(np.median(ratios)) if ratios else None,
            "end_distance_to_human_m": mean([r["end_distance_to_human_m"] for r in rows])}
