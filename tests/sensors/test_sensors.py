"""Sensor geometry against ground truth, occlusion, faults, configs and the wrapper on stock envs."""
import gymnasium as gym
import highway_env  # noqa: F401
import numpy as np
import pytest

from dualdrive.sensors.camera import BOX_COLOURS, Camera, CameraConfig
from dualdrive.sensors.lidar import Lidar, LidarConfig, SensorConfigError, bev_histogram
from dualdrive.sensors.radar import Radar, RadarConfig
from dualdrive.sensors.scene import BoxClass, Boxes, SensorScene
from dualdrive.sensors.suite import SensorSuite, SensorSuiteConfig
from dualdrive.world.env import ENV_IDS


def _scene(boxes=(), vel=None, heading=0.0, speed=0.0, **kw) -> SensorScene:
    r = np.array(boxes, float).reshape(-1, 6)  # x, y, heading, length, width, height
    v = np.zeros((len(r), 2)) if vel is None else np.asarray(vel, float)
    b = Boxes(r[:, :2], r[:, 2], r[:, 3], r[:, 4], r[:, 5], v, np.full(len(r), int(BoxClass.CAR)))
    return SensorScene(np.zeros(2), heading, speed, 0.0, 0.0, 1, 5.0, 2.0, b, **kw)


# -- camera --------------------------------------------------------------------------------
def test_camera_projects_known_points():
    cfg = CameraConfig(width_px=200, height_px=100, fov_deg=90.0, mount_x_m=0.0, mount_height_m=1.5, pitch_deg=0.0)
    cam = Camera(cfg)
    s = _scene()
    pts = np.array([[10.0, 0.0, 1.5], [10.0, 10.0, 1.5], [10.0, -10.0, 1.5], [10.0, 0.0, 0.0]])
    uv = cam.project(cam.to_camera(s, pts))
    assert uv[0] == pytest.approx([100.0, 50.0])  # straight ahead at the camera's height: the centre
    assert uv[1] == pytest.approx([0.0, 50.0])  # 45 degrees left: the left edge (90 degree field of view)
    assert uv[2] == pytest.approx([200.0, 50.0])
    assert uv[3] == pytest.approx([100.0, 50.0 + 100.0 * 1.5 / 10.0])  # the ground, f = 100 px


def test_a_vehicle_at_a_known_pose_lands_on_the_right_pixels():
    cfg = CameraConfig(width_px=192, height_px=96, mount_x_m=0.0, pitch_deg=0.0)
    cam = Camera(cfg)
    img = cam.render(_scene([(15.0, -3.0, 0.0, 4.5, 1.9, 1.5)]))
    # the box's rear face centre (x = 12.75, y = -3, z = 0.75) projects here
    u, v = cam.project(cam.to_camera(_scene(), np.array([[12.75, -3.0, 0.75]])))[0]
    px = img[int(v), int(u)].astype(int)
    car = np.array(BOX_COLOURS[int(BoxClass.CAR)])
    assert np.abs(px - car * 1.0).max() < 80 and px[2] > px[0]  # car-blue, shaded and faded a little
    assert not (np.abs(img[int(v), 192 - int(u)].astype(int) - px).max() < 10)  # nothing mirrored on the left


def test_traffic_light_colours_are_visible():
    def img(state: int) -> np.ndarray:
        s = _scene(lights_xy=np.array([[20.0, 2.0]]), lights_heading_rad=np.array([np.pi]),
                   lights_state=np.array([state], np.int8))
        return Camera(CameraConfig(width_px=384, height_px=192)).render(s).astype(int)

    red = lambda im: ((im[..., 0] > 200) & (im[..., 1] < 80) & (im[..., 2] < 80)).sum()  # noqa: E731
    green = lambda im: ((im[..., 1] > 200) & (im[..., 0] < 100) & (im[..., 2] < 120)).sum()  # noqa: E731
    assert red(img(0)) > 0 and green(img(0)) == 0
    assert green(img(2)) > 0 and red(img(2)) == 0


