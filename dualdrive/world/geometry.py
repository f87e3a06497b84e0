"""Planar geometry shared by the world, the follower and the renderer.

Frames: the world frame is x east, y north, heading counter-clockwise from +x (radians).
The ego frame is x forward, y left. Variables carry their frame in their name
(``xy_world``, ``xy_ego``).
"""
from __future__ import annotations

import numpy as np


def wrap_angle(angle_rad: np.ndarray | float) -> np.ndarray | float:
    """Wrap to [-pi, pi)."""
    return (np.asarray(angle_rad) + np.pi) % (2 * np.pi) - np.pi


def world_to_ego(xy_world: np.ndarray, ego_xy: np.ndarray, ego_heading_rad: float) -> np.ndarray:
    c, s = np.cos(ego_heading_rad), np.sin(ego_heading_rad)
    d = np.asarray(xy_world, dtype=float) - ego_xy
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def ego_to_world(xy_ego: np.ndarray, ego_xy: np.ndarray, ego_heading_rad: float) -> np.ndarray:
    c, s = np.cos(ego_heading_rad), np.sin(ego_heading_rad)
    p = np.asarray(xy_ego, dtype=float)
    return np.stack([c * p[..., 0] - s * p[..., 1], s * p[..., 0] + c * p[..., 1]], axis=-1) + ego_xy


def box_corners(xy: np.ndarray, heading_rad: np.ndarray, length_m: np.ndarray, width_m: np.ndarray) -> np.ndarray:
    """Corners (N, 4, 2) of oriented boxes, counter-clockwise from front-left."""
    xy = np.atleast_2d(xy)
    h = np.atleast_1d(heading_rad)
    half_l = np.atleast_1d(length_m) / 2
    half_w = np.atleast_1d(width_m) / 2
    fwd = np.stack([np.cos(h), np.sin(h)], -1)
    left = np.stack([-np.sin(h), np.cos(h)], -1)
    signs = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=float)
    offs = signs[None, :, 0:1] * (half_l[:, None, None] * fwd[:, None, :]) + signs[None, :, 1:2] * (
        half_w[:, None, None] * left[:, None, :]
    )
    return xy[:, None, :] + offs


def boxes_overlap(box_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Separating-axis test of one box (4, 2) against many boxes (N, 4, 2); returns (N,) bool."""
    if len(boxes_b) == 0:
        return np.zeros(0, dtype=bool)
    overlap = np.ones(len(boxes_b), dtype=bool)
    axes_a = np.array([box_a[1] - box_a[0], box_a[2] - box_a[1]])
    axes_b = np.stack([boxes_b[:, 1] - boxes_b[:, 0], boxes_b[:, 2] - boxes_b[:, 1]], axis=1)
    for axis_set in (np.broadcast_to(axes_a, (len(boxes_b), 2, 2)), axes_b):
        for k in range(2):
            ax = axis_set[:, k, :]  # (N, 2)
            pa = np.einsum("cd,nd->nc", box_a, ax)
            pb = np.einsum("ncd,nd->nc", boxes_b, ax)
            sep = (pa.max(1) < pb.min(1)) | (pb.max(1) < pa.min(1))
            overlap &= ~sep
    return overlap


def resample_polyline(points: np.ndarray, step_m: float) -> np.ndarray:
    """Resample a polyline at (about) uniform arc length, keeping both ends."""
    points = np.asarray(points, dtype=float)
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(np.ceil(s[-1] / step_m)) + 1)
    s_new = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(s_new, s, points[:, 0]), np.interp(s_new, s, points[:, 1])], axis=1)


def polyline_arclength(points: np.ndarray) -> np.ndarray:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def polyline_headings(points: np.ndarray) -> np.ndarray:
    d = np.diff(points, axis=0)
    h = np.arctan2(d[:, 1], d[:, 0])
    return np.concatenate([h, h[-1:]])


def project_to_polyline(points: np.ndarray, xy: np.ndarray) -> tuple[float, float, int]:
    """Project a point onto a polyline: (arc length s, signed lateral offset left+, segment index)."""
    a = points[:-1]
    d = points[1:] - a
    seg_len2 = np.maximum((d**2).sum(1), 1e-12)
    t = np.clip(((xy - a) * d).sum(1) / seg_len2, 0.0, 1.0)
    proj = a + t[:, None] * d
    dist2 = ((proj - xy) ** 2).sum(1)
    i = int(np.argmin(dist2))
    s_cum = polyline_arclength(points)
    s = s_cum[i] + t[i] * np.sqrt(seg_len2[i])
    cross = d[i, 0] * (xy[1] - a[i, 1]) - d[i, 1] * (xy[0] - a[i, 0])
    lat = np.sign(cross) * np.sqrt(dist2[i])
    return float(s), float(lat), i


def bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, n: int) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def connector_points(p0: np.ndarray, h0: float, p1: np.ndarray, h1: float, step_m: float = 1.0) -> np.ndarray:
    """Smooth curve from pose (p0, h0) to pose (p1, h1): a cubic Bezier whose handles follow the headings.

    The handle length is the one that makes a Bezier approximate a circular arc of the same turn
    (k = 4/3 tan(turn/4) r), so a U-turn is a half circle rather than a hairpin."""
    dist = float(np.linalg.norm(p1 - p0))
    turn = abs(float(wrap_angle(h1 - h0)))
    k = dist * (4.0 / 3.0) * np.tan(turn / 4) / (2 * np.sin(turn / 2)) if turn > 1e-3 else dist / 3
    c0 = p0 + k * np.array([np.cos(h0), np.sin(h0)])
    c1 = p1 - k * np.array([np.cos(h1), np.sin(h1)])
    pts = bezier(p0, c0, c1, p1, max(8, int(dist / step_m) * 4))
    return resample_polyline(pts, step_m)
