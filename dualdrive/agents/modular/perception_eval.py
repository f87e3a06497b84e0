"""``dualdrive eval-perception``: the modular baseline's perception against ground truth.

The privileged expert drives (so the scenes are the ones a good driver sees) while perception runs
on the sensor suite's output. Per frame, the ground truth is every road user whose footprint holds
at least one LiDAR return (what nuScenes calls a visible annotation), within ``RANGE_M``.
- Detection: nuScenes-style average precision, matching detections to ground truth by centre
  distance at 0.5, 1, 2 and 4 m (detections ranked by their number of points); mAP is the mean.
- Tracking: MOTA, IDF1 and identity switches (``motmetrics``), matching within 2 m.
- Traffic lights: the share of frames with a light facing us ahead where the camera reading is right.
- Free spots (where the route says PARK): the spot finder runs as the modular agent runs it; a bay
  it offers is right when it lies within ``SPOT_MATCH_M`` of a spot that is really free. Precision
  is over the distinct bays offered, recall over the free spots the ego passed within
  ``SPOT_PASSED_M`` (what LiDAR could see).
- Lanes (the camera's lane estimate, kept as the agent keeps it), on frames where the ego is on a
  painted road lane: how often the ego's lane is found, the error of the ego's offset from its lane's
  centre and of the lane width, how often the count of lanes of our direction on each side is right,
  and precision and recall of "a lane of our direction on the left (right)".
"""
from __future__ import annotations

import gymnasium as gym
import motmetrics as mm
import numpy as np

from dualdrive.agents.expert.agent import ExpertAgent
from dualdrive.agents.follower import TrajectoryFollower
from dualdrive.agents.modular.lanes import LaneEstimate, LaneTracker, classify_pixels, frenet, ground_table, lane_evidence
from dualdrive.agents.modular.parking import SpotFinder, standing_detections
from dualdrive.agents.modular.perception import OdometryPose, Tracker, detect_objects, read_traffic_light
from dualdrive.agents.modular.planning import ReferencePath, project
from dualdrive.sensors.camera import CameraConfig
from dualdrive.sensors.scene import BoxClass, SensorScene
from dualdrive.sensors.suite import SensorSuite, SensorSuiteConfig
from dualdrive.world.env import ENV_IDS
from dualdrive.world.geometry import world_to_ego
from dualdrive.world.map import LaneKind
from dualdrive.world.route import Command
from dualdrive.world.scenarios import ScenarioConfig

RANGE_M = 50.0
AP_THRESHOLDS_M = (0.5, 1.0, 2.0, 4.0)
TRACK_MATCH_M = 2.0
LIGHT_AHEAD_M = 60.0
SPOT_MATCH_M = 1.0  # an offered bay this close to a spot's centre is that spot
SPOT_PASSED_M = 8.0  # a free spot the ego came this close to could have been seen


