"""A perspective camera rendered from the ego's point of view (not a top-down image).

Pinhole projection with a configurable resolution, horizontal field of view, mounting position,
yaw and pitch. The ground (grass, then the road surface and lots), lane markings and parking-spot
lines are drawn first; then 3-D boxes far to near (painter's algorithm), each visible face shaded
by its orientation and faded with distance; traffic-light heads show their current colour.
Geometry crossing the camera's near plane is clipped before projection, so nothing wraps round.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from dualdrive.sensors.lidar import SensorConfigError
from dualdrive.sensors.scene import LIGHT_POLE_M, BoxClass, LineStyle, SensorScene
from dualdrive.world.geometry import box_corners

NEAR_M = 0.3
SKY = np.array([140, 185, 235])
GRASS = np.array([86, 125, 70])
ASPHALT = np.array([72, 72, 78])
PAINT = np.array([235, 235, 225])
KERB = np.array([165, 165, 160])
FOG = np.array([175, 190, 205])
BOX_COLOURS = {int(BoxClass.CAR): (60, 100, 190), int(BoxClass.TRUCK): (200, 150, 60),
               int(BoxClass.EMERGENCY): (235, 235, 240), int(BoxClass.PEDESTRIAN): (225, 175, 130),
               int(BoxClass.STATIC): (125, 125, 135), int(BoxClass.CONE): (255, 120, 0)}
LIGHT_COLOURS = {0: (255, 30, 30), 1: (255, 190, 0), 2: (40, 230, 60)}
DASH_M = 3  # dashed lines: 3 m painted, 3 m gap (marking points are 1 m apart)


@dataclass(frozen=True)
class CameraConfig:
    name: str = "front"
    width_px: int = 192
    height_px: int = 96
    fov_deg: float = 90.0  # horizontal
    mount_x_m: float = 1.0  # forward of the ego's centre
    mount_height_m: float = 1.5
    yaw_deg: float = 0.0  # 0 front, 180 rear, 90 left
    pitch_deg: float = 6.0  # looking down
    max_depth_m: float = 80.0
    noise_std: float = 0.0  # Gaussian pixel noise (0-255 scale), added by the sensor suite

    def __post_init__(self) -> None:
        if self.noise_std < 0:
            raise SensorConfigError(f"camera.{self.name}.noise_std={self.noise_std} must be >= 0")
        if self.width_px < 8 or self.height_px < 8:
            raise SensorConfigError(f"camera.{self.name}: width_px and height_px must be at least 8, got "
                                    f"{self.width_px}x{self.height_px}")
        if not 1.0 <= self.fov_deg < 180.0:
            raise SensorConfigError(f"camera.{self.name}.fov_deg={self.fov_deg} must be in [1, 180)")
        if self.mount_height_m <= 0 or self.max_depth_m <= NEAR_M:
            raise SensorConfigError(f"camera.{self.name}: mount_height_m must be > 0 and max_depth_m > {NEAR_M}")
        if not -89.0 < self.pitch_deg < 89.0:
            raise SensorConfigError(f"camera.{self.name}.pitch_deg={self.pitch_deg} must be in (-89, 89)")


@dataclass(frozen=True)
class _LineLayer:
    """A layer of ground polylines flattened into one array: line i is points[start[i]:start[i] + length[i]]."""
    points: np.ndarray  # (M, 2)
    start: np.ndarray  # (L,)
    length: np.ndarray  # (L,)
    style: np.ndarray  # (L,) LineStyle

    @classmethod
    def of(cls, lines: list[np.ndarray], styles: list[int]) -> "_LineLayer":
        length = np.array([len(p) for p in lines], np.int64)
        pts = np.concatenate(lines).reshape(-1, 2) if lines else np.zeros((0, 2))
        return cls(pts, np.cumsum(length) - length, length, np.asarray(styles, np.int64))


class Camera:
    def __init__(self, config: CameraConfig = CameraConfig()) -> None:
        self.cfg = config
        self.f_px = (config.width_px / 2) / np.tan(np.deg2rad(config.fov_deg) / 2)
        self.cx, self.cy = config.width_px / 2, config.height_px / 2
        self._yaw = np.deg2rad(config.yaw_deg)
        self._pitch = np.deg2rad(config.pitch_deg)
        self._bbox: dict[int, tuple] = {}
        self._flat_cache: dict[int, tuple] = {}

    # -- geometry ---------------------------------------------------------------------------
    def to_camera(self, scene: SensorScene, xyz_world: np.ndarray) -> np.ndarray:
        """World points (N, 3) -> camera frame (N, 3): (right, up, forward along the optical axis)."""
        cfg = self.cfg
        h = scene.ego_heading_rad + self._yaw
        # the camera's position in the world
        eh = scene.ego_heading_rad
        cam = scene.ego_xy + cfg.mount_x_m * np.array([np.cos(eh), np.sin(eh)])
        d = xyz_world[:, :2] - cam
        f = d[:, 0] * np.cos(h) + d[:, 1] * np.sin(h)
        left = -d[:, 0] * np.sin(h) + d[:, 1] * np.cos(h)
        up = xyz_world[:, 2] - cfg.mount_height_m
        cp, sp = np.cos(self._pitch), np.sin(self._pitch)
        return np.column_stack([-left, f * sp + up * cp, f * cp - up * sp])

    def project(self, cam_xyz: np.ndarray) -> np.ndarray:
        """Camera-frame points in front of the camera -> pixel (u, v), v down."""
        z = cam_xyz[:, 2]
        return np.column_stack([self.cx + self.f_px * cam_xyz[:, 0] / z, self.cy - self.f_px * cam_xyz[:, 1] / z])

    # -- rendering --------------------------------------------------------------------------
    def render(self, scene: SensorScene) -> np.ndarray:
        """(height_px, width_px, 3) uint8 RGB image."""
        cfg = self.cfg
        img = Image.new("RGB", (cfg.width_px, cfg.height_px), tuple(SKY))
        dr = ImageDraw.Draw(img)
        c = scene.ego_xy
        r = cfg.max_depth_m
        # the ground to the horizon, then the road surface
        g = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * r * 1.5 + c
        self._polygon(dr, scene, np.column_stack([g, np.zeros(4)]), GRASS)
        parts = [p for p in (_crop(scene.road[k], c, r) for k in self._in_view(scene, scene.road, scene.road))
                 if p is not None]
        if parts:  # every road polygon into the camera frame at once, then clipped and drawn one by one
            cams = np.split(self.to_camera(scene, np.column_stack([np.concatenate(parts), np.zeros(sum(map(len, parts)))])),
                            np.cumsum([len(p) for p in parts])[:-1])
            fill = tuple(int(v) for v in ASPHALT)
            for cam in cams:
                cam = _clip_near(cam)
                if len(cam) >= 3:
                    dr.polygon(self.project(cam).ravel().tolist(), fill=fill)
        self._lines(dr, scene, scene.markings, [m[0] for m in scene.markings], [m[1] for m in scene.markings])
        self._lines(dr, scene, scene.spot_lines, scene.spot_lines, [int(LineStyle.SOLID)] * len(scene.spot_lines))
        self._boxes_and_lights(dr, scene)
        return np.asarray(img)

    def _in_view(self, scene: SensorScene, layer: list, shapes: list[np.ndarray]) -> np.ndarray:
        """Indices of the shapes of a (per-map, unchanging) layer whose bounding box comes within
        ``max_depth_m`` of the camera and reaches in front of it. Boxes are cached per layer."""
        key = id(layer)
        if key not in self._bbox:
            if len(self._bbox) > 8:
                self._bbox.clear()
            lo = np.array([p.min(0) for p in shapes]).reshape(-1, 2)
            hi = np.array([p.max(0) for p in shapes]).reshape(-1, 2)
            self._bbox[key] = (layer, lo, hi)  # the layer is kept alive so its id stays unique
        _, lo, hi = self._bbox[key]
        if len(lo) == 0:
            return np.zeros(0, np.int64)
        c = scene.ego_xy
        gap = np.maximum(np.maximum(lo - c, c - hi), 0.0)
        near = np.hypot(gap[:, 0], gap[:, 1]) < self.cfg.max_depth_m
        # in front: some corner of the box is ahead of the camera's image plane
        h = scene.ego_heading_rad + self._yaw
        fwd = np.array([np.cos(h), np.sin(h)])
        ahead = np.maximum(fwd[0] * (lo[:, 0] - c[0]), fwd[0] * (hi[:, 0] - c[0])) + np.maximum(
            fwd[1] * (lo[:, 1] - c[1]), fwd[1] * (hi[:, 1] - c[1]))
        return np.nonzero(near & (ahead > -self.cfg.mount_x_m))[0]

    def _fade(self, colour: np.ndarray, depth: float) -> tuple[int, int, int]:
        a = min(max(depth / self.cfg.max_depth_m, 0.0), 1.0) * 0.7
        return tuple(int(v) for v in (1 - a) * np.asarray(colour, float) + a * FOG)

    def _fades(self, colours: np.ndarray, depths: np.ndarray) -> list[tuple[int, int, int]]:
        """`_fade` of many colours (n, 3) at once, to the same integers."""
        a = np.minimum(np.maximum(depths / self.cfg.max_depth_m, 0.0), 1.0)[:, None] * 0.7
        return [tuple(c) for c in ((1 - a) * colours.astype(float) + a * FOG).astype(np.int64).tolist()]

    def _polygon(self, dr: ImageDraw.ImageDraw, scene: SensorScene, xyz: np.ndarray, colour, shade: float = 1.0,
                 fade: bool = False) -> None:
        cam = _clip_near(self.to_camera(scene, xyz))
        if len(cam) < 3:
            return
        px = self.project(cam)
        col = np.asarray(colour, float) * shade
        fill = self._fade(col, float(cam[:, 2].min())) if fade else tuple(int(v) for v in col)
        dr.polygon(px.ravel().tolist(), fill=fill)

    def _flat(self, layer: list, lines: list[np.ndarray], styles: list[int]) -> _LineLayer:
        """A layer's polylines as one array (cached per layer, like the bounding boxes)."""
        key = id(layer)
        if key not in self._flat_cache:
            if len(self._flat_cache) > 8:
                self._flat_cache.clear()
            self._flat_cache[key] = (layer, _LineLayer.of(lines, styles))
        return self._flat_cache[key][1]

    def _lines(self, dr: ImageDraw.ImageDraw, scene: SensorScene, layer: list, lines: list[np.ndarray],
               styles: list[int]) -> None:
        """Paint a layer's ground lines in one pass: every segment of every line in view is moved
        into the camera frame, clipped at the near plane and projected at once (the per-line numpy
        calls dominated the frame before); runs of consecutive visible segments of a line are drawn
        as one stroke. Dashed lines paint DASH_M metres of every 2 * DASH_M."""
        ks = self._in_view(scene, layer, lines)
        if len(ks) == 0:
            return
        fl = self._flat(layer, lines, styles)
        ks = ks[fl.length[ks] >= 2]  # a line needs a segment (and reduceat needs no empty runs)
        if len(ks) == 0:
            return
        # the points of the lines in view, line after line
        lens = fl.length[ks]
        lid = np.repeat(np.arange(len(ks)), lens)
        local = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        g = fl.start[ks][lid] + local
        d = fl.points[g] - scene.ego_xy
        near = np.sqrt((d * d).sum(1)) < self.cfg.max_depth_m
        # per line: from its first point within range to one past its last, if two are in range
        firsts = np.cumsum(lens) - lens
        n_near = np.add.reduceat(near.astype(np.int64), firsts)
        lo = np.minimum.reduceat(np.where(near, local, np.iinfo(np.int64).max), firsts)
        hi = np.minimum(np.maximum.reduceat(np.where(near, local, -1), firsts), lens - 2)  # last segment
        seg = (n_near[lid] >= 2) & (local >= lo[lid]) & (local <= hi[lid])
        sel = np.nonzero(seg)[0]
        if len(sel) == 0:
            return
        sline, j = lid[sel], local[sel]
        style = fl.style[ks][sline]
        a = self.to_camera(scene, np.column_stack([fl.points[g[sel]], np.zeros(len(sel))]))
        b = self.to_camera(scene, np.column_stack([fl.points[g[sel] + 1], np.zeros(len(sel))]))
        keep = (a[:, 2] >= NEAR_M) | (b[:, 2] >= NEAR_M)
        keep &= (style != LineStyle.DASHED) | (((j // DASH_M) % 2) == 0)
        # clip segments crossing the near plane
        t = np.clip((NEAR_M - a[:, 2]) / np.where(b[:, 2] != a[:, 2], b[:, 2] - a[:, 2], 1.0), 0.0, 1.0)[:, None]
        on_plane = a + t * (b - a)  # where the segment crosses the near plane
        a, b = (np.where((a[:, 2] < NEAR_M)[:, None], on_plane, a), np.where((b[:, 2] < NEAR_M)[:, None], on_plane, b))
        ua, ub = self.project(np.where(keep[:, None], a, 1.0)), self.project(np.where(keep[:, None], b, 1.0))
        w, h = self.cfg.width_px, self.cfg.height_px
        inside = keep & ~(((ua[:, 0] < 0) & (ub[:, 0] < 0)) | ((ua[:, 0] > w) & (ub[:, 0] > w)) |
                          ((ua[:, 1] < 0) & (ub[:, 1] < 0)) | ((ua[:, 1] > h) & (ub[:, 1] > h)))
        k = np.nonzero(inside)[0]
        if len(k) == 0:
            return
        # a run ends where a segment is skipped or the next line begins
        breaks = np.nonzero((np.diff(j[k]) != 1) | (np.diff(sline[k]) != 0))[0] + 1
        starts = np.concatenate([[0], breaks])
        ends = np.append(breaks, len(k))
        kerb = style[k[starts]] == LineStyle.KERB
        fills = self._fades(np.where(kerb[:, None], KERB, PAINT), np.minimum.reduceat(np.minimum(a[k, 2], b[k, 2]), starts))
        first, tail = ua[k[starts]].tolist(), ub[k].tolist()
        for r in range(len(starts)):
            dr.line([tuple(first[r])] + [tuple(p) for p in tail[starts[r]:ends[r]]], fill=fills[r],
                    width=2 if kerb[r] else 1)

    def _boxes_and_lights(self, dr: ImageDraw.ImageDraw, scene: SensorScene) -> None:
        b = scene.boxes
        items = []  # (depth, kind, index)
        c = scene.ego_xy
        if len(b):
            d = np.linalg.norm(b.xy - c, axis=1)
            items += [(float(d[k]), 0, int(k)) for k in np.where(d < self.cfg.max_depth_m)[0]]
        if len(scene.lights_xy):
            d = np.linalg.norm(scene.lights_xy - c, axis=1)
            items += [(float(d[k]), 1, int(k)) for k in np.where(d < self.cfg.max_depth_m)[0]]
        eh = scene.ego_heading_rad
        cam_xy = c + self.cfg.mount_x_m * np.array([np.cos(eh), np.sin(eh)])
        centres = np.array([b.xy[k] if kind == 0 else scene.lights_xy[k] for _, kind, k in items]).reshape(-1, 2)
        if len(centres):
            cc = self.to_camera(scene, np.column_stack([centres, np.zeros(len(centres))]))
            half = np.tan(np.deg2rad(self.cfg.fov_deg) / 2)
            # out of view: behind the camera, or beyond the side of the frustum (a box's half-size of slack)
            slack = 6.0
            seen = (cc[:, 2] > -slack) & (np.abs(cc[:, 0]) <= np.maximum(cc[:, 2], 0) * half + slack)
            items = [it for it, ok in zip(items, seen) if ok]
        # every box's corners into the camera frame and onto the image at once
        ks = np.array([k for _, kind, k in items if kind == 0], np.int64)
        slot = {int(k): i for i, k in enumerate(ks)}
        if len(ks):
            base = box_corners(b.xy[ks], b.heading_rad[ks], b.length_m[ks], b.width_m[ks])  # (n, 4, 2) ccw
            z = np.concatenate([np.zeros((len(ks), 4)), np.repeat(b.height_m[ks][:, None], 4, 1)], 1)
            xyz = np.concatenate([np.concatenate([base, base], 1), z[..., None]], 2).reshape(-1, 3)
            cam = self.to_camera(scene, xyz).reshape(len(ks), 8, 3)
            uv = self.project(np.where(cam[..., 2:3] > NEAR_M, cam, NEAR_M).reshape(-1, 3)).reshape(len(ks), 8, 2)
        for _, kind, k in sorted(items, reverse=True):  # far to near
            if kind == 0:
                i = slot[k]
                self._box(dr, scene, base[i], b.xy[k], cam[i], uv[i], b.height_m[k],
                          BOX_COLOURS.get(int(b.cls[k]), (150, 150, 150)), cam_xy)
            else:
                self._light(dr, scene, scene.lights_xy[k], scene.lights_heading_rad[k], int(scene.lights_state[k]))

    def _light(self, dr, scene: SensorScene, xy: np.ndarray, facing: float, state: int) -> None:
        """A pole, a dark head and, on the side facing the traffic it governs, the lit lamp."""
        lamp_xy = xy + 0.25 * np.array([np.cos(facing), np.sin(facing)])
        pts = np.array([[*xy, 0.0], [*xy, LIGHT_POLE_M - 1.0], [*xy, LIGHT_POLE_M], [*lamp_xy, LIGHT_POLE_M - 0.5]])
        cam = self.to_camera(scene, pts)
        if (cam[:, 2] < NEAR_M).any():
            return
        uv = self.project(cam)
        depth = float(cam[0, 2])
        dr.line([tuple(uv[0]), tuple(uv[1])], fill=self._fade(np.array([70, 70, 70]), depth), width=1)
        half = max(0.2 * self.f_px / depth, 0.5)
        dr.rectangle([uv[2, 0] - half, uv[2, 1], uv[2, 0] + half, uv[1, 1]], fill=self._fade(np.array([25, 25, 25]), depth))
        eye = scene.ego_xy - xy
        if np.cos(np.arctan2(eye[1], eye[0]) - facing) > 0.2:  # we see the lamp's side
            r = max(0.15 * self.f_px / depth, 0.6)
            dr.ellipse([uv[3, 0] - r, uv[3, 1] - r, uv[3, 0] + r, uv[3, 1] + r], fill=LIGHT_COLOURS.get(state, (90, 90, 90)))

    def _box(self, dr, scene, base, centre, cam, uv, z1, colour, cam_xy) -> None:
        """One box from its ground corners (4, 2), camera-frame corners (8, 3: bottom then top) and
        their pixels; faces turned away from the camera are skipped."""
        col = np.asarray(colour, float)
        crossing = bool((cam[:, 2] < NEAR_M).any())
        if crossing and (cam[:, 2] < NEAR_M).all():
            return
        for i in range(4):
            j = (i + 1) % 4
            mid = (base[i] + base[j]) / 2
            normal = mid - centre
            if normal @ (cam_xy - mid) <= 0:
                continue  # facing away
            shade = 0.65 + 0.35 * abs(np.cos(np.arctan2(normal[1], normal[0]) - scene.ego_heading_rad))
            self._face(dr, cam, uv, [i, j, j + 4, i + 4], np.minimum(col * shade, 255), crossing)
        if self.cfg.mount_height_m > z1:  # the roof is seen only from above
            self._face(dr, cam, uv, [4, 5, 6, 7], np.minimum(col * 1.1, 255), crossing)

    def _face(self, dr, cam: np.ndarray, uv: np.ndarray, idx: list[int], colour: np.ndarray, clip: bool) -> None:
        if clip:  # the box crosses the near plane: clip this face in the camera frame first
            pts = _clip_near(cam[idx])
            if len(pts) < 3:
                return
            px, depth = self.project(pts), float(pts[:, 2].min())
        else:
            px, depth = uv[idx], float(cam[idx, 2].min())
        dr.polygon(px.ravel().tolist(), fill=self._fade(colour, depth))


def _crop(poly: np.ndarray, centre: np.ndarray, r: float) -> np.ndarray | None:
    """The part of a long lane polygon near the camera (its two edges cut to the points within r)."""
    near = np.linalg.norm(poly - centre, axis=1) < r
    if not near.any():
        return None
    if near.all():
        return poly
    n = len(poly) // 2  # polygons are (left edge, reversed right edge)
    if len(poly) != 2 * n:
        return poly
    left, right = poly[:n], poly[n:][::-1]
    k = np.nonzero(near[:n] | near[n:][::-1])[0]
    lo, hi = max(k.min() - 1, 0), min(k.max() + 2, n)
    return np.concatenate([left[lo:hi], right[lo:hi][::-1]])


def _clip_near(p: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon (camera frame) to z >= NEAR_M, vectorised over the
    edges: edge i (p[i] -> p[i + 1]) emits p[i] if it is in front, then the crossing point if the
    edge crosses the plane."""
    inside = p[:, 2] >= NEAR_M
    if inside.all():
        return p
    if not inside.any():
        return p[:0]
    b = np.roll(p, -1, axis=0)
    cross = inside != np.roll(inside, -1)
    dz = np.where(cross, b[:, 2] - p[:, 2], 1.0)
    t = ((NEAR_M - p[:, 2]) / dz)[:, None]
    emit = np.stack([p, p + t * (b - p)], 1)  # (n, 2, 3)
    return emit[np.column_stack([inside, cross])]
