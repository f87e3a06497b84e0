"""The reader's contract (keys, dtypes, shapes, values against the store), DataLoader workers, the
episode split, and clear errors for every way a dataset directory can be wrong."""
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from dualdrive.data.dataset import DemoDataset, split_episodes
from dualdrive.data.format import DatasetError, store_path
from dualdrive.data.lead import lead_label

CONTRACT = {
    "camera": (torch.uint8, (3, 96, 192)), "lidar_bev": (torch.float32, (2, 128, 128)),
    "speed": (torch.float32, (1,)), "accel": (torch.float32, (1,)), "command": (torch.int64, ()), "route": (torch.float32, (10, 2)),
    "plan": (torch.float32, (8, 3)), "gear": (torch.int64, ()), "bev_semantic": (torch.int64, (64, 64)),
    "light": (torch.int64, ()), "valid_camera": (torch.float32, ()), "valid_lidar": (torch.float32, ()),
    "guidance": (torch.int64, ()), "radar": (torch.float32, (32, 4)), "radar_count": (torch.int64, ()),
    "lead": (torch.float32, (3,)), "history_valid": (torch.float32, ()), "speed_past": (torch.float32, (1,)),
    "radar_past": (torch.float32, (32, 4)), "radar_past_count": (torch.int64, ()), "route_past": (torch.float32, (10, 2)),
}


def test_items_follow_the_contract_and_match_the_store(collected):
    out = collected[0]
    ds = DemoDataset(out)
    assert len(ds) == 60 and ds.episodes == ["hw_4", "park_5"]
    g = zarr.open_group(str(store_path(out)), mode="r")["park_5"]
    for i in (0, 29, 30, 45, 59):
        item = ds[i]
        assert set(item) == set(CONTRACT)
        for k, (dtype, shape) in CONTRACT.items():
            assert item[k].dtype == dtype and tuple(item[k].shape) == shape, k
        assert 0.0 <= item["lidar_bev"].min() and item["lidar_bev"].max() <= 1.0
        assert 0 <= int(item["command"]) <= 9 and int(item["gear"]) in (0, 1) and -1 <= int(item["light"]) <= 3
        assert item["valid_camera"] == 1.0 and item["valid_lidar"] == 1.0
    t = 15
    item = ds[30 + t]  # frame 15 of the second episode
    assert ds.locate(30 + t) == ("park_5", t)
    np.testing.assert_array_equal(item["camera"].numpy(), g["camera_front_rgb"][t].transpose(2, 0, 1))
    np.testing.assert_allclose(item["lidar_bev"].numpy(), g["lidar_bev"][t] / 5.0)
    np.testing.assert_array_equal(item["plan"].numpy(), g["plan"][t])
    np.testing.assert_array_equal(item["bev_semantic"].numpy(), g["bev_semantic"][t])
    assert float(item["accel"][0]) == float(g["accel_mps2"][t])
    np.testing.assert_array_equal(item["lead"].numpy(), lead_label(g["boxes"][t], int(g["num_boxes"][t]),
                                                                   g["route_xy_ego_m"][t], float(g["speed_mps"][t])))
    assert float(item["lead"][0]) in (0.0, 1.0)
    assert float(item["speed"][0]) == float(g["speed_mps"][t]) and int(item["command"]) == int(g["command"][t])
    assert int(item["gear"]) == int(g["plan_gear"][t] < 0)
    n = int(g["radar_num_returns"][t])
    assert int(item["radar_count"]) == n and g["radar_valid"][t] == 1
    np.testing.assert_array_equal(item["radar"].numpy()[:n], g["radar_returns"][t][:n])
    assert not item["radar"].numpy()[n:].any()
    # the history input: the frame 1 s earlier (5 frames at the collection's 5 Hz), none in the first second
    past = t - 5
    assert g["t_s"][t] - g["t_s"][past] == pytest.approx(1.0, abs=1e-4)
    assert float(item["history_valid"]) == 1.0 and float(item["speed_past"][0]) == float(g["speed_mps"][past])
    np.testing.assert_array_equal(item["route_past"].numpy(), g["route_xy_ego_m"][past])
    m = int(g["radar_num_returns"][past])
    assert int(item["radar_past_count"]) == m
    np.testing.assert_array_equal(item["radar_past"].numpy()[:m], g["radar_returns"][past][:m])
    first = ds[30 + 4]
    assert float(first["history_valid"]) == 0.0 and int(first["radar_past_count"]) == 0
    assert float(first["speed_past"][0]) == float(first["speed"][0]) and not first["radar_past"].any()
    with pytest.raises(IndexError):
        ds[60]


