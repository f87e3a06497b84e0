"""Reactive log replay: recorded cars follow their log until the driven ego (or a car already
reacting) gets in their way, then drive on along their own recorded path with IDM (nuPlan's
reactive closed loop hands its agents to IDM along their logged routes in the same spirit).

A car is handed over at the first step where a *deviant* box (the ego once it has left its
logged pose by more than ``DEVIATION_M``, or a car already on IDM) stands ahead on the car's own
path, in its corridor, closer than IDM's desired gap. From then on the car keeps its recorded path
(arc length ``s`` along it, extended straight beyond the log's end) and IDM sets its speed: it
wants the speed the human drove at that moment, and follows the nearest box ahead on its path.
A car that never meets a deviant replays its log exactly, so the human's own drive is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dualdrive.human.scene import HumanLog

DEVIATION_M = 1.0  # a box this far from its logged pose no longer agrees with the log
NEAR_M = 80.0  # only cars this close to the ego can be handed over (the rest cannot meet it in a clip)
EXTEND_M = 200.0  # a recorded path goes on straight this far beyond the log's end


@dataclass(frozen=True)
class IDMConfig:
    """Treiber's IDM, with the parameters highway-env uses for its own traffic."""

    max_accel_mps2: float = 3.0
    comfort_decel_mps2: float = 5.0
    max_decel_mps2: float = 7.0  # as the world's vehicles
    time_gap_s: float = 1.5
    min_gap_m: float = 5.0  # bumper to bumper at standstill, highway-env's DISTANCE_WANTED
    delta: float = 4.0
    min_desired_speed_mps: float = 1.0  # a car logged at a standstill still creeps up to its leader


def idm_accel(v: float, v0: float, gap_m: float | None, v_lead: float, cfg: IDMConfig) -> float:
    """IDM acceleration for speed v, desired speed v0 and a leader gap_m ahead at v_lead (None: free road)."""
    a = 1.0 - (max(v, 0.0) / max(v0, cfg.min_desired_speed_mps)) ** cfg.delta
    if gap_m is not None:
        s_star = cfg.min_gap_m + max(0.0, v * cfg.time_gap_s + v * (v - v_lead) /
                                     (2.0 * np.sqrt(cfg.max_accel_mps2 * cfg.comfort_decel_mps2)))
        a -= (s_star / max(gap_m, 0.1)) ** 2
    return float(np.clip(cfg.max_accel_mps2 * a, -cfg.max_decel_mps2, cfg.max_accel_mps2))


