"""Prediction for the modular baseline: where each tracked object will be over the planning horizon.

Three predictors over the same interface. Constant velocity (the baseline every benchmark reports)
extrapolates the Kalman state. Constant turn rate (CTRV) keeps the speed and the track's smoothed
turn rate, so a car already in a turn goes on turning. The lane-aware variant bends the motion along
the route's reference path when a track is on it and heading along it (a car ahead of us in our
lane follows the lane through a curve rather than leaving it on a tangent); objects off the path,
or crossing it, keep constant velocity. The agent plans with the lane-aware one; CTRV is there for
comparison and is not yet evaluated closed loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dualdrive.agents.modular.perception import Track

HORIZON_S = 4.0
STEP_S = 0.25
ON_PATH_M = 2.0  # a track this close to the reference path and heading along it follows the path
ALONG_RAD = 0.5


@dataclass(frozen=True)
class Prediction:
    """Future centre positions (odometry frame) of every object, one row per object."""

    t_s: np.ndarray  # (T,)
    xy: np.ndarray  # (N, T, 2)
    heading_rad: np.ndarray  # (N,)
    length_m: np.ndarray  # (N,)
    width_m: np.ndarray  # (N,)
    speed_mps: np.ndarray  # (N,)
    static: np.ndarray  # (N,) bool: standing still (a parked car, cones)


def times(horizon_s: float = HORIZON_S, step_s: float = STEP_S) -> np.ndarray:
    return np.arange(0.0, horizon_s + 1e-9, step_s)


def constant_velocity(tracks: list[Track], horizon_s: float = HORIZON_S, step_s: float = STEP_S,
                      still_mps: float = 0.5) -> Prediction:
    t = times(horizon_s, step_s)
    n = len(tracks)
    xy0 = np.array([tr.xy for tr in tracks]).reshape(n, 2)
    vel = np.array([tr.velocity for tr in tracks]).reshape(n, 2)
    speed = np.linalg.norm(vel, axis=1)
    static = speed < still_mps
    vel = np.where(static[:, None], 0.0, vel)
    xy = xy0[:, None, :] + vel[:, None, :] * t[None, :, None]
    yaw = np.array([tr.yaw_rad for tr in tracks], float).reshape(n)
    # a moving object's box is aligned with its motion (the LiDAR box yaw is ambiguous by 180 deg)
    heading = np.where(static, yaw, np.arctan2(vel[:, 1], vel[:, 0]))
    return Prediction(t, xy, heading, np.array([tr.length_m for tr in tracks]).reshape(n),
                      np.array([tr.width_m for tr in tracks]).reshape(n), speed, static)


def constant_turn_rate(tracks: list[Track], horizon_s: float = HORIZON_S, step_s: float = STEP_S,
                       min_turn_rps: float = 0.02) -> Prediction:
    """CTRV: each moving track keeps its speed and turn rate (an arc); with almost no turn rate it
    is constant velocity."""
    pred = constant_velocity(tracks, horizon_s, step_s)
    t = pred.t_s
    xy = pred.xy.copy()
    for i, tr in enumerate(tracks):
        w = tr.yaw_rate_rps
        if pred.static[i] or abs(w) < min_turn_rps:
            continue
        h0, v = pred.heading_rad[i], pred.speed_mps[i]
        h = h0 + w * t
        xy[i] = pred.xy[i, 0] + (v / w) * np.column_stack([np.sin(h) - np.sin(h0), np.cos(h0) - np.cos(h)])
    return Prediction(t, xy, pred.heading_rad, pred.length_m, pred.width_m, pred.speed_mps, pred.static)


def lane_aware(tracks: list[Track], path_xy: np.ndarray, horizon_s: float = HORIZON_S,
               step_s: float = STEP_S) -> Prediction:
    """Constant velocity, except that tracks on the reference path and moving along it follow it."""
    pred = constant_velocity(tracks, horizon_s, step_s)
    if len(path_xy) < 2 or not len(tracks):
        return pred
    seg = np.diff(path_xy, axis=0)
    s_pts = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=1))])
    head = np.arctan2(seg[:, 1], seg[:, 0])
    xy = pred.xy.copy()
    for i in range(len(tracks)):
        if pred.static[i]:
            continue
        d = np.linalg.norm(path_xy - pred.xy[i, 0], axis=1)
        k = int(np.argmin(d))
        h_path = head[min(k, len(head) - 1)]
        if d[k] > ON_PATH_M or abs((pred.heading_rad[i] - h_path + np.pi) % (2 * np.pi) - np.pi) > ALONG_RAD:
            continue
        s = s_pts[k] + pred.speed_mps[i] * pred.t_s
        if s[-1] > s_pts[-1]:  # beyond the known path: keep constant velocity
            continue
        offset = pred.xy[i, 0] - path_xy[k]
        xy[i] = np.column_stack([np.interp(s, s_pts, path_xy[:, 0]), np.interp(s, s_pts, path_xy[:, 1])]) + offset
    return Prediction(pred.t_s, xy, pred.heading_rad, pred.length_m, pred.width_m, pred.speed_mps, pred.static)
