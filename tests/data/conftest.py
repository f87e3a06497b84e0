"""A tiny demonstration dataset collected once per test session on a real local Ray cluster."""
import shutil
from pathlib import Path

import pytest

from dualdrive.data.collect import CollectConfig, collect

SUITE = """name: tiny
version: 1
scenarios:
  - {name: hw, family: highway, config: {max_duration_s: 6}}
  - {name: park, family: parking, config: {max_duration_s: 6, start_in_spot: true}}
"""


@pytest.fixture(scope="session")
def suite_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("suite") / "tiny.yaml"
    p.write_text(SUITE)
    return p


@pytest.fixture(scope="session")
def collected(suite_file, tmp_path_factory) -> tuple[Path, dict, CollectConfig]:
    """Two episodes (hw_4, park_5) on two workers; tests must not modify it (copy it first)."""
    out = tmp_path_factory.mktemp("demos") / "ds"
    cfg = CollectConfig(out, str(suite_file), seeds=range(4, 6), workers=2)  # park_5 reverses out of its spot
    return out, collect(cfg), cfg


@pytest.fixture
def dataset_copy(collected, tmp_path) -> Path:
    dst = tmp_path / "ds"
    shutil.copytree(collected[0], dst)
    return dst
