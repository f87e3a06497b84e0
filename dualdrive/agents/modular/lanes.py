"""Lane and drivable-area estimation for the modular baseline, from the front camera.

What the sensors offer: every LiDAR ground return has one intensity (asphalt, paint and grass alike)
and a kerb is paint, not height, so LiDAR cannot see lanes or the road's edge; it sees obstacles,
which the tracker already has. The camera shows the road: grey asphalt, green grass, white lane
markings (dashed between lanes of one direction; solid at the centre line, the median and the road's
edge) and light grey kerb stones beyond the edge.

Once per tick:
1. every pixel below the horizon is back-projected onto the flat ground with the camera's intrinsics
   and mounting (``CameraConfig``: calibration, not ground truth), once, into a look-up table;
2. each pixel is classed by colour: paint, kerb, asphalt, grass or something else (a car, the sky);
3. the ground points go into the reference path's Frenet frame (arc length s, offset d, left +).
   The route runs along its lane's centre, so a lane marking is a line of constant d;
4. over a band ahead, 1 m cells along s and 0.1 m bins across give per-bin counts: cells with paint
   near that d, cells where the ground there was seen at all, kerb cells, drivable cells;
5. :class:`LaneTracker` sums the counts with exponential forgetting. The path is fixed in the
   odometry frame, so the counts stay put while the ego moves across them. Lines are the peaks of
   the paint counts; a line painted in under ``SOLID_COVERAGE`` of the cells where its ground was seen
   is dashed (3 m of every 6 m). Lanes of the route's direction are the gaps between lines reached
   from the route's lane across dashed lines only, on drivable ground.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import maximum_filter1d, uniform_filter1d
from scipy.spatial import cKDTree

from dualdrive.sensors.camera import CameraConfig

# the band of ground used: near its start the camera's view begins (3.4 m ahead of the centre with
# the default mounting); beyond its end a pixel row spans more than 2 m of road
BAND_START_M, BAND_END_M = 3.0, 22.0
BAND_HALF_WIDTH_M = 12.0  # three lanes either side
CELL_S_M = 1.0  # a dash is 3 m: 1 m cells resolve dash and gap
BIN_D_M = 0.1
PAINT_HALO_BINS = 3  # a paint pixel counts for a line within 0.3 m (a far pixel spans 0.2 m)
SEEN_HALO_BINS = 1
# pixel colours (0-255; the camera paints flat colours, faded towards fog with depth)
PAINT_MIN = 185  # every channel of white paint, faded over BAND_END_M
KERB_MEAN = (145, 185)  # the kerb's light grey (asphalt is 72, a stalled car's grey at most 140)
GREY_SPREAD = 20  # paint, kerb and asphalt are grey: channels within this of each other
ASPHALT_MAX = 110
GRASS_MARGIN = 20  # green above red and blue
# the tracker
FORGET = 0.9  # per tick at 10 Hz: evidence fades with a time constant of about 1 s
MIN_CELLS = 1.0  # a line shows in at least this many cells a frame, on average
MIN_COVERAGE = 0.2  # ... painted in at least this share of the cells where its ground was seen
SOLID_COVERAGE = 0.75  # a dashed line is painted in half of them
LINE_SEPARATION_M = 0.8  # two peaks closer than this are one line
LANE_WIDTH_M = (2.6, 6.0)  # a gap between lines this wide is a lane (motorway 3.75 m, city 3.5 m)
DEFAULT_LANE_WIDTH_M = 3.5
WIDTH_TOLERANCE_M = 0.7  # the next lane's far line lies one lane width on, within this
DRIVABLE_SHARE = 0.5  # ground seen at a d is drivable when at least this share of it is asphalt or paint
MIN_GROUND_CELLS = 0.5  # per frame, on average: less, and the ground at that d counts as not seen


class PixelClass:
    OTHER, PAINT, KERB, ASPHALT, GRASS = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class GroundTable:
    """Where each pixel below the horizon meets the ground, in the ego frame (x forward, y left)."""

    rows: np.ndarray  # (N,) pixel row of each ground pixel
    cols: np.ndarray  # (N,)
    xy_ego: np.ndarray  # (N, 2)


def ground_table(cfg: CameraConfig, max_range_m: float = BAND_END_M + 5.0) -> GroundTable:
    """Back-project every pixel onto the flat ground, as the camera projects (pinhole, pitch, yaw,
    mounting). The camera's drawing fills pixel (u, v) with what projects into [u, u + 1) x [v, v + 1),
    so the ray through the pixel's centre (u + 0.5, v + 0.5) is the one back-projected."""
    f = (cfg.width_px / 2) / np.tan(np.deg2rad(cfg.fov_deg) / 2)
    v, u = np.mgrid[0:cfg.height_px, 0:cfg.width_px]
    rx, ry = (u + 0.5 - cfg.width_px / 2) / f, -(v + 0.5 - cfg.height_px / 2) / f  # camera frame: right, up, forward = 1
    p = np.deg2rad(cfg.pitch_deg)
    fwd = ry * np.sin(p) + np.cos(p)
    up = ry * np.cos(p) - np.sin(p)
    left = -rx
    t = cfg.mount_height_m / np.maximum(-up, 1e-9)  # rays at or above the horizon are dropped below
    x_cam, y_cam = t * fwd, t * left
    yaw = np.deg2rad(cfg.yaw_deg)
    x = cfg.mount_x_m * np.cos(yaw) + x_cam * np.cos(yaw) - y_cam * np.sin(yaw)
    y = cfg.mount_x_m * np.sin(yaw) + x_cam * np.sin(yaw) + y_cam * np.cos(yaw)
    ok = (up < 0) & (t * np.hypot(fwd, left) < max_range_m)
    return GroundTable(v[ok], u[ok], np.column_stack([x[ok], y[ok]]))


