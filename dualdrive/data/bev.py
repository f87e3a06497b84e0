"""The semantic bird's-eye view label: a (64, 64) grid of :class:`BevClass` around the ego, from ground truth.

Grid: 1 m cells over x (forward) in [-16, 48) m = rows and y (left) in [-32, 32) m = columns of the
ego frame, row 0 at the back and column 0 on the right: the same area and the same row/column
convention as ``dualdrive.sensors.lidar.bev_histogram`` (``np.histogram2d(x, y)``), so a cell of
the label lies under the same 2 x 2 LiDAR cells. A cell takes the class of its centre.

Painting order (later wins): road (lanes at their width, junction boxes, parking lots and spots),
the ego's route corridor, static obstacles, vehicles, pedestrians. Actors smaller than a cell (a
pedestrian, a cone) still mark the cell their centre is in.

Speed: per-episode work (a k-d tree over the map's lane points, the spot boxes) is done once in
the constructor; a frame is one k-d tree query of the 4096 cell centres plus small per-actor
windows, about a millisecond.
"""
from __future__ import annotations

import numpy as np
from matplotlib.path import Path as MplPath
from scipy.spatial import cKDTree

from dualdrive.data.format import BEV_SEMANTIC_CELLS, BEV_X_RANGE_M, BEV_Y_RANGE_M, BevClass
from dualdrive.sensors.scene import BoxClass
from dualdrive.world.geometry import ego_to_world, world_to_ego
from dualdrive.world.map import LaneMap
from dualdrive.world.route import ROUTE_STEP_M
from dualdrive.world.world import World

CELL_M = (BEV_X_RANGE_M[1] - BEV_X_RANGE_M[0]) / BEV_SEMANTIC_CELLS
LANE_NEIGHBOURS = 4  # nearest lane points tested per cell (overlapping lanes at junctions and merges)
ROUTE_BEHIND_M = 20.0  # the corridor starts this far behind the ego's route progress (the grid reaches 16 m back)
ROUTE_AHEAD_M = 80.0  # and ends this far ahead (the grid's far corner is 58 m away)
# the farthest a cell centre lies from the ego (the grid's far corners)
GRID_REACH_M = float(np.hypot(max(map(abs, BEV_X_RANGE_M)), max(map(abs, BEV_Y_RANGE_M))))
SPOT_REACH_M = 5.0  # a spot whose centre is this much beyond the grid's reach cannot touch it
MIN_HALF_EXTENT_M = 0.5 * CELL_M  # a box is at least one cell across, so small actors are not lost

BOX_TO_BEV = {int(BoxClass.CAR): BevClass.VEHICLE, int(BoxClass.TRUCK): BevClass.VEHICLE,
              int(BoxClass.EMERGENCY): BevClass.VEHICLE, int(BoxClass.PEDESTRIAN): BevClass.PEDESTRIAN,
              int(BoxClass.STATIC): BevClass.STATIC, int(BoxClass.CONE): BevClass.STATIC}
ACTOR_ORDER = (BevClass.STATIC, BevClass.VEHICLE, BevClass.PEDESTRIAN)  # painted in this order


def cell_centres_ego() -> np.ndarray:
    """(64 * 64, 2) cell centres (x_m, y_m) in the ego frame, row-major (row = x index)."""
    n = BEV_SEMANTIC_CELLS
    x = BEV_X_RANGE_M[0] + (np.arange(n) + 0.5) * CELL_M
    y = BEV_Y_RANGE_M[0] + (np.arange(n) + 0.5) * CELL_M
    xx, yy = np.meshgrid(x, y, indexing="ij")
    return np.column_stack([xx.ravel(), yy.ravel()])


