"""The car ahead: System 1's auxiliary lead label, derived from a frame's recorded boxes and route.

The lead is the nearest box (any class: a parked car or a cone in the lane stops the ego as well as a
moving car) whose centre lies ahead on the route, within half a lane of it, and within the boxes'
range. The label is (present, gap_m, relative_speed_mps): the gap is measured along the route from the
ego's centre to the lead's rear, the relative speed is the lead's speed along the ego's heading minus
the ego's (negative: closing in). Route-relative rather than ego-frame, so that a car ahead in a bend
is still ahead and a car in the next lane of a bend is not.
"""
from __future__ import annotations

import numpy as np

from dualdrive.data.format import BOX_RANGE_M
from dualdrive.world.geometry import project_to_polyline

LANE_HALF_WIDTH_M = 1.8
UNLABELLED = -1.0  # presence when the frame has no boxes recorded


def lead_label(boxes: np.ndarray, num_boxes: int, route_xy_ego: np.ndarray, ego_speed_mps: float) -> np.ndarray:
    """(3,) float32 (present 0/1, gap_m, relative_speed_mps) for one frame; gap and speed 0 without a lead.

    ``boxes`` rows (x_m, y_m, yaw_rad, length_m, width_m, speed_mps, class) in the ego frame
    (``dualdrive.data.format``), ``route_xy_ego`` the route target points in the ego frame."""
    path = np.vstack([[0.0, 0.0], np.asarray(route_xy_ego, np.float64)])
    best = None
    for row in np.asarray(boxes, np.float64)[:max(0, int(num_boxes))]:
        if row[0] <= 0.0:  # behind the ego's centre: never the lead
            continue
        s, lat, _ = project_to_polyline(path, row[:2])
        if abs(lat) < LANE_HALF_WIDTH_M and 0.0 < s < BOX_RANGE_M and (best is None or s < best[0]):
            best = (s, row)
    if best is None:
        return np.zeros(3, np.float32)
    s, row = best
    gap = max(0.0, s - 0.5 * row[3])
    return np.array([1.0, gap, row[5] * np.cos(row[2]) - ego_speed_mps], np.float32)


def lead_labels(boxes: np.ndarray | None, num_boxes: np.ndarray | None, route_xy_ego: np.ndarray,
                speed_mps: np.ndarray) -> np.ndarray:
    """(T, 3) ``lead_label`` of every frame of an episode; presence ``UNLABELLED`` where no boxes were recorded."""
    t = len(speed_mps)
    if boxes is None or num_boxes is None:
        out = np.zeros((t, 3), np.float32)
        out[:, 0] = UNLABELLED
        return out
    return np.stack([lead_label(boxes[k], int(num_boxes[k]), route_xy_ego[k], float(speed_mps[k]))
                     for k in range(t)]) if t else np.zeros((0, 3), np.float32)
