"""Training hyper-parameters for the E2E model: one typed, validated dataclass."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dualdrive.agents.e2e.config import dataclass_from_dict

DEVICES = ("auto", "cpu", "cuda")


class TrainConfigError(ValueError):
    """A bad or unknown training configuration value; the message names the key and what is allowed."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32  # per process: under torchrun the global batch is batch_size * world size
    lr: float = 3e-4  # peak learning rate of AdamW, reached after the warmup
    weight_decay: float = 0.01
    warmup_steps: int = 200  # linear warmup from 0, then a cosine decay to min_lr_ratio * lr at the last step
    min_lr_ratio: float = 0.05
    grad_clip_norm: float = 1.0  # 0 disables clipping
    seed: int = 0
    device: str = "auto"  # "auto": cuda when available, else cpu
    num_workers: int = 2  # DataLoader worker processes (0: load in the main process)
    sensor_dropout_prob: float = 0.1  # per sample and sensor: replace the frame by zeros, valid flag 0
    camera_brightness_jitter: float = 0.1  # camera intensity scaled by a factor in [1 - j, 1 + j]
    guidance_dropout: float = 0.5  # a model with a guidance input sees "none" in place of it this often
    val_every_epochs: int = 1  # validation also always runs after the last epoch
    checkpoint_every_epochs: int = 1  # last.safetensors + resume state; also always after the last epoch
    log_every_steps: int = 10  # per-step losses in metrics.csv

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "val_every_epochs", "checkpoint_every_epochs", "log_every_steps"):
            self._check(name, isinstance(getattr(self, name), int) and getattr(self, name) >= 1, "a positive integer")
        for name in ("warmup_steps", "num_workers", "seed"):
            self._check(name, isinstance(getattr(self, name), int) and getattr(self, name) >= 0, "an integer >= 0")
        self._check("lr", self.lr > 0, "> 0")
        for name in ("weight_decay", "grad_clip_norm"):
            self._check(name, getattr(self, name) >= 0, ">= 0")
        for name in ("min_lr_ratio", "sensor_dropout_prob", "camera_brightness_jitter", "guidance_dropout"):
            self._check(name, 0.0 <= getattr(self, name) <= 1.0, "in [0, 1]")
        self._check("device", self.device in DEVICES, f"one of {', '.join(DEVICES)}")

    def _check(self, name: str, ok: bool, allowed: str) -> None:
        if not ok:
            raise TrainConfigError(f"train.{name}={getattr(self, name)!r} must be {allowed}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return dataclass_from_dict(cls, d, TrainConfigError, "train")
