"""Collection on a real local Ray cluster: the store's layout and dtypes, labels that make sense,
DART noise and other drivers labelled by the expert, resuming, the card, and the CLI's errors."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

from dualdrive.agents.base import Plan
from dualdrive.agents.follower import TrajectoryFollower
from dualdrive.data.card import dataset_card
from dualdrive.data.collect import CollectConfig, collect, episode_status
from dualdrive.data.episode import WAIT_STRIDE_FACTOR, CollectJob, RecordSpec, drive_and_record, frame_kind
from dualdrive.data.format import (FORMAT_NAME, FORMAT_VERSION, FRAME_ARRAYS, BevClass, DatasetError, store_path)
from dualdrive.world.route import Command
from dualdrive.world.scenarios import ConfigError, ScenarioConfig


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dualdrive.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_layout_dtypes_and_attrs(collected):
    out, res, _ = collected
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["format"] == FORMAT_NAME and meta["version"] == FORMAT_VERSION
    assert meta["collection"]["agent"] == "expert" and meta["collection"]["frame_stride"] == 2
    root = zarr.open_group(str(store_path(out)), mode="r")
    assert sorted(root.group_keys()) == ["hw_4", "park_5"]
    for key in ("hw_4", "park_5"):
        g = root[key]
        a = dict(g.attrs)
        assert a["complete"] is True and a["format_version"] == FORMAT_VERSION
        assert a["scenario"] == key.split("_")[0] and a["seed"] == int(key.split("_")[1]) and a["driver"] == "expert"
        assert a["dart_noise"] == 0.0 and a["frame_stride"] == 2 and a["steps"] == 60  # 6 s at 10 Hz
        assert a["frames"] == 30 and {"success", "route_completion", "infractions"} <= set(a["summary"])
        for name, spec in FRAME_ARRAYS.items():
            arr = g[name]
            assert arr.dtype == np.dtype(spec.dtype), name
            assert arr.shape == (30, *spec.frame_shape), name
        assert g["camera_front_rgb"].chunks == (1, 96, 192, 3)  # one frame per chunk: random access
        np.testing.assert_allclose(g["t_s"][:], np.arange(30) * 0.2, atol=1e-5)  # every 2nd tick: 5 Hz
        lidar = g["lidar_bev"][:]
        assert lidar.max() == 5 and lidar.min() == 0  # counts, capped
        assert set(np.unique(g["bev_semantic"][:])) <= {int(c) for c in BevClass}
    assert res["run"]["collected"] == 2 and not res["run"]["failed"]


def test_labels_make_sense(collected):
    out = collected[0]
    g = zarr.open_group(str(store_path(out)), mode="r")["hw_4"]
    speed, plan, gear = g["speed_mps"][:], g["plan"][:], g["plan_gear"][:]
    moving = (speed > 1.0) & (gear == 1)
    assert moving.sum() > 20
    assert np.all(plan[moving, 0, 0] > 0.0)  # the first pose is ahead while driving forward
    assert np.all(np.diff(plan[moving, :, 0], axis=1) >= -1e-4)  # and the poses go on forward
    bev = g["bev_semantic"][:]
    assert np.all(np.isin(bev[:, 16, 32], (BevClass.ROAD, BevClass.ROUTE)))  # the ego's cell is drivable
    # and its route is its lane, or the next one while it changes lanes before the route polyline does
    assert np.mean(bev[:, 16, 32] == BevClass.ROUTE) > 0.5
    assert all((row[16, 32 - 5:32 + 6] == BevClass.ROUTE).any() for row in bev)
    assert np.all(g["light_state"][:] == 0)  # no lights on the motorway
    nb = g["num_boxes"][:]
    boxes = g["boxes"][:]
    assert nb.max() > 0 and all(not boxes[t, n:].any() for t, n in enumerate(nb))
    assert np.all(np.linalg.norm(boxes[:, :, :2], axis=2) < 50.0)
    park = zarr.open_group(str(store_path(out)), mode="r")["park_5"]
    assert park["command"][0] == Command.LEAVE_SPOT  # starts in its spot
    backing = (park["plan_gear"][:] == -1) & (park["speed_mps"][:] < -0.5)
    assert backing.sum() > 5 and np.all(park["plan"][:][backing, 0, 0] < 0.0)  # reversing: the plan goes backwards


def test_dart_noise_moves_the_executed_control_while_labels_stay_the_experts():
    cfg = ScenarioConfig(family="highway", max_duration_s=8).to_dict()
    job = CollectJob("hw", 0, cfg)
    clean, _ = drive_and_record(job, RecordSpec(frame_stride=1))
    noisy, attrs = drive_and_record(job, RecordSpec(dart_noise=1.0, frame_stride=1))
    assert attrs["dart_noise"] == 1.0
    np.testing.assert_array_equal(clean["executed_control"], clean["expert_control"])
    moved = np.abs(noisy["executed_control"] - noisy["expert_control"])[:, :2].max(axis=1) > 1e-4
    assert moved.mean() > 0.9
    assert np.abs(noisy["speed_mps"] - clean["speed_mps"]).max() > 0.3  # the noise displaces the car
    # the label is the expert's clean control for the expert's plan at the state the car is in
    f = TrajectoryFollower()
    for t in range(0, len(noisy["t_s"]), 7):
        want = f.update(Plan(noisy["plan"][t], int(noisy["plan_gear"][t])), float(noisy["speed_mps"][t])).to_action()
        np.testing.assert_allclose(noisy["expert_control"][t], want, atol=1e-3)


def test_informative_sampling_records_the_start_often_and_the_standing_rarely():
    """Parking seed 5 reverses out of its spot (decisive frames); urban seed 7 waits at a red light."""
    for family, seed, dur in (("parking", 5, 8), ("urban", 7, 30)):
        d = {"max_duration_s": dur, "start_in_spot": True} if family == "parking" else {"max_duration_s": dur}
        job = CollectJob(family, seed, ScenarioConfig(family=family, **d).to_dict())
        uni, _ = drive_and_record(job, RecordSpec(frame_stride=10))
        inf, attrs = drive_and_record(job, RecordSpec(frame_stride=10, sampling="informative"))
        assert attrs["sampling"] == "informative" and attrs["frame_stride"] == 10
        kinds = [frame_kind(Plan(p, int(g)), float(v)) for p, g, v in zip(inf["plan"], inf["plan_gear"], inf["speed_mps"])]
        gaps = np.diff(inf["t_s"])
        assert gaps.min() >= 0.2 - 1e-4  # never denser than 5 Hz
        for k, gap in zip(kinds[1:], gaps):  # a frame is recorded once its own kind's stride has passed
            assert gap >= {"decisive": 0.2, "drive": 1.0, "wait": 1.0 * WAIT_STRIDE_FACTOR}[k] - 1e-4
        decisive_uni = sum(frame_kind(Plan(p, int(g)), float(v)) == "decisive"
                           for p, g, v in zip(uni["plan"], uni["plan_gear"], uni["speed_mps"]))
        if family == "parking":
            assert kinds.count("decisive") >= 3 * max(decisive_uni, 1)
        else:
            wait_uni = sum(frame_kind(Plan(p, int(g)), float(v)) == "wait"
                           for p, g, v in zip(uni["plan"], uni["plan_gear"], uni["speed_mps"]))
            assert wait_uni >= 3 and kinds.count("wait") <= wait_uni / WAIT_STRIDE_FACTOR + 1


def test_uniform_sampling_is_every_kth_tick():
    job = CollectJob("hw", 0, ScenarioConfig(family="highway", max_duration_s=5).to_dict())
    arrays, attrs = drive_and_record(job, RecordSpec(frame_stride=4))
    np.testing.assert_allclose(np.diff(arrays["t_s"]), 0.4, atol=1e-4)
    assert attrs["sampling"] == "uniform"


def test_another_driver_is_labelled_by_the_expert():
    job = CollectJob("hw", 0, ScenarioConfig(family="highway", max_duration_s=4).to_dict())
    arrays, attrs = drive_and_record(job, RecordSpec(agent="idle"))
    assert attrs["driver"] == "idle" and attrs["labeller"] == "expert"
    np.testing.assert_allclose(arrays["executed_control"][:, :2], [[-1.0, 0.0]] * len(arrays["t_s"]))  # idle brakes
    assert arrays["speed_mps"][-1] < arrays["speed_mps"][0]
    assert np.all(arrays["plan"][:, -1, 0] > 5.0)  # the expert still plans to drive on
    # slowed down by the idle driver, the expert wants to speed up again: its labels are not the driver's
    assert np.all(arrays["expert_control"][-5:, 0] > -1.0)
    assert np.diff(arrays["expert_control"][:, 0]).mean() > 0


def test_resume_rewrites_only_incomplete_episodes(collected, dataset_copy):
    _, _, cfg = collected
    out = dataset_copy
    sp = store_path(out)
    before = zarr.open_group(str(sp), mode="r")["park_5"]["plan"][:]
    keep_mtime = (sp / "hw_4" / "zarr.json").stat().st_mtime_ns
    g = zarr.open_group(str(sp / "park_5"), mode="a")  # as if killed before the flag was written
    g.attrs.update({"complete": False})
    (sp / "park_5" / "plan" / "zarr.json").unlink()  # and mid-way through its arrays
    shutil.copytree(sp / "hw_4", sp / "hw_4.partial-0123")  # and a write killed before its rename
    assert episode_status(out) == ({"hw_4"}, {"park_5", "hw_4.partial-0123"})
    with pytest.warns(UserWarning, match="skipping episode 'park_5'.*incomplete"):
        assert dataset_card(out)["episodes"] == 1  # readers skip it
    res = collect(CollectConfig(out, cfg.suite, seeds=cfg.seeds, workers=1))
    assert [r["key"] for r in res["rows"]] == ["park_5"] and res["run"]["skipped_complete"] == 1
    assert (sp / "hw_4" / "zarr.json").stat().st_mtime_ns == keep_mtime  # the finished one untouched
    assert sorted(p.name for p in sp.iterdir() if p.is_dir()) == ["hw_4", "park_5"]
    np.testing.assert_array_equal(zarr.open_group(str(sp), mode="r")["park_5"]["plan"][:], before)  # deterministic
    again = collect(CollectConfig(out, cfg.suite, seeds=cfg.seeds, workers=1))
    assert again["rows"] == [] and again["run"]["skipped_complete"] == 2
    assert len(json.loads((out / "dataset.json").read_text())["runs"]) == 3


def test_a_killed_collection_resumes(suite_file, tmp_path):
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "dualdrive.cli", "collect", "--suite", str(suite_file), "--episodes", "4",
           "--workers", "1", "--max-duration-s", "4", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(episode_status(out)[0]) < 1:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the collector and its Ray cluster, mid-run
    proc.wait()
    first, _ = episode_status(out)
    assert 1 <= len(first) < 4, "killed too late to test resuming"
    mtimes = {k: (store_path(out) / k / "zarr.json").stat().st_mtime_ns for k in first}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    done, incomplete = episode_status(out)
    assert done == {"hw_0", "park_1", "hw_2", "park_3"} and not incomplete
    assert all((store_path(out) / k / "zarr.json").stat().st_mtime_ns == t for k, t in mtimes.items())
    # (a Ray worker of the killed run may still finish the episode it was on: that one is kept too)
    kept = int(r.stdout.split(" already there")[0].rsplit(" ", 1)[1])
    assert len(first) <= kept < 4


def test_card_numbers_match_the_data(collected):
    out = collected[0]
    card = json.loads((out / "card.json").read_text())
    assert card == dataset_card(out)
    root = zarr.open_group(str(store_path(out)), mode="r")
    groups = [root[k] for k in ("hw_4", "park_5")]
    assert card["episodes"] == 2 and card["frames"] == sum(g["t_s"].shape[0] for g in groups) == 60
    assert card["hours_of_driving"] == pytest.approx(2 * 6.0 / 3600, abs=1e-4)
    cmd = np.concatenate([g["command"][:] for g in groups])
    assert card["command_histogram"] == {c.name: int((cmd == c).sum()) for c in Command}
    assert card["command_histogram"]["LEAVE_SPOT"] > 0
    gear = np.concatenate([g["plan_gear"][:] for g in groups])
    assert card["gear_share"]["reverse"] == pytest.approx((gear < 0).mean(), abs=1e-4) and (gear < 0).any()
    assert card["success_rate"] == np.mean([g.attrs["summary"]["success"] for g in groups])
    bev = np.concatenate([g["bev_semantic"][:] for g in groups]).ravel()
    assert card["bev_class_frequency"]["ROUTE"] == pytest.approx((bev == 2).mean(), abs=1e-4)
    speed = np.concatenate([g["speed_mps"][:] for g in groups])
    assert card["speed_mps_quantiles"]["q50"] == pytest.approx(np.median(speed), abs=1e-3)
    md = (out / "card.md").read_text()
    assert "recorded frames: **60**" in md and "| hw | highway | 1 | 30 |" in md
    r = _cli("dataset-card", str(out))
    assert r.returncode == 0 and "2 episodes, 60 frames" in r.stdout


def test_another_collection_into_the_same_directory_is_refused(collected, dataset_copy):
    with pytest.raises(DatasetError, match="holds another collection .* dart_noise 0.0"):
        collect(CollectConfig(dataset_copy, collected[2].suite, seeds=collected[2].seeds, dart_noise=0.5))


@pytest.mark.parametrize("args, needle", [
    (["--suite", "moon"], "unknown suite 'moon'"),
    (["--seeds", "5:2"], "need A < B"),
    (["--seeds", "4990:5010"], "reaches into the evaluation seeds"),
    (["--episodes", "3", "--seeds", "0:5"], "gives 5 seeds but --episodes asks for 3"),
    (["--dart-noise", "-0.5"], "--dart-noise -0.5 must be >= 0"),
    (["--frame-stride", "0"], "--frame-stride 0 must be at least 1"),
    (["--agent", "nobody"], "unknown agent 'nobody'"),
])
def test_bad_input_is_one_clear_line(args, needle, tmp_path):
    r = _cli("collect", "--out", str(tmp_path / "x"), *args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_an_existing_directory_of_another_format_is_refused(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    (d / "dataset.json").write_text(json.dumps({"format": FORMAT_NAME, "version": 0}))
    r = _cli("collect", "--suite", "highway", "--episodes", "1", "--out", str(d))
    assert r.returncode == 2 and "format version 0, this dualdrive reads version 1" in r.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    r = _cli("collect", "--suite", "highway", "--episodes", "1", "--out", str(other))
    assert r.returncode == 2 and "non-empty directory that is not a dualdrive dataset" in r.stderr
    r = _cli("dataset-card", str(tmp_path / "missing"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_config_validation():
    with pytest.raises(ConfigError, match="--max-duration-s 0.5"):
        CollectConfig(__import__("pathlib").Path("x"), max_duration_s=0.5).validate()
