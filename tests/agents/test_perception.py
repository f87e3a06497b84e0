"""The modular baseline's perception on constructed inputs with known answers."""
import numpy as np
import pytest

from dualdrive.agents.modular.perception import OdometryPose, Tracker, detect_objects, read_traffic_light
from dualdrive.sensors.camera import Camera, CameraConfig
from dualdrive.sensors.lidar import Lidar, LidarConfig
from dualdrive.sensors.scene import BoxClass, Boxes, SensorScene

LIDAR = Lidar(LidarConfig(noise_std_m=0.0))


def _scene(boxes, ego_xy=(0.0, 0.0), **kw) -> SensorScene:
    r = np.array(boxes, float).reshape(-1, 6)  # x, y, heading, length, width, height
    b = Boxes(r[:, :2], r[:, 2], r[:, 3], r[:, 4], r[:, 5], np.zeros((len(r), 2)), np.full(len(r), int(BoxClass.CAR)))
    return SensorScene(np.asarray(ego_xy, float), 0.0, 0.0, 0.0, 0.0, 1, 5.0, 2.0, b, **kw)


def test_a_box_at_a_known_place_is_detected():
    det = detect_objects(LIDAR.scan(_scene([(15.0, 3.0, 0.3, 4.5, 1.9, 1.5)])))
    assert len(det) == 1
    d = det[0]
    assert np.linalg.norm(d.xy - [15.0, 3.0]) < 1.2  # LiDAR sees the near faces only
    dyaw = abs((d.yaw_rad - 0.3 + np.pi / 2) % np.pi - np.pi / 2)
    assert dyaw < np.deg2rad(15) and 1.3 < d.height_m <= 1.5 + 1e-6


def test_separate_boxes_separate_detections_and_hidden_ones_none():
    two = detect_objects(LIDAR.scan(_scene([(15.0, 4.0, 0.0, 4.5, 1.9, 1.5), (15.0, -4.0, 0.0, 4.5, 1.9, 1.5)])))
    assert len(two) == 2
    hidden = detect_objects(Lidar(LidarConfig(noise_std_m=0.0, mount_height_m=1.5)).scan(
        _scene([(10.0, 0.0, 0.0, 4.5, 2.5, 3.0), (20.0, 0.0, 0.0, 4.0, 1.8, 1.4)])))
    assert len(hidden) == 1 and hidden[0].xy[0] < 12.0  # the car behind the van is not seen


@pytest.mark.parametrize("lateral_m", [0.5, 3.0])  # ahead in our lane; in the next lane (its side seen sparsely)
def test_a_moving_box_is_tracked_with_its_velocity(lateral_m):
    tracker, pose, ids = Tracker(dt_s=0.1), OdometryPose(), set()
    for k in range(20):
        tracks = tracker.update(detect_objects(LIDAR.scan(_scene([(15.0 + 0.5 * k, lateral_m, 0.0, 4.5, 1.9, 1.5)]))),
                                pose)
        ids |= {t.id for t in tracks}
    assert len(tracks) == 1 and len(ids) == 1  # one identity throughout
    assert tracks[0].velocity == pytest.approx([5.0, 0.0], abs=0.7)
    assert np.all(np.linalg.eigvalsh(tracks[0].covariance) > 0)


def test_a_parked_car_stays_put_while_the_ego_drives_past():
    tracker, pose = Tracker(dt_s=0.1), OdometryPose()
    for k in range(20):
        ego_x = 1.0 * k  # 10 m/s
        pts = LIDAR.scan(_scene([(30.0, 4.0, 0.0, 4.5, 1.9, 1.5)], ego_xy=(ego_x, 0.0)))
        if k:
            pose.advance(10.0, 0.0, 0.1)
        tracks = tracker.update(detect_objects(pts), pose)
    assert len(tracks) == 1 and np.linalg.norm(tracks[0].velocity) < 1.0


@pytest.mark.parametrize("state", [0, 1, 2])
def test_the_traffic_light_state_is_read_from_the_camera(state):
    s = _scene([], lights_xy=np.array([[20.0, 2.0]]), lights_heading_rad=np.array([np.pi]),
               lights_state=np.array([state], np.int8))
    assert read_traffic_light(Camera(CameraConfig()).render(s)) == state
    assert read_traffic_light(Camera(CameraConfig()).render(_scene([]))) is None


