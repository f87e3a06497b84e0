"""Human logs as training data: what a frame holds, the masked labels, resuming, and a training step on it."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dualdrive.agents.e2e.config import E2EConfig
from dualdrive.cli import app
from dualdrive.data.dataset import DemoDataset
from dualdrive.training.config import TrainConfig
from dualdrive.training.loop import run_training

# a tiny model (as the training tests' tiny_model.py): the test is about the data, not the model
TINY = E2EConfig(camera_channels=(8, 16, 16, 16), lidar_channels=(8, 16, 16, 16), d_model=32, n_layers=1, ff_dim=64,
                 bev_decoder_channels=8)


@pytest.fixture(scope="module")
def human_dir(straight_road, tmp_path_factory):
    out = tmp_path_factory.mktemp("human") / "ds"
    r = CliRunner().invoke(app, ["export-human", "--scenarios", str(straight_road.parent), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_frames_are_labelled_with_what_the_human_did_next(human_dir):
    ds = DemoDataset(human_dir)
    # 6 s tracks, 4 s of future needed, a frame every 0.5 s: t = 0, 0.5, 1, 1.5, 2 s for each of the 4 cars
    assert len(ds) == 20 and len(ds.episodes) == 4
    key, frame = ds.locate(0)
    assert key.endswith("_10") and frame == 0
    item = ds[0]  # car 10 at 10 m/s straight on: 5 m every 0.5 s
    np.testing.assert_allclose(item["plan"][:, 0].numpy(), 5.0 * np.arange(1, 9), atol=1e-4)
    np.testing.assert_allclose(item["plan"][:, 1:].numpy(), 0.0, atol=1e-4)
    assert item["speed"].item() == pytest.approx(10.0) and item["gear"].item() == 0
    # no privileged labels in a human log: the auxiliary targets are masked
    assert item["light"].item() == -1 and (item["bev_semantic"] == -1).all()
    assert item["valid_camera"].item() == 1.0 and item["lidar_bev"].sum() > 0
    accel_key = [k for k in ds.episodes if k.endswith("_40")][0]  # 5 m/s + 1 m/s^2: x = 5t + t^2/2 ahead
    i = ds.episodes.index(accel_key) * 5
    np.testing.assert_allclose(ds[i]["plan"][:, 0].numpy(), [2.625, 5.5, 8.625, 12.0, 15.625, 19.5, 23.625, 28.0],
                               atol=1e-3)


def test_a_rerun_resumes_and_the_card_says_human(human_dir, straight_road):
    r = CliRunner().invoke(app, ["export-human", "--scenarios", str(straight_road.parent), "--out", str(human_dir)])
    assert r.exit_code == 0 and "0 episodes (0 frames) written, 4 already there" in r.output
    r = CliRunner().invoke(app, ["export-human", "--scenarios", str(human_dir.parent.parent / "nowhere"),
                                 "--out", str(human_dir)])
    assert r.exit_code == 2 and "not a folder" in r.output
    card = json.loads((human_dir / "card.json").read_text())
    assert card["driver"] == "human" and card["frames"] == 20


def test_training_masks_the_missing_labels(human_dir, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=4, num_workers=0, warmup_steps=0, device="cpu", log_every_steps=1)
    res = run_training(DemoDataset(human_dir), None, tmp_path / "run", TINY, cfg)
    assert res.epochs_done == 1 and res.last_checkpoint.is_file()
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    steps = [r for r in rows if r.get("plan_loss") not in (None, "")]
    assert steps and all(np.isfinite(float(r["loss"])) and float(r["plan_loss"]) > 0 for r in steps)
    # nothing labelled for the BEV and light heads: their losses are exactly 0, not NaN
    assert all(float(r["bev_loss"]) == 0.0 and float(r["light_loss"]) == 0.0 for r in steps)
