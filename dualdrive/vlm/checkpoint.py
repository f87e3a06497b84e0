"""Driving-VLM checkpoints: weights in safetensors, the model config in a JSON sidecar, the vocabulary beside it.

``<name>.safetensors`` (the state dict; safetensors cannot carry code, so loading one never runs
anything), ``<name>.json`` (format, :class:`VLMConfig`, training metadata) and ``<name>.vocab.json``
(the word tokenizer). Every way a checkpoint can be wrong is a
:class:`~dualdrive.agents.e2e.checkpoint.CheckpointError` naming the file and the mismatch; the
file-level checks (pickles, truncation, shapes) are the E2E checkpoint's, shared.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from dualdrive.agents.e2e.checkpoint import CheckpointError, load_weights_into, read_sidecar, save_tensors, write_json
from dualdrive.vlm.config import VLMConfig, VLMConfigError
from dualdrive.vlm.model import DrivingVLM
from dualdrive.vlm.tokenizer import TokenizerError, WordTokenizer

FORMAT_NAME = "dualdrive-vlm"
FORMAT_VERSION = 1
DEFAULT_CHECKPOINT = Path(__file__).with_name("default") / "model.safetensors"


@dataclass(frozen=True)
class VLMCheckpointInfo:
    config: VLMConfig
    metadata: dict[str, Any] = field(default_factory=dict)


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def vocab_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".vocab.json")


def save_checkpoint(path: str | Path, model: DrivingVLM, tokenizer: WordTokenizer,
                    metadata: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    if len(tokenizer) != model.cfg.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens, the model {model.cfg.vocab_size}")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_tensors(path, state, {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)})
    tokenizer.save(vocab_path(path))
    write_json(sidecar_path(path), {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                                    "config": model.cfg.to_dict(), "metadata": metadata or {}})
    return path


def read_info(path: str | Path) -> VLMCheckpointInfo:
    path, side = Path(path), sidecar_path(path)
    d = read_sidecar(path, side, FORMAT_NAME, FORMAT_VERSION, "VLM checkpoint",
                     "; train one with `dualdrive train-vlm`")
    try:
        cfg = VLMConfig.from_dict(d.get("config"))
    except VLMConfigError as e:
        raise CheckpointError(f"{side} has a bad model config: {e}") from None
    return VLMCheckpointInfo(cfg, d.get("metadata") or {})


def load_checkpoint(path: str | Path | None = None, device: str = "cpu") -> tuple[DrivingVLM, WordTokenizer, VLMCheckpointInfo]:
    """The model (eval mode), its tokenizer and the sidecar's info; ``None`` loads the shipped checkpoint."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    info = read_info(path)
    try:
        tok = WordTokenizer.load(vocab_path(path))
    except TokenizerError as e:
        raise CheckpointError(f"VLM checkpoint {path}: {e}") from None
    if len(tok) != info.config.vocab_size:
        raise CheckpointError(f"VLM checkpoint {path}: its vocabulary {vocab_path(path).name} has {len(tok)} tokens but "
                              f"{sidecar_path(path).name} says vocab_size={info.config.vocab_size}")
    model = DrivingVLM(info.config)
    load_weights_into(model, path)
    return model.to(device).eval(), tok, info


def with_vocab(cfg: VLMConfig, tokenizer: WordTokenizer) -> VLMConfig:
    return replace(cfg, vocab_size=len(tokenizer))


def state_dict_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
