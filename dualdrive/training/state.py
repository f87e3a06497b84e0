"""The trainer's resume state without pickle: tensors in safetensors, scalars in JSON.

``train_state-e<epoch>.safetensors`` holds the model weights (``model.<name>``) and every tensor of
the optimizer state (``optim.<param>.<name>``); ``train_state.json`` names that file and holds the
epoch and step reached, the best validation score, the optimizer's param groups and non-tensor
state, and both configs. The JSON is replaced atomically after its tensor file is complete, so it
is the commit record: a run killed while writing resumes from the previous complete state. The
learning-rate schedule is a pure function of the step and the random streams are re-seeded from
(seed, epoch) at every epoch start, so the step and the epoch are all the scheduler and RNG state.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dualdrive.agents.e2e.checkpoint import CheckpointError, load_tensors, save_tensors, write_json

STATE_FORMAT_VERSION = 1
STATE_JSON = "train_state.json"
STATE_TENSORS_GLOB = "train_state-e*.safetensors"
MODEL_PREFIX, OPTIM_PREFIX = "model.", "optim."


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


def save_train_state(out_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     state: ResumeState) -> None:
    sd = optimizer.state_dict()
    tensors = {MODEL_PREFIX + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    scalars = {}
    for pid, entries in sd["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{OPTIM_PREFIX}{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    tensors_file = f"train_state-e{state.epochs_done:05d}.safetensors"
    save_tensors(out_dir / tensors_file, tensors)
    write_json(out_dir / STATE_JSON, {
        "format_version": STATE_FORMAT_VERSION, "tensors_file": tensors_file, "epochs_done": state.epochs_done,
        "global_step": state.global_step, "best_epoch": state.best_epoch,
        "best_l2_m": state.best_l2_m if state.best_l2_m != float("inf") else None,
        "model_config": state.model_config, "train_config": state.train_config,
        "optimizer": {"param_groups": sd["param_groups"], "state_scalars": scalars}})
    for old in out_dir.glob(STATE_TENSORS_GLOB):  # only after the commit: older states are now garbage
        if old.name != tensors_file:
            old.unlink(missing_ok=True)


def read_train_state(out_dir: Path) -> tuple[ResumeState, dict[str, Any]]:
    """The committed resume state and the raw JSON (a damaged or foreign file is a CheckpointError)."""
    path = out_dir / STATE_JSON
    try:
        d = json.loads(path.read_text())
        if d.get("format_version") != STATE_FORMAT_VERSION:
            raise CheckpointError(f"{path} has format version {d.get('format_version')!r}, "
                                  f"expected {STATE_FORMAT_VERSION}")
        best = d["best_l2_m"]
        state = ResumeState(int(d["epochs_done"]), int(d["global_step"]), float("inf") if best is None else float(best),
                            int(d["best_epoch"]), dict(d["model_config"]), dict(d["train_config"]))
        return state, d
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"cannot resume from {path}: {type(e).__name__}: {e}") from None


def load_train_state(out_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> ResumeState:
    """Load weights and optimizer state of the committed resume state into ``model`` and ``optimizer``."""
    state, d = read_train_state(out_dir)
    tensors = load_tensors(out_dir / d["tensors_file"])
    weights = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
    try:
        model.load_state_dict(weights, strict=True)
        groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
                  for g in d["optimizer"]["param_groups"]]
        per_param: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith(OPTIM_PREFIX):
                pid, name = key[len(OPTIM_PREFIX):].split(".", 1)
                per_param.setdefault(int(pid), {})[name] = value
        for key, value in d["optimizer"]["state_scalars"].items():
            pid, name = key.split(".", 1)
            per_param.setdefault(int(pid), {})[name] = value
        optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"cannot resume from {out_dir / STATE_JSON}: {type(e).__name__}: {e}") from None
    return state
