import numpy as np

from dualdrive.world.geometry import (box_corners, boxes_overlap, ego_to_world, project_to_polyline, wrap_angle,
                                      world_to_ego)


def test_wrap_angle():
    assert np.isclose(wrap_angle(3 * np.pi / 2), -np.pi / 2)
    assert np.isclose(wrap_angle(-3 * np.pi / 2), np.pi / 2)


def test_frames_round_trip():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(10, 2)) * 20
    ego, h = np.array([3.0, -4.0]), 0.7
    assert np.allclose(ego_to_world(world_to_ego(p, ego, h), ego, h), p)
    # a point straight ahead of the ego is at +x in the ego frame
    ahead = ego + 5 * np.array([np.cos(h), np.sin(h)])
    assert np.allclose(world_to_ego(ahead, ego, h), [5, 0])


def test_box_overlap_separating_axis():
    a = box_corners(np.array([0.0, 0.0]), 0.0, 4.0, 2.0)[0]
    others = box_corners(np.array([[3.9, 0.0], [4.1, 0.0], [0.0, 2.1], [2.5, 2.5]]), np.array([0, 0, 0, np.pi / 4]),
                         np.full(4, 4.0), np.full(4, 2.0))
    # touching-overlap, just apart, just apart sideways, rotated corner reaching in
    assert boxes_overlap(a, others).tolist() == [True, False, False, True]


def test_project_to_polyline():
    pts = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    s, lat, _ = project_to_polyline(pts, np.array([5.0, 1.0]))
    assert np.isclose(s, 5.0) and np.isclose(lat, 1.0)
    s, lat, _ = project_to_polyline(pts, np.array([11.0, 5.0]))
    assert np.isclose(s, 15.0) and np.isclose(lat, -1.0)
