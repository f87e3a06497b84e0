"""E2E checkpoints: a round trip, and a clear CheckpointError naming the file for every broken one."""
import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import save_file

from dualdrive.agents.e2e.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sidecar_path
from dualdrive.agents.e2e.config import E2EConfig
from dualdrive.agents.e2e.model import E2EModel

TINY = E2EConfig(camera_channels=(8, 16, 16, 16), lidar_channels=(8, 16, 16, 16), d_model=32, n_layers=1, ff_dim=64,
                 bev_decoder_channels=8, dropout=0.0)


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = E2EModel(TINY).eval()
    path = save_checkpoint(tmp_path / "model.safetensors", model, {"epoch": 3, "dataset_card": "data/card.json"})
    return model, path


def test_round_trip_restores_config_weights_and_metadata(saved):
    model, path = saved
    loaded, info = load_checkpoint(path)
    assert info.config == TINY and info.metadata == {"epoch": 3, "dataset_card": "data/card.json"}
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert not loaded.training


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'nope.safetensors'} does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(saved):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{path}.*(truncated|corrupt)"):
        load_checkpoint(path)
    path.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_garbage_file(saved):
    _, path = saved
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + bytes(64))
    with pytest.raises(CheckpointError, match=f"{path}.*corrupt"):
        load_checkpoint(path)


class _Plant:
    """Unpickling this runs code (writes a file): the loader must never unpickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_pickle_is_refused_without_being_unpickled(saved, tmp_path, zip_format):
    _, path = saved
    marker = tmp_path / "pwned"
    torch.save({"x": _Plant(marker)}, path, _use_new_zipfile_serialization=zip_format,
               pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointError, match=f"{path} is a pickled PyTorch file.*arbitrary code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_and_bad_sidecar(saved):
    _, path = saved
    side = sidecar_path(path)
    text = side.read_text()
    side.write_text(text[:20])
    with pytest.raises(CheckpointError, match=f"{side} is not valid JSON"):
        load_checkpoint(path)
    side.unlink()
    with pytest.raises(CheckpointError, match=f"{path} has no JSON sidecar"):
        load_checkpoint(path)


def _edit_sidecar(path, edit):
    side = sidecar_path(path)
    d = json.loads(side.read_text())
    edit(d)
    side.write_text(json.dumps(d))


def test_wrong_format_version(saved):
    _, path = saved
    _edit_sidecar(path, lambda d: d.update(format_version=99))
    with pytest.raises(CheckpointError, match="format version 99.*reads version 1"):
        load_checkpoint(path)


def test_another_models_config(saved):
    _, path = saved
    _edit_sidecar(path, lambda d: d.update(config={"hidden_size": 512, "vocab": 100}))
    with pytest.raises(CheckpointError, match="bad model config.*unknown e2e config key.*hidden_size"):
        load_checkpoint(path)
    _edit_sidecar(path, lambda d: d.update(model="PlanTModel"))
    with pytest.raises(CheckpointError, match="for model 'PlanTModel'"):
        load_checkpoint(path)


def test_weights_of_another_size(saved):
    _, path = saved
    _edit_sidecar(path, lambda d: d["config"].update(d_model=64))
    with pytest.raises(CheckpointError, match=f"{path} does not match the model.*shape .*32.* model expects .*64"):
        load_checkpoint(path)


def test_missing_and_unexpected_tensors(saved, tmp_path):
    model, path = saved
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state.pop("gear_head.0.weight")
    state["extra.weight"] = torch.zeros(3)
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match="2 mismatches.*missing gear_head.0.weight.*unexpected extra.weight"):
        load_checkpoint(path)


def test_a_checkpoint_moves_with_its_sidecar(saved, tmp_path):
    _, path = saved
    dest = tmp_path / "copy" / "m.safetensors"
    dest.parent.mkdir()
    shutil.copy(path, dest)
    shutil.copy(sidecar_path(path), sidecar_path(dest))
    assert load_checkpoint(dest)[1].config == TINY