def visible_ground_truth(scene: SensorScene, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ego-frame centres and indices of the road users (not cones) that LiDAR points fall on."""
    b = scene.boxes
    if len(b) == 0 or len(points) == 0:
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    c = world_to_ego(b.xy, scene.ego_xy, scene.ego_heading_rad)
    rel_h = b.heading_rad - scene.ego_heading_rad
    keep = []
    above = points[points[:, 2] > 0.3, :2]
    for k in np.where((np.linalg.norm(c, axis=1) < RANGE_M) & (b.cls != int(BoxClass.CONE)))[0]:
        d = above - c[k]
        lx = d[:, 0] * np.cos(rel_h[k]) + d[:, 1] * np.sin(rel_h[k])
        ly = -d[:, 0] * np.sin(rel_h[k]) + d[:, 1] * np.cos(rel_h[k])
        if np.any((np.abs(lx) <= b.length_m[k] / 2 + 0.2) & (np.abs(ly) <= b.width_m[k] / 2 + 0.2)):
            keep.append(k)
    keep = np.array(keep, np.int64)
    return c[keep].reshape(-1, 2), keep


def average_precision(scores: np.ndarray, matched: np.ndarray, n_gt: int) -> float:
    """Area under the precision-recall curve (precision made monotone), nuScenes-style."""
    if n_gt == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(matched[order])
    fp = np.cumsum(~matched[order])
    recall = tp / n_gt
    precision = tp / np.maximum(tp + fp, 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def _match(det: np.ndarray, gt: np.ndarray, thr: float) -> np.ndarray:
    """Greedy matching by centre distance, detections in the order given: which ones hit a truth."""
    hit = np.zeros(len(det), bool)
    free = np.ones(len(gt), bool)
    for i, p in enumerate(det):
        if not free.any():
            break
        d = np.where(free, np.linalg.norm(gt - p, axis=1), np.inf)
        j = int(np.argmin(d))
        if d[j] <= thr:
            hit[i], free[j] = True, False
    return hit


def evaluate_perception(scenarios: list[tuple[str, ScenarioConfig]], seeds: range, frames: int = 200,
                        stride: int = 2) -> dict:
    scores, hits = [], {t: [] for t in AP_THRESHOLDS_M}
    n_gt = n_frames = 0
    light_ok = light_n = 0
    mh = mm.metrics.create()
    accs, names = [], []
    spots = {"offered": 0, "offered_free": 0, "passed_free": 0, "found_free": 0, "centre_errors_m": []}
    lanes = _LaneScore()
    camera = CameraConfig()  # the suite's front camera, as the agent assumes it
    table = ground_table(camera)
    for name, cfg in scenarios:
        for seed in seeds:
            env = SensorSuite(gym.make(ENV_IDS[cfg.family], config=cfg, disable_env_checker=True),
                              SensorSuiteConfig())
            obs, info = env.reset(seed=seed)
            world = env.unwrapped.world
            expert, follower = ExpertAgent(), TrajectoryFollower()
            expert.reset(info)
            tracker, pose = Tracker(dt_s=cfg.dt_s), OdometryPose()
            finder, ref, spot_log = SpotFinder(), ReferencePath(), _SpotLog(world)
            lane_tracker = LaneTracker()
            acc = mm.MOTAccumulator(auto_id=True)
            for k in range(frames):
                scene = env.scene()
                pts = obs["lidar_points_m"][: int(obs["lidar_num_points"][0])]
                if k:
                    pose.advance(float(obs["speed_mps"][0]), float(obs["yaw_rate_rps"][0]), cfg.dt_s)
                dets = detect_objects(pts)
                tracks = tracker.update(dets, pose)
                if int(obs["radar_valid"][0]):  # fused as the agent fuses it
                    tracker.fuse_radar(obs["radar_returns"][: int(obs["radar_num_returns"][0])], pose,
                                       float(obs["speed_mps"][0]))
                path = ref.update(pose, obs["route_xy_ego_m"])  # every tick, as the agent keeps it
                s_ego, d_ego = (float(v[0]) for v in project(path, pose.xy))
                frame = None
                if int(obs[f"camera_{camera.name}_valid"][0]):
                    frame = lane_evidence(classify_pixels(obs[f"camera_{camera.name}_rgb"]), table,
                                          frenet(path, pose.to_odom(table.xy_ego)), s_ego)
                lane_est = lane_tracker.update(frame)
                parking = Command.PARK in (int(obs["route_command"][0]), int(obs["command"][0]))
                if parking:
                    finder.add_cars(standing_detections(dets, tracks, pose), pose)
                    finder.observe(path, pose, pts)
                if k % stride == 0:
                    n_frames += 1
                    gt, gt_ids = visible_ground_truth(scene, pts)
                    n_gt += len(gt)
                    order = np.argsort([-d.n_points for d in dets], kind="stable")
                    dxy = np.array([dets[i].xy for i in order]).reshape(-1, 2)
                    scores += [float(dets[i].n_points) for i in order]
                    for t in AP_THRESHOLDS_M:
                        hits[t] += _match(dxy, gt, t).tolist()
                    txy = np.array([pose.to_ego(t.xy) for t in tracks]).reshape(-1, 2)
                    acc.update(gt_ids.tolist(), [t.id for t in tracks],
                               mm.distances.norm2squared_matrix(gt, txy, max_d2=TRACK_MATCH_M**2))
                    if parking:
                        spot_log.add(finder.free_bays(path, float(project(path, pose.xy)[0][0])), pose)
                    lanes.add(lane_est, d_ego, world)
                    truth = _light_ahead(scene)
                    if truth is not None:
                        light_n += 1
                        light_ok += int(read_traffic_light(obs["camera_front_rgb"]) == truth)
                d = expert.act(obs)
                obs, _, te, tr, _ = env.step(follower.update(d, world.ego_speed).to_action())
                if te or tr:
                    break
            spot_log.finish(spots)
            accs.append(acc)
            names.append(f"{name}/{seed}")
    s = np.array(scores)
    ap = {f"ap_{t}m": average_precision(s, np.array(hits[t], bool), n_gt) for t in AP_THRESHOLDS_M}
    summary = mh.compute_many(accs, names=names, metrics=["mota", "idf1", "num_switches"], generate_overall=True)
    overall = summary.loc["OVERALL"]
    return {"frames_scored": n_frames, "ground_truth_objects": n_gt,
            "detections": len(s), **ap, "map": float(np.nanmean(list(ap.values()))),
            "mota": float(overall["mota"]), "idf1": float(overall["idf1"]), "id_switches": int(overall["num_switches"]),
            "light_frames": light_n, "light_accuracy": light_ok / light_n if light_n else None,
            "spots_offered": spots["offered"], "spots_free_passed": spots["passed_free"],
            "spot_precision": spots["offered_free"] / spots["offered"] if spots["offered"] else None,
            "spot_recall": spots["found_free"] / spots["passed_free"] if spots["passed_free"] else None,
            "spot_centre_error_m": float(np.mean(spots["centre_errors_m"])) if spots["centre_errors_m"] else None,
            **lanes.summary()}


class _SpotLog:
    """The bays the spot finder offers over one episode, in world coordinates, against the lot's truth."""

    def __init__(self, world) -> None:
        self.world = world
        self.offers: list[np.ndarray] = []  # distinct offered bay centres (world)
        self.closest: dict[int, float] = {}  # free spot -> the ego's closest approach while searching

    def add(self, bays: list, pose: OdometryPose) -> None:
        w = self.world
        c, s = np.cos(w.ego_heading - pose.heading_rad), np.sin(w.ego_heading - pose.heading_rad)
        rot = np.array([[c, -s], [s, c]])
        for b in bays:  # odometry -> world through this frame's pose pair (odometry drift counts as error)
            xy = w.ego_xy + rot @ (b.xy - pose.xy)
            if all(np.linalg.norm(xy - o) > SPOT_MATCH_M for o in self.offers):
                self.offers.append(xy)
        for sid in self._free():
            d = float(np.linalg.norm(w.map.spots[sid].center_xy - w.ego_xy))
            self.closest[sid] = min(d, self.closest.get(sid, np.inf))

    def _free(self) -> list[int]:
        lay = self.world.layout
        return [sp.id for sp in self.world.map.spots if sp.id not in lay.occupied_spots and sp.id != lay.start_spot]

    def finish(self, out: dict) -> None:
        free = self._free()
        centres = np.array([self.world.map.spots[sid].center_xy for sid in free]).reshape(-1, 2)
        found = set()
        for xy in self.offers:
            out["offered"] += 1
            if len(centres):
                k = int(np.argmin(np.linalg.norm(centres - xy, axis=1)))
                d = float(np.linalg.norm(centres[k] - xy))
                if d <= SPOT_MATCH_M:
                    out["offered_free"] += 1
                    out["centre_errors_m"].append(d)
                    found.add(free[k])
        passed = {sid for sid, d in self.closest.items() if d <= SPOT_PASSED_M}
        out["passed_free"] += len(passed)
        out["found_free"] += len(passed & found)


class _LaneScore:
    """The lane estimate against the map, on frames where the ego is on a painted road lane."""

    def __init__(self) -> None:
        self.frames = self.found = self.counts_right = 0
        self.offset_errors_m: list[float] = []
        self.width_errors_m: list[float] = []
        self.side = {side: {"tp": 0, "fp": 0, "fn": 0} for side in ("left", "right")}

    def add(self, est: LaneEstimate, d_ego_m: float, world) -> None:
        m = world.map
        lane, _, lat = m.locate(world.ego_xy, world.ego_heading)
        if lane < 0 or m.lanes[lane].kind not in (LaneKind.ROAD, LaneKind.RAMP) or abs(lat) > m.width[lane] / 2:
            return
        self.frames += 1
        truth = (_chain(m.left, lane), _chain(m.right, lane))
        k = est.lane_index(d_ego_m)
        guess = est.lanes_beside(d_ego_m)
        if k is not None:
            self.found += 1
            self.offset_errors_m.append(abs((d_ego_m - float(est.centres_d_m[k])) - lat))
            self.width_errors_m.append(abs(est.lane_width_m - float(m.width[lane])))
        self.counts_right += int(guess == truth)
        for side, g, t in (("left", guess[0], truth[0]), ("right", guess[1], truth[1])):
            c = self.side[side]
            c["tp"] += int(g > 0 and t > 0)
            c["fp"] += int(g > 0 and t == 0)
            c["fn"] += int(g == 0 and t > 0)

    def summary(self) -> dict:
        ratio = lambda a, b: a / b if b else None  # noqa: E731
        out = {"lane_frames": self.frames, "lane_found": ratio(self.found, self.frames),
               "lane_offset_error_m": float(np.mean(self.offset_errors_m)) if self.offset_errors_m else None,
               "lane_offset_error_p95_m": float(np.percentile(self.offset_errors_m, 95)) if self.offset_errors_m else None,
               "lane_width_error_m": float(np.mean(self.width_errors_m)) if self.width_errors_m else None,
               "lane_count_accuracy": ratio(self.counts_right, self.frames)}
        for side, c in self.side.items():
            out[f"lane_{side}_precision"] = ratio(c["tp"], c["tp"] + c["fp"])
            out[f"lane_{side}_recall"] = ratio(c["tp"], c["tp"] + c["fn"])
        return out


def _chain(neighbour: np.ndarray, lane: int) -> int:
    """How many lanes of the same direction lie beyond ``lane`` along a neighbour array."""
    n, cur = 0, int(neighbour[lane])
    while cur >= 0:
        n, cur = n + 1, int(neighbour[cur])
    return n


def _light_ahead(scene: SensorScene) -> int | None:
    """The state of the nearest light ahead of us that faces us (the one that governs our lane)."""
    if len(scene.lights_xy) == 0:
        return None
    rel = world_to_ego(scene.lights_xy, scene.ego_xy, scene.ego_heading_rad)
    facing = np.cos(scene.lights_heading_rad - scene.ego_heading_rad - np.pi) > 0.9
    ok = facing & (rel[:, 0] > 5.0) & (rel[:, 0] < LIGHT_AHEAD_M) & (np.abs(rel[:, 1]) < 8.0)
    if not ok.any():
        return None
    k = int(np.argmin(np.where(ok, rel[:, 0], np.inf)))
    return int(scene.lights_state[k])
