"""Records a :class:`~dualdrive.bench.log.EpisodeLog` from a running world, one row per tick.

The benchmark is privileged: it reads the world's ground truth (actors, lights, the monitor's
flags), never the agent. Actors are kept within ``ACTOR_RANGE_M`` of the ego, which is all any
metric looks at (time to collision, at-fault checks, lead vehicles).
"""
from __future__ import annotations

import numpy as np

from dualdrive.bench.log import ACTOR_KINDS, EpisodeLog
from dualdrive.world.world import EGO_LENGTH_M, EGO_WIDTH_M, World

ACTOR_RANGE_M = 60.0


class EpisodeRecorder:
    def __init__(self, world: World) -> None:
        self.w = world
        self._rows: list[tuple] = []
        self._actors: list[np.ndarray] = []
        self._kinds: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []
        self.record()

    def record(self) -> None:
        """Append the world's current state (call once after reset and after every step)."""
        w = self.w
        r = w.route
        k = min(int(np.searchsorted(r.progress_m, w.progress_m)), len(r.lane) - 1)
        limit = float(w.map.speed_limit[r.lane[k]])
        self._rows.append((w.t, w.ego_xy[0], w.ego_xy[1], w.ego_heading, w.ego_speed, w.accel, w.yaw_rate,
                           w.gear, w.progress_m, limit, w.monitor.off_road, w.monitor.wrong_lane, w.lights.copy()))
        rows, kinds, ids = [], [], []
        ve, p = w.traffic.veh, w.traffic.ped
        acts = w.actors()
        for ki, kind in enumerate(ACTOR_KINDS):
            xy, h, length, width, idx = acts[kind]
            if len(xy) == 0:
                continue
            near = np.linalg.norm(xy - w.ego_xy, axis=1) < ACTOR_RANGE_M
            if kind == "vehicle":
                speed = ve.v[idx]
            elif kind == "pedestrian":
                speed = np.where(p.state[idx] == 1, p.speed[idx], 0.0) * ~w.traffic.ped_halted[idx]
            else:
                speed = np.zeros(len(idx))
            rows.append(np.column_stack([xy, h, speed, length, width])[near])
            kinds.append(np.full(near.sum(), ki, np.int8))
            ids.append(np.asarray(idx)[near])
        self._actors.append(np.concatenate(rows) if rows else np.zeros((0, 6)))
        self._kinds.append(np.concatenate(kinds) if kinds else np.zeros(0, np.int8))
        self._ids.append(np.concatenate(ids) if ids else np.zeros(0, np.int64))

    def finish(self, agent: str, summary: dict, extra_meta: dict | None = None) -> EpisodeLog:
        w = self.w
        n = len(self._rows)
        k_max = max([len(a) for a in self._actors] + [1])
        actors = np.zeros((n, k_max, 6))
        kind = np.full((n, k_max), -1, np.int8)
        ids = np.full((n, k_max), -1, np.int64)
        for i, (a, kd, ix) in enumerate(zip(self._actors, self._kinds, self._ids)):
            actors[i, : len(a)], kind[i, : len(a)], ids[i, : len(a)] = a, kd, ix
        cols = list(zip(*self._rows))
        r = w.route
        meta = {
            "family": w.config.family, "seed": w.seed, "config": w.config.to_dict(), "agent": agent,
            "dt_s": w.dt, "ego_length_m": EGO_LENGTH_M, "ego_width_m": EGO_WIDTH_M, "arrival_m": float(r.arrival_m), "stop_lines": _stop_lines(w),
            "infractions": summary.get("infractions", []), "outcome": summary, **(extra_meta or {}),
        }
        return EpisodeLog(
            meta=meta, t_s=np.array(cols[0], float), ego=np.column_stack(cols[1:7]).astype(float),
            gear=np.array(cols[7], np.int8), progress_m=np.array(cols[8], float),
            speed_limit_mps=np.array(cols[9], float), off_road=np.array(cols[10], bool),
            wrong_lane=np.array(cols[11], bool), lights=np.stack(cols[12]).astype(np.int8),
            actors=actors, actor_kind=kind, actor_id=ids, route_xy=r.xy.copy(),
            route_progress_m=r.progress_m.copy(), route_speed_limit_mps=w.map.speed_limit[r.lane].astype(float))


def _stop_lines(w: World) -> list[list[float]]:
    """(route progress, signal group) where the route enters a signalised connector."""
    r, m = w.route, w.map
    out = []
    for lane in dict.fromkeys(r.lane.tolist()):
        g = int(m.signal_group[lane])
        if g >= 0:
            first = int(np.argmax(r.lane == lane))
            out.append([float(r.progress_m[first]), g])
    return out
