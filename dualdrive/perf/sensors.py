"""Sensor cost per frame on a busy scene: camera, LiDAR, radar and the scene extraction itself."""
from __future__ import annotations

import time

import numpy as np

from dualdrive.sensors.camera import Camera
from dualdrive.sensors.lidar import Lidar
from dualdrive.sensors.radar import Radar
from dualdrive.sensors.scene import CAR_HEIGHT_M, TRUCK_HEIGHT_M, Boxes, BoxClass, SensorScene, scene_from_world
from dualdrive.world.map import LaneKind
from dualdrive.world.scenarios import ScenarioConfig
from dualdrive.world.world import World


def _median_ms(fn, n: int) -> float:
    fn()  # warm-up (caches, first-call allocations)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times))


def busy_scene(n_actors: int = 50, seed: int = 0) -> SensorScene:
    """A motorway frame with ``n_actors`` vehicles (a few trucks) on the lanes within 100 m of the ego:
    a denser scene than the traffic model keeps, so sensor costs are measured at the target load."""
    w = World(ScenarioConfig(family="highway", traffic_density=0.0), seed)
    scene = scene_from_world(w)
    m, rng = w.map, np.random.default_rng(seed)
    lanes = [ln.id for ln in m.lanes if ln.kind == LaneKind.ROAD and ln.length_m > 100]
    near = [ln for ln in lanes if np.linalg.norm(m.lane_points(ln) - w.ego_xy, axis=1).min() < 10]
    lane = rng.choice(near, n_actors)
    _, s0, _ = m.locate(w.ego_xy)
    s = np.clip(s0 + rng.uniform(-100, 100, n_actors), 0, m.length[lane])
    xy, h = m.pose(lane, s)
    truck = rng.random(n_actors) < 0.15
    v = rng.uniform(15, 30, n_actors)
    scene.boxes = Boxes(xy, h, np.where(truck, 10.0, 4.6), np.where(truck, 2.5, 1.9),
                        np.where(truck, TRUCK_HEIGHT_M, CAR_HEIGHT_M), v[:, None] * np.column_stack([np.cos(h), np.sin(h)]),
                        np.where(truck, int(BoxClass.TRUCK), int(BoxClass.CAR)).astype(np.int64))
    return scene


def bench_sensors(frames: int = 100, seed: int = 0) -> dict:
    scene = busy_scene(50, seed)
    w = World(ScenarioConfig(family="urban"), seed)
    cam, lidar, radar = Camera(), Lidar(), Radar()
    rng = np.random.default_rng(0)
    return {
        "actors_in_scene": len(scene.boxes),
        "frames": frames,
        "camera_96x192_ms": _median_ms(lambda: cam.render(scene), frames),
        "lidar_32_beams_ms": _median_ms(lambda: lidar.scan(scene, rng), frames),
        "lidar_points": int(len(lidar.scan(scene, rng))),
        "radar_ms": _median_ms(lambda: radar.measure(scene, rng), frames),
        "scene_extraction_urban_ms": _median_ms(lambda: scene_from_world(w), frames),
    }
