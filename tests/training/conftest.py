"""A tiny real demonstration dataset (a short ``collect`` on a local Ray cluster) and a tiny checkpoint."""
from pathlib import Path

import pytest

from dualdrive.agents.e2e.config import E2EConfig

TINY = E2EConfig(camera_channels=(8, 16, 16, 16), lidar_channels=(8, 16, 16, 16), d_model=32, n_layers=1, ff_dim=64,
                 bev_decoder_channels=8)

TINY_SUITE = """name: tiny
version: 1
scenarios:
  - {name: hw, family: highway, config: {max_duration_s: 5}}
  - {name: park, family: parking, config: {max_duration_s: 5, start_in_spot: true}}
"""


@pytest.fixture(scope="session")
def tiny_suite(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("suite") / "tiny.yaml"
    p.write_text(TINY_SUITE)
    return p


@pytest.fixture(scope="session")
def tiny_demos(tiny_suite, tmp_path_factory) -> Path:
    """Two 5 s episodes (hw_0, park_1) at 5 Hz; tests must not modify it."""
    from dualdrive.data.collect import CollectConfig, collect
    out = tmp_path_factory.mktemp("demos") / "ds"
    collect(CollectConfig(out, str(tiny_suite), seeds=range(0, 2), workers=1))
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    import torch

    from dualdrive.agents.e2e.checkpoint import save_checkpoint
    from dualdrive.agents.e2e.model import E2EModel
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", E2EModel(TINY))