# -- LiDAR ---------------------------------------------------------------------------------
def test_lidar_range_to_a_known_box_is_exact():
    lid = Lidar(LidarConfig(noise_std_m=0.0))
    pts = lid.scan(_scene([(10.0, 0.0, 0.0, 4.0, 2.0, 1.5)]))
    ahead = pts[(np.abs(pts[:, 1]) < 1e-6) & (pts[:, 2] > 0.05)]
    face = ahead[ahead[:, 2] < 1.5 - 1e-3]
    assert len(face) > 5 and np.allclose(face[:, 0], 8.0)  # the box's rear face
    roof = ahead[ahead[:, 2] >= 1.5 - 1e-3]  # beams from above land on the roof, at its height
    assert np.all((roof[:, 0] >= 8.0) & (roof[:, 0] <= 12.0)) and np.allclose(roof[:, 2], 1.5, atol=1e-3)
    noisy = Lidar(LidarConfig(noise_std_m=0.05)).scan(_scene([(10.0, 0.0, 0.0, 4.0, 2.0, 1.5)]), np.random.default_rng(0))
    ahead = noisy[(np.abs(noisy[:, 1]) < 0.01) & (noisy[:, 2] > 0.05) & (noisy[:, 2] < 1.3)]
    assert len(ahead) > 5 and np.abs(ahead[:, 0] - 8.0).max() < 0.3  # within a few sigma


def test_lidar_occlusion_a_box_behind_a_box_is_not_hit():
    lid = Lidar(LidarConfig(noise_std_m=0.0, mount_height_m=1.5))
    pts = lid.scan(_scene([(10.0, 0.0, 0.0, 4.0, 2.0, 2.5), (20.0, 0.0, 0.0, 4.0, 2.0, 2.0)]))
    behind = pts[(pts[:, 0] > 17.0) & (pts[:, 0] < 23.0) & (np.abs(pts[:, 1]) < 1.0) & (pts[:, 2] > 0.05)]
    assert len(behind) == 0
    alone = lid.scan(_scene([(20.0, 0.0, 0.0, 4.0, 2.0, 2.0)]))
    assert ((alone[:, 0] > 17.0) & (np.abs(alone[:, 1]) < 1.0) & (alone[:, 2] > 0.05)).sum() > 0


def test_bev_histogram_shape_and_split():
    pts = np.array([[5.0, 0.0, 0.0, 0.1], [5.0, 0.0, 1.0, 0.5]], np.float32)
    h = bev_histogram(pts)
    assert h.shape == (2, 256, 256) and h[0].sum() > 0 and h[1].sum() > 0


# -- radar ---------------------------------------------------------------------------------
def test_radar_sees_unoccluded_targets_with_doppler():
    s = _scene([(10.0, 0.0, 0.0, 4.0, 2.0, 1.5), (30.0, 0.0, 0.0, 4.0, 2.0, 1.5), (20.0, 6.0, 0.0, 4.0, 2.0, 1.5)],
               vel=[(5.0, 0.0), (0.0, 0.0), (15.0, 0.0)], speed=10.0)
    r = Radar(RadarConfig()).measure(s)
    assert len(r) == 2  # the car at 30 m hides behind the one at 10 m
    assert r[0, 0] == pytest.approx(8.0) and r[0, 2] == pytest.approx(-5.0)  # closing at 5 m/s
    assert r[1, 2] > 0  # the faster car beside pulls away


# -- configs, faults, the wrapper -----------------------------------------------------------
@pytest.mark.parametrize("make, field", [(lambda: CameraConfig(width_px=0), "width_px"),
                                         (lambda: CameraConfig(fov_deg=180.0), "fov_deg"),
                                         (lambda: LidarConfig(range_m=-1.0), "range_m"),
                                         (lambda: LidarConfig(beams=0), "beams"),
                                         (lambda: RadarConfig(fov_deg=0.0), "fov_deg"),
                                         (lambda: SensorSuiteConfig(frame_dropout=2.0), "frame_dropout")])
def test_bad_sensor_config_names_the_field(make, field):
    with pytest.raises(SensorConfigError, match=field):
        make()


