"""Configurations of the driving VLM (the model) and of its training: typed, with working defaults,
validated in one place, rejecting unknown keys."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


class VLMConfigError(ValueError):
    """A bad or unknown configuration value; the message names the key and what is allowed."""


@dataclass(frozen=True)
class VLMConfig:
    # -- inputs ----------------------------------------------------------------------------------
    image_height_px: int = 96  # the front camera (dualdrive.sensors.camera.CameraConfig)
    image_width_px: int = 192
    vocab_size: int = 0  # set from the tokenizer when the model is built
    max_prompt_tokens: int = 32
    max_answer_tokens: int = 112  # the longest answers measured are ~90 tokens
    # -- sizes -----------------------------------------------------------------------------------
    # channels after each stride-2 stage: 4 stages take the 96x192 frame to a 6x12 grid of visual tokens
    image_channels: tuple[int, ...] = (24, 48, 96, 128)
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 3
    ff_dim: int = 384
    dropout: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_channels", tuple(int(c) for c in self.image_channels))
        self.validate()

    def validate(self) -> None:
        for name in ("image_height_px", "image_width_px", "max_prompt_tokens", "max_answer_tokens", "d_model",
                     "n_heads", "n_layers", "ff_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise VLMConfigError(f"{name}={v!r} must be a positive integer")
        if self.vocab_size < 0:
            raise VLMConfigError(f"vocab_size={self.vocab_size} must be >= 0 (0: not built yet)")
        if self.d_model % self.n_heads:
            raise VLMConfigError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if not self.image_channels or min(self.image_channels) < 1:
            raise VLMConfigError(f"image_channels={self.image_channels} must be positive channel counts")
        stride = 2 ** len(self.image_channels)
        if self.image_height_px % stride or self.image_width_px % stride:
            raise VLMConfigError(f"image {self.image_height_px}x{self.image_width_px} must be divisible by {stride} "
                                 f"({len(self.image_channels)} stride-2 stages)")
        if not 0.0 <= self.dropout < 1.0:
            raise VLMConfigError(f"dropout={self.dropout} must be in [0, 1)")

    @property
    def visual_tokens(self) -> int:
        stride = 2 ** len(self.image_channels)
        return (self.image_height_px // stride) * (self.image_width_px // stride)

    @property
    def max_positions(self) -> int:
        return self.visual_tokens + self.max_prompt_tokens + self.max_answer_tokens + 1  # + <bos>

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_channels"] = list(self.image_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VLMConfig":
        return _from_dict(cls, d, "model config")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    val_fraction: float = 0.1  # episodes held out of training for the validation loss
    # rare plans drawn more often: a frame is drawn with weight (frames sharing its first meta-action)^-balance,
    # with replacement; 0 is a plain shuffle (keep lane is ~60 % of frames, yield ~0.2 %)
    balance: float = 0.0
    seed: int = 0
    max_minutes: float | None = None  # stop after the epoch that passes this wall time (the run stays resumable)
    threads: int = 1  # torch CPU threads (the machine is shared)
    device: str = "cpu"
    log_every_steps: int = 20

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.threads < 1 or self.log_every_steps < 1:
            raise VLMConfigError("epochs, batch_size, threads and log_every_steps must be at least 1")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.warmup_steps >= 0):
            raise VLMConfigError(f"lr={self.lr} must be > 0, weight_decay and warmup_steps >= 0")
        if not 0.0 <= self.balance <= 1.0:
            raise VLMConfigError(f"balance={self.balance} must be in [0, 1] (0: plain shuffle, 1: every first action "
                                 "equally often)")
        if not 0.0 <= self.val_fraction < 0.5:
            raise VLMConfigError(f"val_fraction={self.val_fraction} must be in [0, 0.5)")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise VLMConfigError(f"max_minutes={self.max_minutes} must be > 0 (or None: no limit)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, d, "train config")


def _from_dict(cls, d: Any, where: str):
    if not isinstance(d, dict):
        raise VLMConfigError(f"{where} must be a mapping, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise VLMConfigError(f"unknown {where} key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(known))}")
    try:
        return cls(**d)
    except TypeError as e:
        raise VLMConfigError(f"bad {where}: {e}") from None