def classify_pixels(rgb: np.ndarray) -> np.ndarray:
    """(H, W) PixelClass of an RGB image by colour."""
    c = rgb.astype(np.int16)
    lo, hi, mean = c.min(-1), c.max(-1), c.mean(-1)
    grey = hi - lo <= GREY_SPREAD
    out = np.full(rgb.shape[:2], PixelClass.OTHER, np.int8)
    out[grey & (hi <= ASPHALT_MAX)] = PixelClass.ASPHALT
    out[grey & (mean >= KERB_MEAN[0]) & (mean <= KERB_MEAN[1])] = PixelClass.KERB
    out[grey & (lo >= PAINT_MIN)] = PixelClass.PAINT
    g = c[..., 1]
    out[(g > c[..., 0] + GRASS_MARGIN) & (g > c[..., 2] + GRASS_MARGIN)] = PixelClass.GRASS
    return out


def frenet(path: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arc length and offset (left +) of points near a densely sampled path, by the nearest vertex and
    its tangent (exact enough for the 1 m steps of the reference path and the gentle curves of roads)."""
    seg = np.diff(path, axis=0)
    s_pts = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=1))])
    tan = np.gradient(path, axis=0)
    tan /= np.maximum(np.linalg.norm(tan, axis=1, keepdims=True), 1e-9)
    _, k = cKDTree(path).query(xy)
    rel = xy - path[k]
    return s_pts[k] + (rel * tan[k]).sum(1), tan[k, 0] * rel[:, 1] - tan[k, 1] * rel[:, 0]


N_BINS = int(round(2 * BAND_HALF_WIDTH_M / BIN_D_M)) + 1
D_BINS_M = np.linspace(-BAND_HALF_WIDTH_M, BAND_HALF_WIDTH_M, N_BINS)


@dataclass
class LaneEvidence:
    """One frame's (or the tracker's summed) counts per lateral bin ``D_BINS_M`` of the path frame."""

    paint: np.ndarray  # cells with a paint pixel in the bin itself (where lines are)
    paint_near: np.ndarray  # cells with paint within PAINT_HALO_BINS (how much of a line is painted)
    seen: np.ndarray  # cells where the ground within SEEN_HALO_BINS, or paint near, was seen
    kerb: np.ndarray
    drivable: np.ndarray  # cells with asphalt or paint in the bin
    ground: np.ndarray  # cells with any ground class in the bin
    frames: float = 1.0

    @classmethod
    def zeros(cls) -> "LaneEvidence":
        z = lambda: np.zeros(N_BINS)  # noqa: E731
        return cls(z(), z(), z(), z(), z(), z(), 0.0)

    def scaled(self, k: float) -> "LaneEvidence":
        return LaneEvidence(*(getattr(self, f) * k for f in _FIELDS), self.frames * k)

    def plus(self, o: "LaneEvidence") -> "LaneEvidence":
        return LaneEvidence(*(getattr(self, f) + getattr(o, f) for f in _FIELDS), self.frames + o.frames)


_FIELDS = ("paint", "paint_near", "seen", "kerb", "drivable", "ground")


def lane_evidence(classes: np.ndarray, table: GroundTable, s_d: tuple[np.ndarray, np.ndarray],
                  s_ego: float) -> LaneEvidence:
    """One frame's counts: ``classes`` from :func:`classify_pixels`, ``s_d`` the Frenet coordinates
    of the table's ground points, ``s_ego`` the ego's arc length."""
    s, d = s_d
    cls = classes[table.rows, table.cols]
    ahead = s - s_ego
    keep = (ahead >= BAND_START_M) & (ahead < BAND_END_M) & (np.abs(d) <= BAND_HALF_WIDTH_M)
    si = ((ahead[keep] - BAND_START_M) / CELL_S_M).astype(int)
    dj = np.clip(np.rint((d[keep] + BAND_HALF_WIDTH_M) / BIN_D_M).astype(int), 0, N_BINS - 1)
    cls = cls[keep]
    n_s = int(np.ceil((BAND_END_M - BAND_START_M) / CELL_S_M))

    def grid(mask: np.ndarray) -> np.ndarray:
        g = np.zeros((n_s, N_BINS), bool)
        g[si[mask], dj[mask]] = True
        return g

    paint = grid(cls == PixelClass.PAINT)
    kerb = grid(cls == PixelClass.KERB)
    drivable = grid((cls == PixelClass.PAINT) | (cls == PixelClass.ASPHALT))
    ground = grid(cls != PixelClass.OTHER)
    paint_near = maximum_filter1d(paint, 2 * PAINT_HALO_BINS + 1, axis=1)
    seen = maximum_filter1d(ground, 2 * SEEN_HALO_BINS + 1, axis=1) | paint_near
    return LaneEvidence(paint.sum(0).astype(float), paint_near.sum(0).astype(float), seen.sum(0).astype(float),
                        maximum_filter1d(kerb, 2 * PAINT_HALO_BINS + 1, axis=1).sum(0).astype(float),
                        drivable.sum(0).astype(float), ground.sum(0).astype(float))


@dataclass(frozen=True)
class LaneEstimate:
    """The lanes beside the reference path (offsets d from it, left +, metres). ``centres_d_m`` are the
    centres of the lanes of the route's direction, the route's own lane among them (d near 0); empty
    when the lanes are not known (no paint: a junction, a lot, the camera blind)."""

    lines_d_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lines_solid: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    kerbs_d_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lane_width_m: float = DEFAULT_LANE_WIDTH_M
    centres_d_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    drivable_d_m: tuple[float, float] = (0.0, 0.0)  # (right edge, left edge) of the drivable ground seen

    @property
    def valid(self) -> bool:
        return len(self.centres_d_m) > 0

    def lane_index(self, d_m: float) -> int | None:
        """The index into ``centres_d_m`` of the lane a point at offset d lies in (None: none known)."""
        if not self.valid:
            return None
        k = int(np.argmin(np.abs(self.centres_d_m - d_m)))
        return k if abs(self.centres_d_m[k] - d_m) <= self.lane_width_m / 2 + 0.3 else None

    def lanes_beside(self, d_m: float) -> tuple[int, int]:
        """How many lanes of the route's direction lie left and right of the lane at offset d."""
        k = self.lane_index(d_m)
        if k is None:
            return 0, 0
        return len(self.centres_d_m) - 1 - k, k

    def boundaries(self, d_m: float) -> tuple[float, float] | None:
        """(right, left) boundary offsets of the lane at offset d."""
        k = self.lane_index(d_m)
        if k is None:
            return None
        c, h = float(self.centres_d_m[k]), self.lane_width_m / 2
        return c - h, c + h


