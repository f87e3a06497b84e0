"""The trainer's resume state without pickle: optimizer tensors in safetensors, scalars in JSON.

``train_state.safetensors`` holds every tensor of the optimizer state (``state.<param>.<name>``);
``train_state.json`` holds the epoch and step reached, the best validation score, the optimizer's
param groups and non-tensor state, and the configs. The learning-rate schedule is a pure function
of the step and the random streams are re-seeded from (seed, epoch) at every epoch start, so the
step and the epoch are all the scheduler and RNG state there is. The JSON is written last: it is
the commit record of a checkpoint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dualdrive.agents.e2e.checkpoint import CheckpointError, load_tensors, save_tensors, write_json

STATE_FORMAT_VERSION = 1
STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"


@dataclass(frozen=True)
class ResumeState:
    epochs_done: int
    global_step: int
    best_l2_m: float
    best_epoch: int
    model_config: dict[str, Any]
    train_config: dict[str, Any]


def has_train_state(out_dir: Path) -> bool:
    return (out_dir / STATE_JSON).is_file()


def save_train_state(out_dir: Path, optimizer: torch.optim.Optimizer, state: ResumeState) -> None:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entries in sd["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    save_tensors(out_dir / STATE_TENSORS, tensors)
    write_json(out_dir / STATE_JSON, {
        "format_version": STATE_FORMAT_VERSION, "epochs_done": state.epochs_done, "global_step": state.global_step,
        "best_l2_m": state.best_l2_m if state.best_l2_m != float("inf") else None, "best_epoch": state.best_epoch,
        "model_config": state.model_config, "train_config": state.train_config,
        "optimizer": {"param_groups": sd["param_groups"], "state_scalars": scalars}})


def load_train_state(out_dir: Path, optimizer: torch.optim.Optimizer) -> ResumeState:
    """Read the resume state and load the optimizer's; a damaged or foreign state is a CheckpointError."""
    path = out_dir / STATE_JSON
    try:
        d = json.loads(path.read_text())
        if d.get("format_version") != STATE_FORMAT_VERSION:
            raise CheckpointError(f"{path} has format version {d.get('format_version')!r}, expected {STATE_FORMAT_VERSION}")
        groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
                  for g in d["optimizer"]["param_groups"]]
        per_param: dict[int, dict[str, Any]] = {}
        for key, value in load_tensors(out_dir / STATE_TENSORS).items():
            _, pid, name = key.split(".", 2)
            per_param.setdefault(int(pid), {})[name] = value
        for key, value in d["optimizer"]["state_scalars"].items():
            pid, name = key.split(".", 1)
            per_param.setdefault(int(pid), {})[name] = value
        optimizer.load_state_dict({"state": per_param, "param_groups": groups})
        best = d["best_l2_m"]
        return ResumeState(int(d["epochs_done"]), int(d["global_step"]), float("inf") if best is None else float(best),
                           int(d["best_epoch"]), d["model_config"], d["train_config"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"cannot resume from {path}: {type(e).__name__}: {e}") from None
