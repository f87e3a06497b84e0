"""How much of the human's speed can be told from a clip at all: a regressor on privileged log features.

Open-loop error on human clips is almost all speed (``route_at_human_distance`` is 0.02 m off at
3 s): the path is the route, what is left is how far along it the driver gets. This module measures
how well that distance can be predicted from what a 1 s clip holds, with everything read straight
from the log rather than from sensors (so it is an upper bound on what the sensor inputs carry, for
this amount of data and this model family), and places the prediction on the route to score it
exactly as agents are scored (``score_poses``).

Features at ``t0`` (``FEATURES``), in groups so that a run also says where the information is (``ABLATIONS``;
``one_frame`` is what a single sensor frame and the odometry show, with no history of the ego or the cars ahead):

- ``ego``: the ego's speed now and 0.2, 0.5 and 1 s ago, its acceleration now and 0.5 s ago;
- ``lead``: the nearest car ahead on the route (projected onto the human's path, which the route
  starts with, and within half a lane of it): bumper
  gap, speed relative to the ego, its speed change over the last 1 s, its acceleration, whether there
  is one; and the second car ahead's gap and relative speed (a lead's lead brakes first);
- ``neighbours``: the mean speed, relative to the ego, of the cars beside the ego's lane on either side;
- ``route``: how much the route bends 20 and 40 m ahead (the heading change from the ego's place, from 5 m
  chords, so the log's jitter does not read as a bend): drivers slow down for a turn, and the route is an input
  every agent is given (it is the human's own path), so this is not privileged the way the others are;
- ``light``: the nearest traffic light ahead on the route that faces the ego (within ``LIGHT_AHEAD_M``): its
  distance and whether it shows red, amber or green now. The NGSIM conversion's light cycles are the
  converter's estimate, not recorded; this group says whether they tell anything about what people did.

The regressor is scikit-learn's gradient-boosted trees, one per 0.5 s horizon, fitted to the distance
covered minus constant velocity's (so a tree that says nothing predicts constant velocity), trained on
one split's clips and scored on another's. It is a diagnostic, not a driver: it reads every car's
logged state, which no agent is given.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dualdrive.human.openloop import HORIZONS_S, POSE_DT_S, _Scores, human_future, poses_along_route, score_poses
from dualdrive.human.pack import HumanDataError
from dualdrive.human.replay import Clip, human_route
from dualdrive.world.geometry import polyline_arclength, project_to_polyline

LANE_HALF_WIDTH_M = 1.8  # a car this close to the route (sideways) is in the ego's lane
NEIGHBOUR_LANE_M = (1.8, 5.5)  # sideways band of the lane beside the ego's
NEIGHBOUR_AHEAD_M = (-10.0, 40.0)  # the stretch of that lane that bears on the ego
LOOK_AHEAD_M = 100.0
NO_LEAD_GAP_M = LOOK_AHEAD_M  # the gap a clip without a car ahead reports
HISTORY_S = (0.0, 0.2, 0.5, 1.0)  # when the ego's speed is sampled, before t0
GROUPS: dict[str, tuple[str, ...]] = {
    "ego": ("v_now", "v_0.2s_ago", "v_0.5s_ago", "v_1s_ago", "accel_now", "accel_0.5s_ago"),
    "lead": ("lead_gap_m", "lead_rel_speed", "lead_speed_change_1s", "lead_accel", "lead_present",
             "lead2_gap_m", "lead2_rel_speed"),
    "neighbours": ("left_lane_rel_speed", "right_lane_rel_speed"),
    "route": ("route_turn_20m_rad", "route_turn_40m_rad"),
    "light": ("light_gap_m", "light_red", "light_amber", "light_green"),
}
LIGHT_AHEAD_M = 80.0  # how far ahead a light bears on the speed in 3 s
LIGHT_SIDE_M = 10.0  # a light head this far beside the route is still the route's (heads hang over the lanes or stand beside)
LIGHT_FACING_COS = 0.7  # it faces the ego: within about 45 degrees of head-on
ROUTE_TURN_AT_M = (20.0, 40.0)
CHORD_M = 5.0
FEATURES = tuple(f for g in GROUPS.values() for f in g)
# What one sensor frame plus the odometry System 1 reads can show: the ego's speed and acceleration now, the
# gap to the cars ahead and their speed (radar range and Doppler), but no history of either.
ONE_FRAME = ("v_now", "accel_now", "lead_gap_m", "lead_rel_speed", "lead_present", "lead2_gap_m", "lead2_rel_speed")
ABLATIONS: dict[str, tuple[str, ...]] = {
    "ego": GROUPS["ego"],
    "one_frame": ONE_FRAME,
    "ego+lead": GROUPS["ego"] + GROUPS["lead"],
    "ego+lead+neighbours": GROUPS["ego"] + GROUPS["lead"] + GROUPS["neighbours"],
    "one_frame+route": ONE_FRAME + GROUPS["route"],
    "ego+lead+route": GROUPS["ego"] + GROUPS["lead"] + GROUPS["route"],
    "ego+lead+route+light": GROUPS["ego"] + GROUPS["lead"] + GROUPS["route"] + GROUPS["light"],
}


LOSSES = ("squared_error", "absolute_error")


@dataclass(frozen=True)
class RegressorConfig:
    max_iter: int = 300
    learning_rate: float = 0.05
    seed: int = 0
    # squared_error fits the mean distance; the scores average the L2 error, which the median minimises (what
    # System 1's L1 loss aims at): absolute_error
    loss: str = "squared_error"


def clip_features(clip: Clip) -> np.ndarray:
    """``FEATURES`` of ``clip`` at its planning step, from the log."""
    log, i, t0 = clip.scene.log, clip.ego, clip.t0
    v, a = log.speed_mps[:, i], log.accel_mps2[:, i]
    steps = [int(round(h / log.dt_s)) for h in HISTORY_S]  # a scenario's own time step (NGSIM: 0.1 s)
    one_s = steps[-1]
    if t0 - one_s < 0:
        raise HumanDataError(f"clip {clip.name} has less than {HISTORY_S[-1]} s of history")
    ego = [float(v[t0 - k]) for k in steps] + [float(a[t0]), float(a[t0 - steps[2]])]
    route_xy = _path(clip)
    s_ego, _, _ = project_to_polyline(route_xy, log.xy[t0, i])
    ahead, beside = [], {1: [], -1: []}
    for j in np.flatnonzero(log.valid[t0]):
        if j == i:
            continue
        s, lat, _ = project_to_polyline(route_xy, log.xy[t0, j])
        ds = s - s_ego
        if 0.0 < ds < LOOK_AHEAD_M and abs(lat) < LANE_HALF_WIDTH_M:
            ahead.append((ds - 0.5 * (log.length_m[i] + log.length_m[j]), int(j)))
        elif NEIGHBOUR_AHEAD_M[0] < ds < NEIGHBOUR_AHEAD_M[1] and NEIGHBOUR_LANE_M[0] < abs(lat) < NEIGHBOUR_LANE_M[1]:
            beside[int(np.sign(lat))].append(float(log.speed_mps[t0, j]))
    ahead.sort()
    lead = [NO_LEAD_GAP_M, 0.0, 0.0, 0.0, 0.0, NO_LEAD_GAP_M, 0.0]
    if ahead:
        gap, j = ahead[0]
        vj = log.speed_mps[:, j]
        before = vj[t0 - one_s] if log.valid[t0 - one_s, j] else vj[t0]
        acc = log.accel_mps2[t0, j]
        lead[:5] = [gap, vj[t0] - v[t0], vj[t0] - before, acc if np.isfinite(acc) else 0.0, 1.0]
    if len(ahead) > 1:
        gap2, j2 = ahead[1]
        lead[5:] = [gap2, log.speed_mps[t0, j2] - v[t0]]
    neighbours = [float(np.mean(beside[side]) - v[t0]) if beside[side] else 0.0 for side in (1, -1)]
    # the route's bend and the light ahead are read off the whole logged track: the path above ends where the human
    # was at the clip's horizon, so where it turns straight would say how far they got (the target)
    whole = _logged_path(clip)
    s_whole, _, _ = project_to_polyline(whole, log.xy[t0, i])
    light = light_ahead(clip, whole, s_whole)
    return np.nan_to_num(np.array(ego + lead + neighbours + route_turns(whole, s_whole) + light, np.float64))


def light_ahead(clip: Clip, path_xy: np.ndarray, s_ego: float) -> list[float]:
    """``GROUPS["light"]`` at ``t0``: the gap to the nearest light ahead on ``path_xy`` facing the ego and its
    state one-hot (red, amber, green); ``LIGHT_AHEAD_M`` and zeros without one (or with one switched off)."""
    lights, t0 = clip.scene.lights, clip.t0
    state = lights.at(t0)
    best = [LIGHT_AHEAD_M, 0.0, 0.0, 0.0]
    arc = polyline_arclength(path_xy)
    for k in range(len(lights.xy)):
        st = int(state[k])
        if st < 0:  # switched off: it governs nothing now (a lit one further on still may)
            continue
        s, lat, _ = project_to_polyline(path_xy, lights.xy[k])
        ds = s - s_ego
        if not (0.0 < ds < best[0] and abs(lat) < LIGHT_SIDE_M):
            continue
        towards = _chord_heading(path_xy, arc, max(0.0, s - CHORD_M)) + np.pi  # facing the ego: back along the path
        if np.cos(lights.facing_rad[k] - towards) > LIGHT_FACING_COS:
            best = [ds, float(st == 0), float(st == 1), float(st == 2)]
    return best


def route_turns(path_xy: np.ndarray, s_ego: float) -> list[float]:
    """The absolute heading change (rad) of the path between ``s_ego`` and ``ROUTE_TURN_AT_M`` further on, each
    heading taken along a ``CHORD_M`` chord (repeated points of a standing car and the log's jitter cancel out);
    beyond the path's end, its last chord's heading."""
    s = polyline_arclength(path_xy)
    h0 = _chord_heading(path_xy, s, s_ego)
    return [abs(float((_chord_heading(path_xy, s, s_ego + d) - h0 + np.pi) % (2 * np.pi) - np.pi))
            for d in ROUTE_TURN_AT_M]


def _chord_heading(path_xy: np.ndarray, s: np.ndarray, at: float) -> float:
    """The heading of the ``CHORD_M`` chord of the path from arc length ``at`` (past the end: the last chord)."""
    at = min(at, max(0.0, float(s[-1]) - CHORD_M))
    a = np.array([np.interp(at, s, path_xy[:, 0]), np.interp(at, s, path_xy[:, 1])])
    b = np.array([np.interp(at + CHORD_M, s, path_xy[:, 0]), np.interp(at + CHORD_M, s, path_xy[:, 1])])
    return float(np.arctan2(b[1] - a[1], b[0] - a[0]))


def _path(clip: Clip, end: int | None = None) -> np.ndarray:
    """The human's path from 1 s before ``t0`` to step ``end`` (the clip's end by default), then straight on for
    ``LOOK_AHEAD_M``: the start of the route every agent is given (``human_route`` follows the same path and
    goes on along the lanelets, at a hundred times the cost, which matters over tens of thousands of clips)."""
    log, i = clip.scene.log, clip.ego
    end = clip.t0 + clip.future if end is None else end
    xy = log.xy[clip.start:end + 1, i].astype(np.float64)
    heading = float(log.heading_rad[end, i])  # a standing car's last two points coincide: its heading says where on
    on = xy[-1] + LOOK_AHEAD_M * np.array([np.cos(heading), np.sin(heading)])
    return np.vstack([xy, on])


def _logged_path(clip: Clip) -> np.ndarray:
    """``_path`` to the end of the car's gap-free logged run (wherever the clip's horizon falls): what the route
    shows of the road ahead without saying where the human was at the horizon."""
    run_end = next((b for a, b in clip.scene.log.runs(clip.ego) if a <= clip.t0 <= b), None)
    return _path(clip, run_end)


def covered_m(clip: Clip, times_s: np.ndarray) -> np.ndarray:
    """The distance the human drove along their path after ``t0``, at ``times_s``."""
    xy = human_future(clip, times_s)[:, :2]
    return np.cumsum(np.linalg.norm(np.diff(np.vstack([[0.0, 0.0], xy]), axis=0), axis=1))


def _times(clip: Clip) -> np.ndarray:
    return np.arange(1, int(round(clip.future * clip.scene.log.dt_s / POSE_DT_S)) + 1) * POSE_DT_S


def _table(clips: list[Clip], progress: Callable[[int], None] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    times = _times(clips[0])
    x, y = np.zeros((len(clips), len(FEATURES))), np.zeros((len(clips), len(times)))
    for n, c in enumerate(clips):
        if not np.allclose(_times(c), times):
            raise HumanDataError("all clips need the same future horizon")
        x[n], y[n] = clip_features(c), covered_m(c, times)
        if progress is not None:
            progress(n + 1)
    return x, y, times


def evaluate_speed_regressor(train: list[Clip], test: list[Clip], cfg: RegressorConfig = RegressorConfig(),
                             progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Fit on ``train``'s clips, score on ``test``'s: L2 of the route at the predicted distances, for each
    feature group ablation, beside constant velocity (straight on and along the route) on the same clips."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    if not train or not test:
        raise HumanDataError("the speed regressor needs clips in both the training and the test set")
    xtr, ytr, times = _table(train, (lambda n: progress("features (train)", n, len(train))) if progress else None)
    xte, yte, times_te = _table(test, (lambda n: progress("features (test)", n, len(test))) if progress else None)
    if not np.allclose(times, times_te):
        raise HumanDataError("training and test clips need the same future horizon")
    predicted: dict[str, np.ndarray] = {}
    for name, features in ABLATIONS.items():
        cols = [FEATURES.index(f) for f in features]
        pred = np.zeros_like(yte)
        for k, t in enumerate(times):
            tree = HistGradientBoostingRegressor(loss=cfg.loss, max_iter=cfg.max_iter, learning_rate=cfg.learning_rate,
                                                 random_state=cfg.seed)
            tree.fit(xtr[:, cols], ytr[:, k] - np.maximum(xtr[:, 0], 0.0) * t)
            pred[:, k] = tree.predict(xte[:, cols]) + np.maximum(xte[:, 0], 0.0) * t
        predicted[f"regressor[{name}]"] = np.maximum.accumulate(np.maximum(pred, 0.0), axis=1)  # never backwards
    predicted["constant_velocity_route"] = np.maximum(xte[:, :1], 0.0) * times
    scores = {m: _Scores() for m in ["constant_velocity", *predicted]}
    for n, clip in enumerate(test):
        log, i = clip.scene.log, clip.ego
        xy0, h0 = log.xy[clip.t0, i], float(log.heading_rad[clip.t0, i])
        v0 = max(0.0, float(log.speed_mps[clip.t0, i]))
        straight = np.column_stack([v0 * times, np.zeros_like(times), np.zeros_like(times)])
        scores["constant_velocity"].add(score_poses(clip, straight, times))
        route_xy, _ = human_route(clip)
        for m, dist in predicted.items():
            scores[m].add(score_poses(clip, poses_along_route(route_xy, xy0, h0, dist[n]), times))
        if progress is not None:
            progress("scoring", n + 1, len(test))
    res = {m: s.result() for m, s in scores.items()}
    cv = res["constant_velocity"][f"l2_{int(HORIZONS_S[-1])}s_m"]
    summary = {"train_clips": len(train), "test_clips": len(test), "features": list(FEATURES),
               **{f"{m}_l2_3s_ratio_to_constant_velocity": r["l2_3s_m"] / cv for m, r in res.items() if cv}}
    return {"summary": summary, "methods": res, "config": cfg.__dict__}
