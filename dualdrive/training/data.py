"""The demonstration datasets for training, from the dataset package (dualdrive.data)."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset


def load_datasets(data_dir: str | Path, val_fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Train and validation DemoDatasets of the episodes under ``data_dir``, split by whole episodes
    (frames of one episode never land on both sides)."""
    # imported here: the training package must not need the data package until data is actually loaded
    from dualdrive.data.dataset import DemoDataset, split_episodes

    train_keys, val_keys = split_episodes(data_dir, val_fraction=val_fraction, seed=seed)
    return DemoDataset(data_dir, episodes=train_keys), DemoDataset(data_dir, episodes=val_keys)