def test_average_precision_on_a_known_ranking():
    from dualdrive.agents.modular.perception_eval import average_precision
    # ranked hits T, F, T with 2 truths: precision 1, 1/2, 2/3 (made monotone: 1, 2/3, 2/3)
    ap = average_precision(np.array([3.0, 2.0, 1.0]), np.array([True, False, True]), 2)
    assert ap == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert average_precision(np.array([1.0]), np.array([True]), 4) == pytest.approx(0.25)


def test_eval_perception_reports_detection_tracking_and_lights(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path
    out = tmp_path / "p.json"
    r = subprocess.run([str(Path(sys.executable).parent / "dualdrive"), "eval-perception", "--suite", "urban",
                        "--seeds", "0:1", "--frames", "40", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["frames_scored"] == 20 and res["ground_truth_objects"] > 0
    assert 0.0 <= res["ap_4.0m"] <= 1.0 and res["ap_0.5m"] <= res["ap_4.0m"]
    assert {"mota", "idf1", "id_switches", "light_accuracy"} <= set(res)


def test_the_spot_finder_is_scored_against_the_lots_free_spots():
    """The spot log counts a bay offered on a free spot as right and one on a taken spot as wrong,
    and recall over the free spots the ego came near."""
    from types import SimpleNamespace

    from dualdrive.agents.modular.parking import Bay
    from dualdrive.agents.modular.perception import OdometryPose
    from dualdrive.agents.modular.perception_eval import _SpotLog
    spots = [SimpleNamespace(id=i, center_xy=np.array([2.7 * i, 6.75])) for i in range(4)]
    world = SimpleNamespace(map=SimpleNamespace(spots=spots), layout=SimpleNamespace(occupied_spots={1, 3}, start_spot=-1),
                            ego_xy=np.array([2.7, 0.0]), ego_heading=0.0)
    log = _SpotLog(world)
    pose = OdometryPose(np.array([2.7, 0.0]), 0.0)  # odometry agrees with the world here
    log.add([Bay(np.array([0.2, 6.75]), -np.pi / 2, 0.0), Bay(np.array([2.7, 6.9]), -np.pi / 2, 0.0)], pose)
    log.add([Bay(np.array([0.25, 6.75]), -np.pi / 2, 0.0)], pose)  # the same bay again
    out = {"offered": 0, "offered_free": 0, "passed_free": 0, "found_free": 0, "centre_errors_m": []}
    log.finish(out)
    assert out["offered"] == 2 and out["offered_free"] == 1  # spot 0 is free, spot 1 taken
    assert out["passed_free"] == 2 and out["found_free"] == 1  # spots 0 and 2 free and within 8 m
    assert out["centre_errors_m"] == [pytest.approx(0.2)]


def test_radar_doppler_gives_a_new_track_its_velocity_at_once():
    """A car 20 m ahead driving away at 10 m/s, the ego at 4 m/s: LiDAR alone needs several frames to
    see the car's speed; the radar's radial velocity (6 m/s relative) gives it from the first update."""
    from dualdrive.agents.modular.perception import Detection, OdometryPose, Tracker
    def run(radar: bool) -> float:
        tr, pose = Tracker(dt_s=0.1), OdometryPose()
        for k in range(3):
            if k:
                pose.advance(4.0, 0.0, 0.1)
            car_x = 20.0 + 10.0 * 0.1 * k
            tracks = tr.update([Detection(np.array([car_x - pose.xy[0], 0.0]), 4.5, 1.9, 0.0, 1.5, 80)], pose)
            if radar:
                tr.fuse_radar(np.array([[car_x - pose.xy[0] - 2.25, 0.0, 6.0, 10.0]]), pose, 4.0)
        return float(tr.tracks[0].velocity[0])
    assert abs(run(radar=True) - 10.0) < 0.5
    assert abs(run(radar=False) - 10.0) > 1.0
    tr = Tracker()
    assert tr.fuse_radar(np.array([[10.0, 0.0, 1.0, 5.0]]), OdometryPose(), 0.0) == 0  # no tracks: nothing to update