class LaneTracker:
    """Lane evidence summed over frames with exponential forgetting, and the lanes read from it."""

    def __init__(self, forget: float = FORGET) -> None:
        self.forget = forget
        self.evidence = LaneEvidence.zeros()
        self.estimate = LaneEstimate()

    def reset(self) -> None:
        self.evidence = LaneEvidence.zeros()
        self.estimate = LaneEstimate()

    def update(self, frame: LaneEvidence | None) -> LaneEstimate:
        """Add a frame's evidence (None: no camera frame; the evidence fades all the same)."""
        self.evidence = self.evidence.scaled(self.forget)
        if frame is not None:
            self.evidence = self.evidence.plus(frame)
        self.estimate = read_lanes(self.evidence)
        return self.estimate


def read_lanes(ev: LaneEvidence) -> LaneEstimate:
    """Lines, kerbs, lanes and the drivable extent from summed evidence."""
    if ev.frames < 1e-6:
        return LaneEstimate()
    n = max(ev.frames, 1.0)
    lines_d, solid = _lines(ev, n)
    kerbs_d = _peaks(ev.kerb / n, MIN_CELLS)
    drivable = _drivable(ev, n)
    width, centres = _lanes(lines_d, solid, drivable)
    edges = _drivable_extent(drivable)
    return LaneEstimate(lines_d, solid, kerbs_d, width, centres, edges)