def test_reverse_gear_maps_to_one(collected):
    ds = DemoDataset(collected[0], ["park_5"])
    g = zarr.open_group(str(store_path(collected[0])), mode="r")["park_5"]
    gears = np.array([int(ds[i]["gear"]) for i in range(len(ds))])
    np.testing.assert_array_equal(gears, (g["plan_gear"][:] < 0).astype(int))
    assert gears.sum() > 10  # it reverses out of its spot


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_with_and_without_workers(collected, workers):
    ds = DemoDataset(collected[0])
    dl = DataLoader(ds, batch_size=16, shuffle=False, num_workers=workers)
    batches = list(dl)
    assert sum(len(b["plan"]) for b in batches) == 60
    b = batches[0]
    assert b["camera"].shape == (16, 3, 96, 192) and b["command"].dtype == torch.int64
    np.testing.assert_array_equal(b["plan"][3].numpy(), ds[3]["plan"].numpy())


def test_the_reader_opens_the_store_once_per_process(collected, monkeypatch):
    ds = DemoDataset(collected[0])
    calls = []
    real = zarr.open_group
    monkeypatch.setattr(zarr, "open_group", lambda *a, **k: calls.append(a) or real(*a, **k))
    for i in range(len(ds)):
        ds[i]
    assert len(calls) == 1


def test_split_is_by_episode_and_deterministic(collected):
    out = collected[0]
    train, val = split_episodes(out, 0.5, seed=0)
    assert sorted(train + val) == ["hw_4", "park_5"] and not set(train) & set(val)
    assert (train, val) == split_episodes(out, 0.5, seed=0)
    assert split_episodes(out, 0.0) == (["hw_4", "park_5"], [])
    tr, va = split_episodes(out, 0.1)  # rounds to none per scenario, but two episodes give one to validation
    assert len(va) == 1 and len(tr) == 1
    assert len(DemoDataset(out, train)) + len(DemoDataset(out, val)) == 60


def test_missing_empty_and_foreign_directories(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        DemoDataset(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="not a dualdrive demonstration dataset"):
        DemoDataset(tmp_path / "plain")


def test_wrong_format_version_is_a_clear_error(dataset_copy):
    meta = json.loads((dataset_copy / "dataset.json").read_text())
    meta["version"] = 0
    (dataset_copy / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="format version 0, this dualdrive reads version 1: re-collect"):
        DemoDataset(dataset_copy)
    with pytest.raises(DatasetError, match="format version 0"):
        split_episodes(dataset_copy)


def test_partial_and_damaged_episodes_are_skipped_with_a_warning(dataset_copy):
    sp = store_path(dataset_copy)
    zarr.open_group(str(sp / "park_5"), mode="a").attrs.update({"complete": False})
    with pytest.warns(UserWarning, match="skipping episode 'park_5'.*incomplete"):
        ds = DemoDataset(dataset_copy)
    assert ds.episodes == ["hw_4"] and len(ds) == 30
    with pytest.raises(DatasetError, match="park_5 are not complete episodes"), pytest.warns(UserWarning):
        DemoDataset(dataset_copy, ["park_5"])
    shutil.rmtree(sp / "hw_4" / "lidar_bev")  # complete, but an array is gone
    with pytest.raises(DatasetError, match="has no complete episodes"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DemoDataset(dataset_copy)
    assert any("'hw_4'" in str(w.message) and "missing arrays lidar_bev" in str(w.message) for w in caught)
