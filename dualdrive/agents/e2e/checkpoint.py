"""E2E model checkpoints: weights in safetensors, configuration and metadata in a JSON sidecar.

``model.safetensors`` holds the state dict (safetensors cannot carry code, unlike a pickled ``.pt``,
so loading a checkpoint from elsewhere never executes anything); ``model.json`` next to it holds
the format version, the model's :class:`E2EConfig` and free-form training metadata (dataset card,
epoch, metrics). Every way a checkpoint can be wrong is a :class:`CheckpointError` that names the file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dualdrive.agents.e2e.config import GROWABLE, E2EConfig, E2EConfigError
from dualdrive.agents.e2e.model import E2EModel

FORMAT_NAME = "dualdrive-e2e"
FORMAT_VERSION = 1
MODEL_NAME = "E2EModel"
SAFETENSORS_HEADER_BYTES = 8  # little-endian u64 length of the JSON header that starts every safetensors file
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
PICKLE_PROTO = 0x80  # first byte of a pickle of protocol >= 2 (torch.save's legacy format)
MAX_MISMATCHES_SHOWN = 5


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded; the message names the file and what is wrong."""


@dataclass(frozen=True)
class CheckpointInfo:
    config: E2EConfig
    metadata: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


def sidecar_path(weights_path: str | Path) -> Path:
    """The JSON file that accompanies ``weights_path`` (same name, ``.json``)."""
    return Path(weights_path).with_suffix(".json")


def save_checkpoint(path: str | Path, model: E2EModel, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (safetensors) and its JSON sidecar; each file is replaced atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_tensors(path, state, {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)})
    sidecar = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": MODEL_NAME,
               "config": model.cfg.to_dict(), "metadata": metadata or {}}
    write_json(sidecar_path(path), sidecar)
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[E2EModel, CheckpointInfo]:
    """Build the model described by the sidecar and load the weights into it (in eval mode)."""
    info = read_info(path)
    model = E2EModel(info.config)
    load_weights_into(model, path)
    return model.to(device).eval(), info


def read_sidecar(path: str | Path, side: Path, format_name: str, format_version: int, what: str = "checkpoint",
                 how_to_make: str = "") -> dict:
    """A checkpoint's JSON sidecar, checked for existence, JSON, format name and version (shared by
    every safetensors + sidecar checkpoint of the project: System 1's and the VLM's)."""
    if not Path(path).is_file():
        raise CheckpointError(f"{what} {path} does not exist{how_to_make}")
    if not side.is_file():
        raise CheckpointError(f"{what} {path} has no JSON sidecar {side} (it holds the model config)")
    try:
        d = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{what} sidecar {side} is not valid JSON: {e}") from None
    if not isinstance(d, dict) or d.get("format") != format_name:
        raise CheckpointError(f"{what} sidecar {side} is not a {format_name} sidecar (format field: "
                              f"{d.get('format') if isinstance(d, dict) else type(d).__name__!r})")
    if d.get("format_version") != format_version:
        raise CheckpointError(f"{what} {side} has format version {d.get('format_version')!r}; this dualdrive "
                              f"reads version {format_version}")
    return d


def read_info(path: str | Path) -> CheckpointInfo:
    """The sidecar of ``path``: format version, model config and metadata, validated."""
    side = sidecar_path(path)
    d = read_sidecar(path, side, FORMAT_NAME, FORMAT_VERSION)
    if d.get("model") != MODEL_NAME:
        raise CheckpointError(f"checkpoint {side} is for model {d.get('model')!r}, not {MODEL_NAME}")
    try:
        cfg = E2EConfig.from_dict(d.get("config"))
    except E2EConfigError as e:
        raise CheckpointError(f"checkpoint {side} has a bad model config: {e}") from None
    meta = d.get("metadata", {})
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {side}: 'metadata' must be an object, got {type(meta).__name__}")
    return CheckpointInfo(cfg, meta, FORMAT_VERSION)


def load_weights_into(model: torch.nn.Module, path: str | Path) -> None:
    """Load the safetensors state dict at ``path`` into ``model``; names and shapes must match exactly."""
    state = load_tensors(path)
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [f"{k}: shape {tuple(state[k].shape)} in file, model expects {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if problems:
        shown = "; ".join(problems[:MAX_MISMATCHES_SHOWN])
        more = f" (and {len(problems) - MAX_MISMATCHES_SHOWN} more)" if len(problems) > MAX_MISMATCHES_SHOWN else ""
        raise CheckpointError(f"checkpoint {path} does not match the model ({len(problems)} mismatches): {shown}{more}")
    model.load_state_dict(state, strict=True)


def load_grown_into(model: E2EModel, path: str | Path, saved: E2EConfig) -> list[str]:
    """Start ``model`` from the checkpoint at ``path`` (a model of config ``saved``) that lacks parts
    ``model`` has (``GROWABLE``: the acceleration input, the route prior, the lead head, the radar in the route frame). Every weight of the saved model
    is kept; what is new starts where the model's own initialisation puts it, and the forward plan's last
    layer is zeroed when the route prior is added (its output becomes a departure from the route, so it
    starts at none). Returns what was added, in words. Any other difference is a CheckpointError."""
    cfg = model.cfg
    new, old = cfg.to_dict(), saved.to_dict()
    differ = sorted(f for f in new if new[f] != old[f])
    not_growable = [f for f in differ if f not in GROWABLE or getattr(saved, f) != GROWABLE[f]]
    if not_growable:
        raise CheckpointError(f"checkpoint {path} holds a different model config: {', '.join(not_growable)} differ "
                              f"(only {sorted(GROWABLE)} can be added to a trained model)")
    source = E2EModel(saved)
    load_weights_into(source, path)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    if unexpected:  # cannot happen for the growable parts; a guard against a future key added carelessly
        raise CheckpointError(f"checkpoint {path}: weights {unexpected[:MAX_MISMATCHES_SHOWN]} have no place in "
                              "the grown model")
    added = [f"{k} (new)" for k in missing]
    if "plan_prior" in differ:
        rows = cfg.plan_poses * 3  # the forward plan's outputs come first (model._plans' view)
        with torch.no_grad():
            model.plan_head[-1].weight[:rows].zero_()
            model.plan_head[-1].bias[:rows].zero_()
        added.append(f"plan_prior={cfg.plan_prior!r} (the forward plan head starts at zero: the plan is the prior)")
    return added


# -- file helpers (also used for the trainer's resume state) -----------------------------------------
def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))  # Paths and the like as text
    os.replace(tmp, path)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file on the CPU; a pickle, a truncated or a corrupt file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(SAFETENSORS_HEADER_BYTES)
    if head.startswith(ZIP_MAGIC) or (len(head) >= 2 and head[0] == PICKLE_PROTO and 2 <= head[1] <= 5):
        raise CheckpointError(f"checkpoint {path} is a pickled PyTorch file (torch.save), not safetensors; it is "
                              "not loaded because unpickling can execute arbitrary code. Convert it with a trusted "
                              "script (torch.load + dualdrive.agents.e2e.checkpoint.save_checkpoint)")
    if len(head) < SAFETENSORS_HEADER_BYTES:
        raise CheckpointError(f"checkpoint {path} is truncated ({size} bytes, not even a safetensors header)")
    header_len = int.from_bytes(head, "little")
    if header_len > size - SAFETENSORS_HEADER_BYTES:
        raise CheckpointError(f"checkpoint {path} is not a valid safetensors file: its header claims {header_len} "
                              f"bytes but the file has {size} (truncated or not safetensors)")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {e}") from None