def _lines(ev: LaneEvidence, n: float) -> tuple[np.ndarray, np.ndarray]:
    strength = uniform_filter1d(ev.paint / n, 3)
    coverage = ev.paint_near / np.maximum(ev.seen, 1e-9)
    cand = _peaks(strength, MIN_CELLS)
    out_d, out_solid = [], []
    for d in cand:
        j = int(np.rint((d + BAND_HALF_WIDTH_M) / BIN_D_M))
        if coverage[j] < MIN_COVERAGE:
            continue
        # the line's position: the paint's mean offset round the peak
        lo, hi = max(j - 3, 0), min(j + 4, N_BINS)
        w = ev.paint[lo:hi]
        out_d.append(float((D_BINS_M[lo:hi] * w).sum() / max(w.sum(), 1e-9)))
        out_solid.append(bool(coverage[j] >= SOLID_COVERAGE))
    return np.array(out_d), np.array(out_solid, bool)


def _peaks(strength: np.ndarray, min_value: float) -> np.ndarray:
    """Offsets of local maxima at least ``min_value`` high, the stronger of two close ones kept."""
    sep = int(round(LINE_SEPARATION_M / BIN_D_M))
    top = maximum_filter1d(strength, 2 * sep + 1)
    idx = np.nonzero((strength >= min_value) & (strength >= top - 1e-12))[0]
    keep: list[int] = []
    for j in idx[np.argsort(-strength[idx], kind="stable")]:
        if all(abs(j - k) > sep for k in keep):
            keep.append(int(j))
    return np.sort(D_BINS_M[keep]) if keep else np.zeros(0)


def _drivable(ev: LaneEvidence, n: float) -> np.ndarray:
    """Per bin: 1 drivable, 0 not, nan not seen."""
    ground = uniform_filter1d(ev.ground, 5)
    share = uniform_filter1d(ev.drivable, 5) / np.maximum(ground, 1e-9)
    return np.where(ground / n >= MIN_GROUND_CELLS, (share >= DRIVABLE_SHARE).astype(float), np.nan)


def _drivable_at(drivable: np.ndarray, d: float) -> bool | None:
    j = int(np.rint((d + BAND_HALF_WIDTH_M) / BIN_D_M))
    if not 0 <= j < N_BINS or np.isnan(drivable[j]):
        return None
    return bool(drivable[j])


def _drivable_extent(drivable: np.ndarray) -> tuple[float, float]:
    """Right and left edges of the drivable ground round the path (unseen bins do not end it)."""
    j0 = N_BINS // 2
    not_drv = np.nan_to_num(drivable, nan=1.0) < 0.5
    left = np.nonzero(not_drv[j0:])[0]
    right = np.nonzero(not_drv[: j0 + 1][::-1])[0]
    lo = -BAND_HALF_WIDTH_M if not len(right) else float(D_BINS_M[j0 - right[0]])
    hi = BAND_HALF_WIDTH_M if not len(left) else float(D_BINS_M[j0 + left[0]])
    return lo, hi


def _lanes(lines_d: np.ndarray, solid: np.ndarray, drivable: np.ndarray) -> tuple[float, np.ndarray]:
    """The lane width and the centres of the lanes of the route's direction: the route's lane lies
    between the lines either side of d = 0; from it, a dashed line leads into the next lane."""
    left, right = lines_d[lines_d > 0], lines_d[lines_d <= 0]
    if not len(left) or not len(right):
        return DEFAULT_LANE_WIDTH_M, np.zeros(0)
    kl, kr = int(np.nonzero(lines_d > 0)[0][0]), int(np.nonzero(lines_d <= 0)[0][-1])
    width = float(lines_d[kl] - lines_d[kr])
    if not LANE_WIDTH_M[0] <= width <= LANE_WIDTH_M[1]:
        return DEFAULT_LANE_WIDTH_M, np.zeros(0)
    centres = [0.5 * (lines_d[kl] + lines_d[kr])]
    for k, step in ((kl, 1), (kr, -1)):
        edge = float(lines_d[k])
        while not solid[k]:  # a dashed line: a lane of our direction beyond it
            centre = edge + step * width / 2
            if _drivable_at(drivable, centre) is False:
                break
            if step > 0:
                centres.append(centre)
            else:
                centres.insert(0, centre)
            far = np.nonzero(np.abs(lines_d - (edge + step * width)) <= WIDTH_TOLERANCE_M)[0]
            if not len(far):
                break  # its far line not seen (too far out): the lane is there, what lies beyond is not known
            k = int(far[0])
            edge = float(lines_d[k])
    return width, np.array(centres)