@pytest.mark.parametrize("env_id", ["highway-v0", "intersection-v0", "parking-v0", ENV_IDS["urban"]])
def test_wrapper_observation_matches_its_space(env_id):
    env = SensorSuite(gym.make(env_id, disable_env_checker=True))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert obs["lidar_valid"][0] == 1 and obs["lidar_num_points"][0] > 1000
    img = obs["camera_front_rgb"]
    assert img.shape == (96, 192, 3) and img.std() > 5  # a picture, not a blank


def test_faults_are_flagged_not_silent():
    env = SensorSuite(gym.make(ENV_IDS["highway"], disable_env_checker=True),
                      SensorSuiteConfig(frame_dropout=1.0))
    obs, _ = env.reset(seed=0)
    assert obs["lidar_valid"][0] == 0 and obs["lidar_num_points"][0] == 0
    assert obs["radar_valid"][0] == 0 and obs["camera_front_valid"][0] == 0
    env = SensorSuite(gym.make(ENV_IDS["highway"], disable_env_checker=True), SensorSuiteConfig(camera_blackout=1.0))
    obs, _ = env.reset(seed=0)
    assert obs["camera_front_valid"][0] == 0 and obs["lidar_valid"][0] == 1
    lost = SensorSuite(gym.make(ENV_IDS["highway"], disable_env_checker=True),
                       SensorSuiteConfig(lidar=LidarConfig(point_loss=0.5)))
    full = SensorSuite(gym.make(ENV_IDS["highway"], disable_env_checker=True))
    n_lost = lost.reset(seed=0)[0]["lidar_num_points"][0]
    n_full = full.reset(seed=0)[0]["lidar_num_points"][0]
    assert 0.3 * n_full < n_lost < 0.7 * n_full


def test_same_seed_same_sensor_noise():
    a = SensorSuite(gym.make(ENV_IDS["urban"], disable_env_checker=True)).reset(seed=4)[0]
    b = SensorSuite(gym.make(ENV_IDS["urban"], disable_env_checker=True)).reset(seed=4)[0]
    assert np.array_equal(a["lidar_points_m"], b["lidar_points_m"]) and np.array_equal(a["radar_returns"], b["radar_returns"])


