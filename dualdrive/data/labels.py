"""Per-frame privileged labels besides the semantic BEV: the traffic light that governs the ego's
route ahead, and the actors' boxes in the ego frame. Both read the world's ground truth; see
``format.py`` for the arrays they fill."""
from __future__ import annotations

import numpy as np

from dualdrive.data.format import BOX_RANGE_M, MAX_BOXES, BOX_COLUMNS, LightState
from dualdrive.sensors.scene import Boxes
from dualdrive.world.geometry import wrap_angle, world_to_ego
from dualdrive.world.map import LaneKind
from dualdrive.world.signals import Light
from dualdrive.world.world import World

LIGHT_RANGE_M = 50.0  # a signal further along the route than this is not labelled yet
LIGHT_TO_LABEL = {int(Light.GREEN): LightState.GREEN, int(Light.AMBER): LightState.YELLOW,
                  int(Light.RED): LightState.RED}


def light_state_ahead(world: World, range_m: float = LIGHT_RANGE_M) -> LightState:
    """State of the signal at the next stop line on the ego's route within ``range_m`` of route progress.

    The stop line of a signalised junction is where the route enters a connector lane that has a
    signal group; once the ego's progress is past it, that light no longer governs it (NONE until
    the next one comes within range)."""
    r, m = world.route, world.map
    ahead = np.where((r.progress_m > world.progress_m) & (r.progress_m <= world.progress_m + range_m))[0]
    if len(ahead) == 0:
        return LightState.NONE
    lanes = r.lane[ahead]
    prev = r.lane[np.maximum(ahead - 1, 0)]
    entry = (m.kind[lanes] == LaneKind.CONNECTOR) & (m.signal_group[lanes] >= 0) & ((prev != lanes) | (ahead == 0))
    hits = np.where(entry)[0]
    if len(hits) == 0:
        return LightState.NONE
    group = int(m.signal_group[lanes[hits[0]]])
    return LIGHT_TO_LABEL[int(world.lights[group])]


def actor_boxes(boxes: Boxes, ego_xy: np.ndarray, ego_heading_rad: float,
                range_m: float = BOX_RANGE_M, capacity: int = MAX_BOXES) -> tuple[np.ndarray, int]:
    """(capacity, 7) float32 rows (x_m, y_m, yaw_rad, length_m, width_m, speed_mps, class) of the
    actors whose centre is within ``range_m``, nearest first, zero-padded; and how many are real."""
    out = np.zeros((capacity, len(BOX_COLUMNS)), np.float32)
    if len(boxes) == 0:
        return out, 0
    xy = world_to_ego(boxes.xy, ego_xy, ego_heading_rad)
    dist = np.linalg.norm(xy, axis=1)
    keep = np.where(dist < range_m)[0]
    keep = keep[np.argsort(dist[keep], kind="stable")][:capacity]
    n = len(keep)
    out[:n, 0:2] = xy[keep]
    out[:n, 2] = wrap_angle(boxes.heading_rad[keep] - ego_heading_rad)
    out[:n, 3] = boxes.length_m[keep]
    out[:n, 4] = boxes.width_m[keep]
    out[:n, 5] = np.linalg.norm(boxes.velocity_mps[keep], axis=1)
    out[:n, 6] = boxes.cls[keep]
    return out, n
