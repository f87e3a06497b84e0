"""Top-down ego-centred view of the world with the route and the agent's plan (PIL, no display)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from dualdrive.world.geometry import box_corners, ego_to_world
from dualdrive.world.map import LaneKind
from dualdrive.world.signals import Light
from dualdrive.world.world import World

SIZE_PX = 480
PX_PER_M = 4.0
COLORS = {"bg": (32, 96, 48), "road": (72, 72, 78), "aisle": (96, 96, 100), "marking": (230, 230, 230),
          "ego": (40, 140, 255), "car": (235, 205, 60), "truck": (230, 140, 40), "emergency": (255, 40, 40),
          "stalled": (160, 90, 200), "parked": (150, 150, 150), "cone": (255, 120, 0), "ped": (255, 90, 180),
          "route": (80, 220, 255), "plan": (255, 60, 200), "spot": (240, 240, 240),
          "light": {Light.RED: (255, 40, 40), Light.AMBER: (255, 190, 0), Light.GREEN: (40, 230, 80)}}
KIND_COLOR = {0: "car", 1: "truck", 2: "emergency", 3: "stalled", 5: "car"}


class TopDownRenderer:
    """Draws frames around the ego; the static map layer is cached per world."""

    def __init__(self, world: World, size_px: int = SIZE_PX, px_per_m: float = PX_PER_M) -> None:
        self.w = world
        self.size = size_px
        self.scale = px_per_m

    def _to_px(self, xy: np.ndarray, centre: np.ndarray) -> np.ndarray:
        d = (np.asarray(xy) - centre) * self.scale
        return np.stack([self.size / 2 + d[..., 0], self.size / 2 - d[..., 1]], -1)

    def frame(self, plan_world_xy: np.ndarray | None = None, text: str = "") -> np.ndarray:
        w, m = self.w, self.w.map
        c = w.ego_xy
        img = Image.new("RGB", (self.size, self.size), COLORS["bg"])
        dr = ImageDraw.Draw(img)
        radius = self.size / self.scale * 0.75
        for lot in m.lots.values():
            dr.polygon([tuple(p) for p in self._to_px(lot.polygon_xy, c)], fill=COLORS["aisle"])
        for poly in m.intersections:
            dr.polygon([tuple(p) for p in self._to_px(poly, c)], fill=COLORS["road"])
        for ln in m.lanes:
            pts = m.lane_points(ln.id)
            if np.min(np.linalg.norm(pts - c, axis=1)) > radius:
                continue
            col = COLORS["aisle"] if ln.kind == LaneKind.AISLE else COLORS["road"]
            dr.line([tuple(p) for p in self._to_px(pts, c)], fill=col, width=max(1, int(ln.width_m * self.scale)))
        for sp in m.spots:
            if np.linalg.norm(sp.center_xy - c) < radius:
                box = box_corners(sp.center_xy, sp.heading_rad, sp.length_m, sp.width_m)[0]
                dr.polygon([tuple(p) for p in self._to_px(box, c)], outline=COLORS["spot"])
        for cw in m.crosswalks:
            if np.linalg.norm(cw.start_xy - c) < radius:
                dr.line([tuple(self._to_px(cw.start_xy, c)), tuple(self._to_px(cw.end_xy, c))],
                        fill=COLORS["marking"], width=int(cw.width_m * self.scale * 0.6))
        self._lights(dr, c, radius)
        rxy = w.route.xy[(w.route.progress_m >= w.progress_m - 5) & (w.route.progress_m <= w.progress_m + 150)]
        if len(rxy) > 1:
            dr.line([tuple(p) for p in self._to_px(rxy, c)], fill=COLORS["route"], width=2)
        self._actors(dr, c, radius)
        if plan_world_xy is not None and len(plan_world_xy) > 0:
            pts = np.vstack([c, plan_world_xy])
            dr.line([tuple(p) for p in self._to_px(pts, c)], fill=COLORS["plan"], width=3)
        box = w.ego_box()
        dr.polygon([tuple(p) for p in self._to_px(box, c)], fill=COLORS["ego"])
        dr.text((6, 6), text, fill=(255, 255, 255))
        return np.asarray(img)

    def _lights(self, dr: ImageDraw.ImageDraw, c: np.ndarray, radius: float) -> None:
        w, m = self.w, self.w.map
        for ln in m.lanes:
            if ln.kind != LaneKind.CONNECTOR or ln.signal_group < 0 or ln.movement == 2:
                continue
            p = m.lane_points(ln.id)[0]
            if np.linalg.norm(p - c) > radius:
                continue
            q = self._to_px(p, c)
            col = COLORS["light"][Light(int(w.lights[ln.signal_group]))]
            dr.ellipse([q[0] - 3, q[1] - 3, q[0] + 3, q[1] + 3], fill=col)

    def _actors(self, dr: ImageDraw.ImageDraw, c: np.ndarray, radius: float) -> None:
        acts = self.w.actors()
        kinds = self.w.traffic.veh.kind
        xy, h, length, width, ids = acts["vehicle"]
        for k in np.where(np.linalg.norm(xy - c, axis=1) < radius)[0]:
            box = box_corners(xy[k], h[k], length[k], width[k])[0]
            dr.polygon([tuple(p) for p in self._to_px(box, c)], fill=COLORS[KIND_COLOR.get(int(kinds[ids[k]]), "car")])
        xy, h, length, width, _ = acts["static"]
        for k in np.where(np.linalg.norm(xy - c, axis=1) < radius)[0] if len(xy) else []:
            box = box_corners(xy[k], h[k], length[k], width[k])[0]
            dr.polygon([tuple(p) for p in self._to_px(box, c)], fill=COLORS["cone" if length[k] < 1 else "parked"])
        xy = acts["pedestrian"][0]
        for p in xy[np.linalg.norm(xy - c, axis=1) < radius] if len(xy) else []:
            q = self._to_px(p, c)
            dr.ellipse([q[0] - 3, q[1] - 3, q[0] + 3, q[1] + 3], fill=COLORS["ped"])


def render_topdown(world: World) -> np.ndarray:
    return TopDownRenderer(world).frame()


def plan_to_world(poses_ego: np.ndarray, world: World) -> np.ndarray:
    return ego_to_world(poses_ego[:, :2], world.ego_xy, world.ego_heading)