def test_sensors_command_writes_a_panel(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    exe = str(Path(sys.executable).parent / "dualdrive")
    out = tmp_path / "panel.png"
    r = subprocess.run([exe, "sensors", "--scenario", "urban", "--seed", "3", "--steps", "5", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 10_000
    r = subprocess.run([exe, "sensors", "--env", "nope-v0", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "unknown env id" in r.stderr and "Traceback" not in r.stderr


def test_camera_pixel_noise_is_seeded():
    cfg = SensorSuiteConfig(cameras=(CameraConfig(noise_std=8.0),))
    a = SensorSuite(gym.make(ENV_IDS["highway"], disable_env_checker=True), cfg).reset(seed=1)[0]["camera_front_rgb"]
    b = SensorSuite(gym.make(ENV_IDS["highway"], disable_env_checker=True), cfg).reset(seed=1)[0]["camera_front_rgb"]
    clean = SensorSuite(gym.make(ENV_IDS["highway"], disable_env_checker=True)).reset(seed=1)[0]["camera_front_rgb"]
    assert np.array_equal(a, b) and 4.0 < np.abs(a.astype(int) - clean.astype(int)).mean() < 10.0


def test_bench_reports_costs_and_ratios(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path
    out = tmp_path / "bench.json"
    r = subprocess.run([str(Path(sys.executable).parent / "dualdrive"), "bench", "--frames", "5", "--steps", "20",
                        "--skip-eval", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["sensors"]["actors_in_scene"] == 50 and res["machine"]["cpus"] >= 1
    assert all(res["sensors"][k] > 0 for k in ("camera_96x192_ms", "lidar_32_beams_ms", "radar_ms"))
    assert res["ratios"]["sim_vs_highway_env"] == pytest.approx(
        res["sim"]["dualdrive_steps_per_s"] / res["sim"]["highway_env_steps_per_s"])
    assert res["scaling"]["vehicles"] == [10, 50, 100, 200, 400] and len(res["scaling"]["ms_per_tick"]) == 5
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert res["closed_loop"]["agent"] == "idle" and res["closed_loop_e2e"]["agent"] == "e2e"
    assert res["closed_loop"]["steps_per_s"] > 0 and res["closed_loop_e2e"]["steps_per_s"] > 0
    d = res["dual"]
    assert d["s2_ms_mean"] > 0 and d["s1_ms_mean_alone"] > 0
    assert res["ratios"]["s1_with_s2_vs_alone"] == pytest.approx(d["s1_ms_mean_with_s2"] / d["s1_ms_mean_alone"])
    assert d["s1_ms_mean_with_s2_process"] > 0 and d["paced_ticks"] > 0
    assert d["dual_process_tick_vs_s1"] == pytest.approx(d["tick_ms_mean_dual_process"] / d["tick_ms_mean_s1"])


def test_unseeded_resets_draw_new_noise():
    env = SensorSuite(gym.make(ENV_IDS["highway"], disable_env_checker=True))
    env.reset(seed=1)
    a = env.reset()[0]["lidar_points_m"]
    b = env.reset()[0]["lidar_points_m"]
    assert not np.array_equal(a, b)


def test_pedestrians_waiting_for_the_ego_are_not_moving():
    from dualdrive.sensors.scene import scene_from_world
    from dualdrive.world.scenarios import ScenarioConfig
    from dualdrive.world.world import World
    w = World(ScenarioConfig(family="urban", pedestrian_density=3.0), 3)
    p = w.traffic.ped
    p.state[:] = 1
    w.traffic.ped_halted[:] = True
    peds = scene_from_world(w).boxes.cls == int(BoxClass.PEDESTRIAN)
    assert peds.any() and np.all(scene_from_world(w).boxes.velocity_mps[peds] == 0.0)
    w.traffic.ped_halted[:] = False
    assert np.any(scene_from_world(w).boxes.velocity_mps[peds] != 0.0)


def test_near_plane_clip_keeps_the_part_in_front():
    from dualdrive.sensors.camera import NEAR_M, _clip_near
    # a square on the ground (camera frame: x right, z forward) from z = -1 to z = 3
    sq = np.array([[-1.0, 0, -1], [1, 0, -1], [1, 0, 3], [-1, 0, 3]])
    out = _clip_near(sq)
    assert out.shape == (4, 3) and np.all(out[:, 2] >= NEAR_M - 1e-12)
    assert np.allclose(out, [[1, 0, NEAR_M], [1, 0, 3], [-1, 0, 3], [-1, 0, NEAR_M]])
    assert len(_clip_near(sq - [0, 0, 10])) == 0 and np.array_equal(_clip_near(sq + [0, 0, 5]), sq + [0, 0, 5])
    # a triangle with one corner in front: that corner and the two crossings
    tri = np.array([[0.0, 0, 2], [1, 0, -2], [-1, 0, -2]])
    assert np.allclose(_clip_near(tri), [[0, 0, 2], [(2 - NEAR_M) / 4, 0, NEAR_M], [-(2 - NEAR_M) / 4, 0, NEAR_M]])


def test_a_stock_env_gets_a_navigation_route_along_the_egos_lane():
    env = SensorSuite(gym.make("highway-v0", disable_env_checker=True))
    obs, _ = env.reset(seed=0)
    route = obs["route_xy_ego_m"]
    assert route.shape == (10, 2)
    np.testing.assert_allclose(route[:, 0], 8.0 * np.arange(1, 11), atol=0.5)  # 8 m apart, straight ahead
    assert np.abs(route[:, 1]).max() < 0.5 and obs["command"][0] == 0  # on the lane's centre: FOLLOW_LANE
    assert obs["speed_limit_mps"][0] > 0 and env.observation_space.contains(obs)
    # intersection-v0 plans the ego a turn: the route follows it off the straight line
    env = SensorSuite(gym.make("intersection-v0", disable_env_checker=True))
    route = env.reset(seed=0)[0]["route_xy_ego_m"]
    assert np.abs(route[-1, 1]) > 10.0
    assert np.all(np.linalg.norm(np.diff(route, axis=0), axis=1) < 9.0)  # no jumps between the lanes it joins
