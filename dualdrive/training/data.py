"""The demonstration datasets for training, from the dataset package (dualdrive.data)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset


def load_datasets(data_dirs: str | Path | Sequence[str | Path], val_fraction: float = 0.1,
                  seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """Train and validation sets of the episodes under one dataset directory or several (e.g. the
    expert's demonstrations and each DAgger round's), split by whole episodes within each directory
    (frames of one episode never land on both sides). The validation set is None when no episode is
    held out (``val_fraction`` 0)."""
    # imported here: the training package must not need the data package until data is actually loaded
    from dualdrive.data.dataset import DemoDataset, split_episodes
    from dualdrive.data.format import DatasetError

    dirs = [data_dirs] if isinstance(data_dirs, (str, Path)) else list(data_dirs)
    if not dirs:
        raise DatasetError("no dataset directory given")
    trains, vals = [], []
    for d in dirs:
        train_keys, val_keys = split_episodes(d, val_fraction=val_fraction, seed=seed)
        if train_keys:
            trains.append(DemoDataset(d, episodes=train_keys))
        if val_keys:
            vals.append(DemoDataset(d, episodes=val_keys))
    if not trains:
        raise DatasetError(f"no training episodes in {', '.join(map(str, dirs))}")
    return _concat(trains), _concat(vals)


def _concat(sets: list[Dataset]) -> Dataset | None:
    if not sets:
        return None
    return sets[0] if len(sets) == 1 else ConcatDataset(sets)


def history_share(dataset: Dataset) -> float:
    """The share of the frames of a (concatenated) demonstration set that have a frame a second earlier."""
    sets = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    total = sum(len(d) for d in sets)
    return sum(d.frames_with_history() for d in sets) / total if total else 0.0
