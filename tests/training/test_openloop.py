"""Open-loop scoring: constructed episodes with known answers, then the command on a real tiny dataset."""
import json
import subprocess
import sys

import numpy as np
import pytest

from dualdrive.training.openloop import _score_episode, _Sums, plan_collides


def _episode(n: int = 6, frame_dt_s: float = 1.0, speed_mps: float = 10.0, t_s: np.ndarray | None = None) -> dict:
    """Ego drives straight along +x at ``speed_mps``; the expert plans exactly that; no actors.
    Frames every ``frame_dt_s``, or at the times ``t_s`` (uneven, as informative sampling records)."""
    t_s = np.arange(n) * frame_dt_s if t_s is None else np.asarray(t_s, np.float64)
    n = len(t_s)
    t = np.arange(8) * 0.5 + 0.5
    plan = np.zeros((n, 8, 3))
    plan[:, :, 0] = speed_mps * t
    pose = np.zeros((n, 3))
    pose[:, 0] = speed_mps * t_s
    return {"plan": plan, "boxes": np.zeros((n, 4, 7)), "num_boxes": np.zeros(n, int), "pose": pose,
            "t_s": t_s.astype(np.float32)}


def test_plan_collides_with_an_overlapping_box_only():
    box_ahead = np.array([[10.0, 0.0, 0.0, 4.5, 2.0]])
    assert plan_collides(np.array([10.0, 0.5, 0.0]), box_ahead)
    assert not plan_collides(np.array([10.0, 4.0, 0.0]), box_ahead)  # a lane to the left
    assert not plan_collides(np.array([0.0, 0.0, 0.0]), np.zeros((0, 5)))


def test_perfect_plan_scores_zero_and_a_lagging_plan_its_lag():
    ep = _episode()
    s = _Sums()
    _score_episode(s, ep["plan"].copy(), ep)
    r = s.result()
    assert r["l2_1s_m"] == 0 and r["l2_3s_m"] == 0 and r["collision_avg"] == 0
    assert r["collision_1s_scored"] == 5 and r["collision_3s_scored"] == 3  # no future frame past the end
    s = _Sums()
    stopped = np.zeros_like(ep["plan"])
    _score_episode(s, stopped, ep)
    assert s.result()["l2_1s_m"] == pytest.approx(10.0) and s.result()["l2_3s_m"] == pytest.approx(30.0)


def test_collision_uses_the_future_frame_moved_into_the_planning_frame():
    ep = _episode()
    # a car standing still in the world at x = 30 m: frame f holds it in f's ego frame (x = 30 - 10 f)
    for f in range(len(ep["pose"])):
        ep["boxes"][f, 0] = [30.0 - 10.0 * f, 0.0, 0.0, 4.5, 2.0, 0.0, 0]
        ep["num_boxes"][f] = 1
    s = _Sums()
    _score_episode(s, ep["plan"].copy(), ep)
    r = s.result()
    # frame 0's plan reaches x = 30 m at 3 s (a hit); frame 1's at 40 m (past it): 1 of 3 scored frames
    assert r["collision_3s"] == pytest.approx(1 / 3)
    assert r["expert_plan_collision_3s"] == pytest.approx(1 / 3)  # the same plan: the same hits
    assert r["collision_1s"] == pytest.approx(1 / 5)  # frame 2's pose at x = 30 m, 1 s on


def test_horizons_between_frames_are_not_scored_for_collisions():
    ep = _episode(frame_dt_s=0.4)  # frame stride 4: 1 s and 3 s fall between frames, 2 s does not
    s = _Sums()
    _score_episode(s, ep["plan"].copy(), ep)
    r = s.result()
    assert r["collision_1s"] is None and r["collision_3s"] is None and r["collision_2s_scored"] == 1


def test_unevenly_spaced_frames_are_scored_where_a_frame_lies_at_the_horizon():
    # frames at 0, 0.2, 0.4, 1.4, 2.4, 7.4 s: 1 s on from 0.4 (1.4) and from 1.4 (2.4); 2 s on from 0.4 (2.4)
    ep = _episode(t_s=[0.0, 0.2, 0.4, 1.4, 2.4, 7.4])
    s = _Sums()
    _score_episode(s, ep["plan"].copy(), ep)
    r = s.result()
    assert r["collision_1s_scored"] == 2 and r["collision_2s_scored"] == 1 and r["collision_3s"] is None


def test_eval_openloop_command_on_a_collected_dataset(tiny_demos, tiny_checkpoint, tmp_path):
    out = tmp_path / "ol.json"
    r = subprocess.run([sys.executable, "-m", "dualdrive.cli", "eval-openloop", "--agent", "e2e", "--data",
                        str(tiny_demos), "--checkpoint", str(tiny_checkpoint), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["episodes"] == 2 and res["frames"] > 20
    # the untrained model's plan head starts at zero: it plans to stand still, so its L2 is the expert's distance
    assert 0 < res["l2_1s_m"] < res["l2_2s_m"] < res["l2_3s_m"]
    assert res["expert_plan_collision_1s"] == 0.0
    assert "L2 at 1/2/3 s" in r.stdout


def test_eval_openloop_rejects_other_agents_and_bad_dirs(tmp_path, tiny_checkpoint):
    r = subprocess.run([sys.executable, "-m", "dualdrive.cli", "eval-openloop", "--agent", "expert", "--data", "x"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "only 'e2e'" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "dualdrive.cli", "eval-openloop", "--data", str(tmp_path / "none"),
                        "--checkpoint", str(tiny_checkpoint)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "does not exist" in r.stderr and len(r.stderr.strip().splitlines()) == 1