def cell_of(xy_ego: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of ego-frame points (may lie outside [0, 64))."""
    xy = np.atleast_2d(xy_ego)
    return (np.floor((xy[:, 0] - BEV_X_RANGE_M[0]) / CELL_M).astype(int),
            np.floor((xy[:, 1] - BEV_Y_RANGE_M[0]) / CELL_M).astype(int))


class SemanticBev:
    """Rasterises one world's ground truth into the semantic BEV; build one per episode (per map)."""

    def __init__(self, lane_map: LaneMap) -> None:
        m = lane_map
        self.cells_ego = cell_centres_ego()
        self.tree = cKDTree(m.pts)
        # a cell centre at lateral offset d from a lane sampled every ~1 m is at most
        # sqrt(d^2 + (step/2)^2) from its nearest sample: compare squared distances with that
        self.reach2 = (m.width[m.pt_lane] / 2) ** 2 + (m.step[m.pt_lane] / 2) ** 2
        self.max_reach = float(np.sqrt(self.reach2.max())) if len(self.reach2) else 0.0
        polys = [lot.polygon_xy for lot in m.lots.values()] + [np.asarray(p) for p in m.intersections]
        self.areas = [(MplPath(p), p.min(0), p.max(0)) for p in polys if len(p) >= 3]
        if m.spots:
            c = np.array([sp.center_xy for sp in m.spots])
            self.spot_boxes = (c, np.array([sp.heading_rad for sp in m.spots]),
                               np.array([sp.length_m for sp in m.spots]), np.array([sp.width_m for sp in m.spots]))
        else:
            self.spot_boxes = (np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0))
        self.width = m.width

    def rasterise(self, world: World, boxes_world: tuple | None = None) -> np.ndarray:
        """(64, 64) uint8 BevClass grid for the world's current state.

        ``boxes_world``: (xy, heading_rad, length_m, width_m, BoxClass) of the actors; by default
        the sensor scene's ground-truth boxes."""
        ego_xy, ego_h = world.ego_xy, world.ego_heading
        cells_w = ego_to_world(self.cells_ego, ego_xy, ego_h)
        grid = np.zeros(len(cells_w), np.uint8)
        grid[self._road(cells_w, ego_xy, ego_h)] = BevClass.ROAD
        grid[self._route(world, cells_w)] = BevClass.ROUTE
        n = BEV_SEMANTIC_CELLS
        grid = grid.reshape(n, n)
        if boxes_world is None:
            from dualdrive.sensors.scene import scene_from_world
            b = scene_from_world(world).boxes
            boxes_world = (b.xy, b.heading_rad, b.length_m, b.width_m, b.cls)
        xy, h, length, width, cls = boxes_world
        if len(xy):
            cls_bev = np.array([BOX_TO_BEV.get(int(k), BevClass.STATIC) for k in cls])
            xy_ego = world_to_ego(np.asarray(xy), ego_xy, ego_h)
            rel_h = np.asarray(h) - ego_h
            for value in ACTOR_ORDER:
                sel = cls_bev == value
                if sel.any():
                    paint_boxes(grid, xy_ego[sel], rel_h[sel], np.asarray(length)[sel], np.asarray(width)[sel], value)
        return grid

    def _road(self, cells_w: np.ndarray, ego_xy: np.ndarray, ego_h: float) -> np.ndarray:
        d, idx = self.tree.query(cells_w, k=LANE_NEIGHBOURS, distance_upper_bound=self.max_reach)
        found = idx < len(self.reach2)
        reach2 = np.where(found, self.reach2[np.minimum(idx, len(self.reach2) - 1)], -1.0)
        road = np.any(found & (d**2 <= reach2), axis=1)
        lo, hi = cells_w.min(0), cells_w.max(0)
        for path, p_lo, p_hi in self.areas:
            if np.all(p_hi >= lo) and np.all(p_lo <= hi):  # only polygons that overlap the grid
                road |= path.contains_points(cells_w)
        c, sh, sl, sw = self.spot_boxes
        if len(c):
            near = np.linalg.norm(c - ego_xy, axis=1) < GRID_REACH_M + SPOT_REACH_M
            if near.any():
                spots = np.zeros((BEV_SEMANTIC_CELLS, BEV_SEMANTIC_CELLS), np.uint8)
                paint_boxes(spots, world_to_ego(c[near], ego_xy, ego_h), sh[near] - ego_h, sl[near], sw[near], 1,
                            min_half_m=0.0)
                road |= spots.ravel().astype(bool)
        return road

    def _route(self, world: World, cells_w: np.ndarray) -> np.ndarray:
        r = world.route
        win = (r.progress_m >= world.progress_m - ROUTE_BEHIND_M) & (r.progress_m <= world.progress_m + ROUTE_AHEAD_M)
        pts = r.xy[win]
        if len(pts) == 0:
            return np.zeros(len(cells_w), bool)
        reach2 = (self.width[r.lane[win]] / 2) ** 2 + (ROUTE_STEP_M / 2) ** 2
        d, idx = cKDTree(pts).query(cells_w, k=min(2, len(pts)), distance_upper_bound=float(np.sqrt(reach2.max())))
        d, idx = d.reshape(len(cells_w), -1), idx.reshape(len(cells_w), -1)
        found = idx < len(pts)
        return np.any(found & (d**2 <= np.where(found, reach2[np.minimum(idx, len(pts) - 1)], -1.0)), axis=1)


def paint_boxes(grid: np.ndarray, xy_ego: np.ndarray, yaw_rad: np.ndarray, length_m: np.ndarray,
                width_m: np.ndarray, value: int, min_half_m: float = MIN_HALF_EXTENT_M) -> None:
    """Set ``value`` in every cell whose centre lies in one of the oriented boxes (ego frame), and in the
    cell of each box centre. Only the cells under each box's bounding circle are tested."""
    n_x, n_y = grid.shape
    for (x, y), h, ln, wd in zip(np.atleast_2d(xy_ego), np.atleast_1d(yaw_rad), np.atleast_1d(length_m),
                                 np.atleast_1d(width_m)):
        hl, hw = max(ln / 2, min_half_m), max(wd / 2, min_half_m)
        r = np.hypot(hl, hw)
        r0, c0 = cell_of(np.array([[x - r, y - r]]))
        r1, c1 = cell_of(np.array([[x + r, y + r]]))
        r0, c0 = max(int(r0[0]), 0), max(int(c0[0]), 0)
        r1, c1 = min(int(r1[0]), n_x - 1), min(int(c1[0]), n_y - 1)
        if r0 > r1 or c0 > c1:
            continue  # entirely off the grid
        xs = BEV_X_RANGE_M[0] + (np.arange(r0, r1 + 1) + 0.5) * CELL_M - x
        ys = BEV_Y_RANGE_M[0] + (np.arange(c0, c1 + 1) + 0.5) * CELL_M - y
        dx, dy = xs[:, None], ys[None, :]
        ch, sh = np.cos(h), np.sin(h)
        u = dx * ch + dy * sh
        v = -dx * sh + dy * ch
        inside = (np.abs(u) <= hl) & (np.abs(v) <= hw)
        grid[r0:r1 + 1, c0:c1 + 1][inside] = value
        rc, cc = cell_of(np.array([[x, y]]))
        if 0 <= rc[0] < n_x and 0 <= cc[0] < n_y:
            grid[rc[0], cc[0]] = value
