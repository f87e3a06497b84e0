"""Reading CommonRoad scenarios: the pack, its split, a constructed scene, and files that cannot be used."""
from __future__ import annotations

import numpy as np
import pytest

from dualdrive.human.pack import HumanDataError, folder_files, split_files, unpacked_pack
from dualdrive.human.scene import load_scene
from dualdrive.sensors.scene import LineStyle


def test_constructed_scene_reads_back_exactly(straight_road):
    s = load_scene(straight_road)
    assert s.log.dt_s == pytest.approx(0.1)
    assert s.log.xy.shape == (61, 4, 2) and s.log.valid.all()
    assert list(s.log.ids) == [10, 20, 30, 40]
    np.testing.assert_allclose(s.log.xy[20, 3], [60.0 + 10.0 + 2.0, 3.5])  # 5 m/s and 1 m/s^2 for 2 s
    np.testing.assert_allclose(s.log.xy[10, 0], [30.0, 0.0])  # 20 m + 10 m/s x 1 s
    np.testing.assert_allclose(s.log.speed_mps[:, 1], 8.0)
    np.testing.assert_allclose(s.log.length_m, 4.5)
    # the two lanes are same-direction neighbours with a dashed line between them
    assert list(s.map.adj_left) == [1, -1] and list(s.map.adj_right) == [-1, 0]
    assert s.map.right_style[0] == LineStyle.SOLID and s.map.left_style[0] == LineStyle.DASHED
    np.testing.assert_array_equal(s.map.on_road(np.array([[10.0, 0.0], [10.0, 4.0], [10.0, -2.5], [210.0, 0.0]])),
                                  [True, True, False, False])
    lane, s_m, d_m = s.map.locate(np.array([30.0, 3.0]), 0.0)
    assert (lane, s_m, d_m) == (1, pytest.approx(30.0), pytest.approx(-0.5))
    assert s.map.locate(np.array([30.0, 3.0]), np.pi)[0] == -1  # nothing runs the other way


def test_unusable_files_say_which_and_why(tmp_path):
    bad = tmp_path / "broken.xml"
    bad.write_text("<commonRoad><lanelet id='1'>")  # truncated
    with pytest.raises(HumanDataError, match="broken.xml"):
        load_scene(bad)
    with pytest.raises(HumanDataError, match="does not exist"):
        load_scene(tmp_path / "missing.xml")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HumanDataError, match="no .xml files"):
        folder_files(empty)
    with pytest.raises(HumanDataError, match="not a folder"):
        folder_files(tmp_path / "missing")


def test_shipped_pack_and_its_fixed_split():
    sizes = {sp: len(split_files(sp)) for sp in ("train", "val", "test")}
    assert sizes == {"train": 82, "val": 8, "test": 22}
    names = {sp: {f.name for f in split_files(sp)} for sp in ("train", "val", "test")}
    assert not (names["train"] & names["test"]) and not (names["train"] & names["val"])
    with pytest.raises(HumanDataError, match="unknown split"):
        split_files("validation")
    s = load_scene(split_files("test")[-1])  # a US-101 scene: 4 lanes of real traffic
    assert s.log.vehicles > 10 and s.map.on_road(s.log.xy[0][s.log.valid[0]]).mean() > 0.9


def test_damaged_pack_is_reported_not_half_unpacked(tmp_path, monkeypatch):
    monkeypatch.setenv("DUALDRIVE_CACHE", str(tmp_path / "cache"))
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "ngsim_commonroad_T-1.tar.xz").write_bytes(b"\xfd7zXZ\x00 not really")
    with pytest.raises(HumanDataError, match="damaged"):
        unpacked_pack(pack)
    assert not any(p.name.startswith(".unpack") for p in (tmp_path / "cache" / "ngsim").iterdir())
    with pytest.raises(HumanDataError, match="missing"):
        unpacked_pack(tmp_path / "nowhere")
