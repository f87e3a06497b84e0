"""A tiny real demonstration dataset (a short ``collect`` on a local Ray cluster) and a tiny checkpoint."""
from pathlib import Path

import pytest

from tiny_model import TINY

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