class _Path:
    """One car's recorded path by arc length (extended straight beyond its last pose)."""

    def __init__(self, xy: np.ndarray) -> None:
        keep = np.concatenate([[True], np.linalg.norm(np.diff(xy, axis=0), axis=1) > 0.05])
        xy = xy[keep]
        if len(xy) < 2:
            xy = np.vstack([xy[:1], xy[:1] + [0.1, 0.0]])  # a car that never moved: any direction
        d = xy[-1] - xy[-2]
        xy = np.vstack([xy, xy[-1] + EXTEND_M * d / np.linalg.norm(d)])
        self.xy = xy
        self.s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
        seg = np.diff(xy, axis=0)
        self.heading = np.arctan2(seg[:, 1], seg[:, 0])

    def pose(self, s: float) -> tuple[np.ndarray, float]:
        s = float(np.clip(s, 0.0, self.s[-1]))
        k = int(np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.heading) - 1))
        return np.array([np.interp(s, self.s, self.xy[:, 0]), np.interp(s, self.s, self.xy[:, 1])]), float(self.heading[k])

    def locate(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arc length and unsigned lateral offset of points, by their nearest path segment."""
        a, b = self.xy[:-1], self.xy[1:]
        ab = b - a
        t = np.clip(np.einsum("nkd,kd->nk", xy[:, None, :] - a[None], ab) / np.einsum("kd,kd->k", ab, ab), 0.0, 1.0)
        foot = a[None] + t[..., None] * ab[None]
        dist = np.linalg.norm(xy[:, None, :] - foot, axis=2)
        k = np.argmin(dist, axis=1)
        rows = np.arange(len(xy))
        return self.s[k] + t[rows, k] * np.linalg.norm(ab[k], axis=1), dist[rows, k]


class ReactiveTraffic:
    """The other recorded cars of one replay, each on its log or (once handed over) on IDM."""

    def __init__(self, log: HumanLog, ego: int, config: IDMConfig | None = None) -> None:
        self.log, self.ego, self.cfg = log, ego, config or IDMConfig()
        n = log.xy.shape[1]
        self.paths: dict[int, _Path] = {}
        self.s_log = np.full(log.xy.shape[:2], np.nan)  # each car's arc length along its own path, per step
        for i in range(n):
            if i == ego or not log.valid[:, i].any():
                continue
            steps = np.where(log.valid[:, i])[0]
            path = _Path(log.xy[steps, i])
            self.paths[i] = path
            self.s_log[steps, i] = path.locate(log.xy[steps, i])[0]
        self.on_idm = np.zeros(n, bool)
        self.s = np.zeros(n)
        self.v = np.zeros(n)

    def state(self, t: int, ego_xy: np.ndarray, ego_heading: float, ego_speed: float, ego_deviates: bool,
              dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Advance to step t (call once per step, in order) and return every car's (xy, heading,
        speed, present) at it; the ego's own column is not present."""
        log = self.log
        xy, heading = log.xy[t].copy(), log.heading_rad[t].copy()
        speed, present = log.speed_mps[t].copy(), log.valid[t].copy()
        present[self.ego] = False
        ego_len, ego_w = float(log.length_m[self.ego]), float(log.width_m[self.ego])
        # IDM cars: every one decides on the same picture (their poses of the last step, the log
        # cars' of this one), then all move
        idm = np.where(self.on_idm)[0]
        for i in idm:
            xy[i], heading[i] = self.paths[i].pose(self.s[i])
            speed[i], present[i] = self.v[i], True
        accel = []
        for i in idm:
            gap, v_lead = self._leader(i, xy, speed, present, ego_xy, ego_speed, ego_len, ego_w)
            v0 = float(log.speed_mps[t, i]) if log.valid[t, i] else self.v[i]
            accel.append(idm_accel(self.v[i], v0, gap, v_lead, self.cfg))
        for i, a in zip(idm, accel):
            v_new = max(self.v[i] + a * dt, 0.0)
            self.s[i] += (self.v[i] + v_new) / 2 * dt
            self.v[i] = v_new
            xy[i], heading[i] = self.paths[i].pose(self.s[i])
            speed[i] = v_new
        # log cars meeting a deviant box on their path are handed over, from their logged state
        deviants = [("ego", ego_xy, ego_speed, ego_len, ego_w)] if ego_deviates else []
        deviants += [(i, xy[i], speed[i], log.length_m[i], log.width_m[i]) for i in np.where(self.on_idm)[0]
                     if not log.valid[t, i] or np.linalg.norm(xy[i] - log.xy[t, i]) > DEVIATION_M]
        if deviants:
            near = present & ~self.on_idm & (np.linalg.norm(np.nan_to_num(log.xy[t]) - ego_xy, axis=1) < NEAR_M)
            for i in np.where(near)[0]:
                if self._blocked_by(i, t, deviants):
                    self.on_idm[i] = True
                    self.s[i], self.v[i] = self.s_log[t, i], float(log.speed_mps[t, i])
        return xy, heading, speed, present

    def _ahead(self, i: int, s_i: float, xy: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For boxes at xy: their distance ahead of car i along its path (nan where not in its corridor)."""
        s, lat = self.paths[i].locate(xy.reshape(-1, 2))
        inside = (lat < (self.log.width_m[i] + width) / 2 + 0.3) & (s > s_i)
        return np.where(inside, s - s_i, np.nan), s

    def _blocked_by(self, i: int, t: int, deviants: list) -> bool:
        s_i, v_i = self.s_log[t, i], float(self.log.speed_mps[t, i])
        for _, xy, v, length, width in deviants:
            ahead, _ = self._ahead(i, s_i, np.asarray(xy), np.array([width]))
            if np.isfinite(ahead[0]):
                gap = ahead[0] - (self.log.length_m[i] + length) / 2
                s_star = self.cfg.min_gap_m + max(0.0, v_i * self.cfg.time_gap_s + v_i * (v_i - v) /
                                                  (2.0 * np.sqrt(self.cfg.max_accel_mps2 * self.cfg.comfort_decel_mps2)))
                if gap < s_star:
                    return True
        return False

    def _leader(self, i: int, xy: np.ndarray, speed: np.ndarray, present: np.ndarray, ego_xy: np.ndarray,
                ego_speed: float, ego_len: float, ego_w: float) -> tuple[float | None, float]:
        others = np.where(present)[0]
        others = others[others != i]
        others = others[np.linalg.norm(xy[others] - xy[i], axis=1) < NEAR_M] if len(others) else others
        boxes_xy = np.vstack([xy[others], ego_xy[None]])
        widths = np.concatenate([self.log.width_m[others], [ego_w]])
        lengths = np.concatenate([self.log.length_m[others], [ego_len]])
        speeds = np.concatenate([speed[others], [ego_speed]])
        ahead, _ = self._ahead(i, self.s[i], boxes_xy, widths)
        if not np.isfinite(ahead).any():
            return None, 0.0
        k = int(np.nanargmin(ahead))
        return float(ahead[k] - (self.log.length_m[i] + lengths[k]) / 2), float(speeds[k])
